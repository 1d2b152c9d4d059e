//! Who may run what: every command of the control-plane table, allowed and refused.

use crate::support::Env;

#[test]
fn each_command_checks_its_permission() {
    let env = Env::start();
    // Anyone configured: own view.
    for cmd in ["status", "whoami", "targets", "requests", "grants"] {
        env.ssh("dave", &[cmd]).ok();
    }
    // Admins only.
    env.ssh("alice", &["reload"])
        .fails_with("is for members of admins");
    env.ssh("audrey", &["reload"])
        .fails_with("is for members of admins");
    env.ssh("alice", &["kill", "s-1"])
        .fails_with("is for members of admins");
    env.ssh("ada", &["kill", "s-1"])
        .fails_with("no live session");
    // Admins and auditors.
    for who in ["alice", "bob"] {
        env.ssh(who, &["audit", "log"])
            .fails_with("admins or auditors");
        env.ssh(who, &["audit", "verify"])
            .fails_with("admins or auditors");
        env.ssh(who, &["sessions"]).fails_with("admins or auditors");
    }
    for who in ["ada", "audrey"] {
        env.ssh(who, &["audit", "log"]).ok();
        env.ssh(who, &["audit", "verify"]).ok();
        env.ssh(who, &["sessions", "--live"]).ok();
    }
    // Another user's grants: admins only.
    env.ssh("alice", &["grants", "--user", "bob"])
        .fails_with("only admins");
    env.ssh("ada", &["grants", "--user", "bob"]).ok();
    // The stream is for gateway identities only.
    env.ssh("ada", &["watch", "--since", "0"])
        .fails_with("only for [[gateways]]");
    // A user's key never logs in as someone else.
    let port = env.addr.rsplit(':').next().unwrap();
    let out = crate::support::run(
        std::process::Command::new("ssh")
            .args(["-p", port, "-i"])
            .arg(env.key("alice"))
            .args([
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "BatchMode=yes",
                "-F",
                "/dev/null",
                "-n",
            ])
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                env.path().join("known_hosts").display()
            ))
            .args(["bob@127.0.0.1", "whoami"]),
    );
    assert_eq!(
        out.code, 255,
        "ssh must fail to authenticate: {}",
        out.stderr
    );
    assert!(out.stderr.contains("Permission denied"), "{}", out.stderr);
    // Every refusal above is in the audit log.
    let refused = env
        .audit_events()
        .into_iter()
        .filter(|e| e["event"] == "command.refused")
        .count();
    assert!(refused >= 10, "{refused}");
}

#[test]
fn json_everywhere() {
    let env = Env::start();
    for args in [
        &["status", "--json"][..],
        &["whoami", "--json"],
        &["targets", "--json"],
        &["requests", "--all", "--json"],
        &["grants", "--json"],
    ] {
        let out = env.ssh("alice", args);
        out.ok();
        out.json();
    }
    let err = env.ssh("alice", &["request", "lonely", "--json"]);
    assert_ne!(err.code, 0);
    assert_eq!(err.json()["error"], "refused");
    for args in [&["sessions", "--json"][..], &["audit", "verify", "--json"]] {
        env.ssh("ada", args).ok().json();
    }
}

/// `ssh -p 2223 NAME@approver` with no command: the commands that user may run, from the
/// permission table, not clap's usage of every command; exit 0, with or without a terminal.
#[test]
fn no_command_lists_the_commands_the_user_may_run() {
    let env = Env::start();
    let port = env.addr.rsplit(':').next().unwrap();
    let alice = env.ssh("alice", &[]);
    alice.ok();
    assert!(
        alice.stdout.starts_with(&format!(
            "portcullis: commands alice may run, as `ssh -p {port} alice@127.0.0.1 COMMAND`:\n"
        )),
        "{}",
        alice.stdout
    );
    assert!(
        alice.stdout.contains("\n  request TARGET"),
        "{}",
        alice.stdout
    );
    for not_hers in ["\n  approve ", "\n  reload ", "\n  audit ", "Usage:"] {
        assert!(!alice.stdout.contains(not_hers), "{}", alice.stdout);
    }
    let bob = env.ssh("bob", &["help"]);
    bob.ok();
    assert!(bob.stdout.contains("\n  approve ID"), "{}", bob.stdout);
    assert!(!bob.stdout.contains("\n  reload "), "{}", bob.stdout);
    let ada = env.ssh("ada", &[]);
    for hers in ["reload", "kill SESSION_ID", "audit log", "--user U"] {
        assert!(ada.stdout.contains(hers), "{hers}: {}", ada.stdout);
    }
    // `help COMMAND` and `--help` remain the full usage.
    assert!(env
        .ssh("alice", &["help", "request"])
        .stdout
        .contains("Usage:"));
    assert!(env.ssh("alice", &["help", "--json"]).json()["commands"].is_array());

    // With a terminal (`ssh -tt`): the same, its lines ended as a terminal needs them.
    let tty = crate::support::run(
        std::process::Command::new("ssh")
            .args(["-tt", "-p", port, "-i"])
            .arg(env.key("alice"))
            .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"])
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                env.path().join("known_hosts").display()
            ))
            .args(["-o", "LogLevel=ERROR", "-F", "/dev/null", "alice@127.0.0.1"]),
    );
    tty.ok();
    assert!(
        tty.stdout.contains("COMMAND`:\r\n  request TARGET"),
        "{:?}",
        tty.stdout
    );
}
