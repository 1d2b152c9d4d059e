//! The thin clients: host-key checking as `ssh` does it, keys from files, env or ssh-agent.

use std::process::Command;

use crate::support::{keygen, run, Env, BIN};

fn client(env: &Env, user: &str) -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("SSH_AUTH_SOCK")
        .env("HOME", env.path())
        .env("PORTCULLIS_APPROVER", &env.addr)
        .env("PORTCULLIS_USER", user);
    c
}

#[test]
fn accept_new_then_refuse_a_changed_host_key() {
    let env = Env::start();
    let kh = env.path().join("pc_known_hosts");
    let first = run(client(&env, "alice")
        .args(["admin", "whoami", "-i"])
        .arg(env.key("alice"))
        .arg("--known-hosts")
        .arg(&kh));
    first.ok();
    assert!(
        first.stderr.contains("learned host key"),
        "{}",
        first.stderr
    );
    // Second time: known, silent.
    let second = run(client(&env, "alice")
        .args(["admin", "whoami", "-i"])
        .arg(env.key("alice"))
        .arg("--known-hosts")
        .arg(&kh));
    second.ok();
    assert!(!second.stderr.contains("learned"), "{}", second.stderr);

    // Someone else's key recorded for this host and port: a hard error.
    let other = keygen(env.path(), "imposter");
    let port = env.addr.rsplit(':').next().unwrap();
    std::fs::write(&kh, format!("[127.0.0.1]:{port} {other}\n")).unwrap();
    run(client(&env, "alice")
        .args(["admin", "whoami", "-i"])
        .arg(env.key("alice"))
        .arg("--known-hosts")
        .arg(&kh))
    .fails_with("HOST KEY CHANGED");

    // The default file lives under ~/.config/portcullis.
    run(client(&env, "alice")
        .args(["admin", "whoami", "-i"])
        .arg(env.key("alice")))
    .ok();
    assert!(env.path().join(".config/portcullis/known_hosts").exists());
}

#[test]
fn a_wrong_pinned_key_refuses_to_connect() {
    let env = Env::start();
    let other = keygen(env.path(), "imposter");
    run(client(&env, "alice")
        .args(["admin", "whoami", "-i"])
        .arg(env.key("alice"))
        .args(["--approver-host-key", &other]))
    .fails_with("does not match the pinned key");
}

#[test]
fn identity_from_env_and_from_ssh_agent() {
    let env = Env::start();
    run(client(&env, "bob")
        .env("PORTCULLIS_IDENTITY", env.key("bob"))
        .env("PORTCULLIS_APPROVER_HOST_KEY", &env.host_key)
        .args(["admin", "whoami"]))
    .ok();

    let sock = env.path().join("agent.sock");
    let agent = Command::new("ssh-agent")
        .arg("-a")
        .arg(&sock)
        .output()
        .expect("ssh-agent");
    assert!(agent.status.success());
    let pid = String::from_utf8_lossy(&agent.stdout)
        .split("SSH_AGENT_PID=")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .map(|s| s.to_string())
        .unwrap();
    let added = Command::new("ssh-add")
        .env("SSH_AUTH_SOCK", &sock)
        .arg(env.key("carol"))
        .output()
        .unwrap();
    assert!(added.status.success());
    let out = run(client(&env, "carol")
        .env("SSH_AUTH_SOCK", &sock)
        .env("PORTCULLIS_APPROVER_HOST_KEY", &env.host_key)
        .args(["admin", "--json", "whoami"]));
    let _ = Command::new("kill").arg(&pid).status();
    out.ok();
    assert_eq!(out.json()["user"], "carol");

    // No key anywhere: a message that says what to do.
    run(client(&env, "dave")
        .env("PORTCULLIS_APPROVER_HOST_KEY", &env.host_key)
        .args(["admin", "whoami"]))
    .fails_with("no key to log in with");
}

#[test]
fn an_unreachable_approver_is_a_clear_error() {
    let env = Env::start();
    run(Command::new(BIN)
        .args(["admin", "--approver", "127.0.0.1:1", "-l", "alice", "-i"])
        .arg(env.key("alice"))
        .args(["--approver-host-key", &env.host_key, "status"]))
    .fails_with("cannot connect to 127.0.0.1:1");
}

/// A server posing as the approver with another type of host key than the one recorded (an
/// ECDSA key where known_hosts holds the approver's ed25519 key): refused as `ssh` refuses it,
/// never learned beside the recorded one. The fake is a real sshd whose forced command answers
/// like the approver would.
#[test]
fn a_host_key_of_another_type_is_a_changed_key_not_a_new_one() {
    for key_type in ["ecdsa", "rsa"] {
        fake_approver_with(key_type);
    }
}

fn fake_approver_with(key_type: &str) {
    let env = Env::start();
    let kh = env.path().join("pc_known_hosts");
    let dir = tempfile::tempdir().unwrap();
    let alice_pub = std::fs::read_to_string(env.key("alice").with_extension("pub")).unwrap();
    let fake = crate::support::targets::Sshd::start_keyed(
        dir.path(),
        &format!("command=\"echo grant 17 revoked\" {}", alice_pub.trim()),
        key_type,
    );
    // The approver's real key, recorded for the address the fake answers on.
    std::fs::write(&kh, format!("[127.0.0.1]:{} {}\n", fake.port, env.host_key)).unwrap();
    let before = std::fs::read_to_string(&kh).unwrap();
    let out = run(client(&env, &fake.login)
        .args(["admin", "revoke", "17", "-i"])
        .arg(env.key("alice"))
        .arg("--approver")
        .arg(format!("127.0.0.1:{}", fake.port))
        .arg("--known-hosts")
        .arg(&kh));
    assert_ne!(
        out.code, 0,
        "{key_type}: the fake approver was believed: {}",
        out.stdout
    );
    assert!(!out.stdout.contains("revoked"), "{}", out.stdout);
    // An RSA-only server is refused even earlier: no host key algorithm in common.
    if key_type == "ecdsa" {
        assert!(out.stderr.contains("HOST KEY CHANGED"), "{}", out.stderr);
    }
    assert_eq!(
        std::fs::read_to_string(&kh).unwrap(),
        before,
        "the other key was appended"
    );
}
