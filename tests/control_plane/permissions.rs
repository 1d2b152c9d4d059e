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
