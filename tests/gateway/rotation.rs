//! Rotating the grant-signing key as `portcullis keys rotate --signing` tells: the gateway pins
//! both keys, the approver switches at its restart (a `signing_key.rotated` audit event, the
//! last record the old key signs), and no session is cut by it: one resting on a grant the old
//! key signed goes on, new grants signed by the new key work, and the audit log verifies with
//! the new key pinned (through the rotation) and not with the old one.

use std::process::Command;

use super::common::{self, grant, Tunnel};
use crate::support::{run, BIN};

#[test]
fn a_rotated_signing_key_rolls_out_without_cutting_a_session() {
    let g = common::start("");
    let mut env = g.env;
    let old = env.signing_key.clone();
    let rotate = run(Command::new(BIN)
        .args(["keys", "rotate", "--signing", "--config"])
        .arg(&env.config));
    rotate.ok();
    let new = rotate
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("grant-signing-next "))
        .expect("the new key")
        .to_string();
    assert_ne!(new, old);

    // 1. Gateways pin both (a restart, before any session rests on it).
    env.kill9_gateway();
    env.signing_key = format!("[\"{old}\", \"{new}\"]");
    env.start_gateway();
    grant(&env, "alice", "echo", "10m");
    let mut t = Tunnel::open(&env, "alice", &format!("echo:{}", g.echo.port));
    assert_eq!(t.echo(b"before"), b"before");

    // 2. The approver restarts and signs with the new key from then on.
    let (status, _) = env.stop_approver();
    assert!(status.success());
    env.start_approver();
    assert!(env.has_event("signing_key.rotated", "new_key", serde_json::json!(new)));
    env.eventually("the gateway back on the approver", || {
        env.gw_ssh("alice", &["whoami"]).code == 0
    });

    // The session on the old key's grant was never cut...
    assert!(t.is_running());
    assert_eq!(t.echo(b"after"), b"after");
    // ...and a grant the new key signs works too.
    grant(&env, "alice", "echo-b", "10m");
    let mut t2 = Tunnel::open(&env, "alice", &format!("echo-b:{}", g.echo_b.port));
    assert_eq!(t2.echo(b"new key"), b"new key");
    t2.close();
    t.close();

    // The log verifies with the new key pinned, through the rotation; not with the old one.
    env.admin("audrey", &["audit", "verify"]).ok();
    env.kill9();
    let dir = env.path().join("approver");
    let verify = |key: &str| {
        run(Command::new(BIN)
            .args(["audit", "verify", "--data-dir"])
            .arg(&dir)
            .args(["--signing-key", key]))
    };
    let ok = verify(&new);
    ok.ok();
    let wrong = verify(&old);
    assert_ne!(wrong.code, 0, "{}", wrong.stdout);
}
