//! The approver's store restored from an older copy under a running gateway: the gateway must
//! not take the restored store's new changes for the continuation of its own history. It
//! re-reads the whole state from a signed snapshot (a log line names the store identity
//! change), grants the restored store does not hold end, a user removed after the restore is
//! refused, and new grant ids never repeat old ones.

use std::process::Command;

use super::common::{self, grant, Tunnel};

fn copy(from: &std::path::Path, to: &std::path::Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn a_restored_store_makes_the_gateway_start_over_from_a_snapshot() {
    let g = common::start("");
    let mut env = g.env;
    let dest = format!("echo:{}", g.echo.port);
    let approver_dir = env.path().join("approver");
    let backup = env.path().join("backup");

    // The backup: the store as it is now (the catalog and nothing else).
    env.kill9();
    copy(&approver_dir, &backup);
    env.start_approver();
    env.eventually("the gateway back on the approver", || {
        env.gw_ssh("alice", &["whoami"]).code == 0
    });

    // After the backup: a grant for alice, her forward open, dave able to log in.
    let old_grant = grant(&env, "alice", "echo", "1h");
    let mut t = Tunnel::open(&env, "alice", &dest);
    assert_eq!(t.echo(b"x"), b"x");
    assert_eq!(env.gw_ssh("dave", &["whoami"]).code, 0);

    // Restore the backup, and (the operator's next step) remove dave's key from the config.
    env.kill9();
    std::fs::remove_dir_all(&approver_dir).unwrap();
    copy(&backup, &approver_dir);
    let dave = std::fs::read_to_string(env.key("dave").with_extension("pub")).unwrap();
    let replacement = crate::support::keygen(env.path(), "dave_new");
    let cfg = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace(dave.trim(), replacement.trim());
    std::fs::write(&env.config, cfg).unwrap();
    env.start_approver();

    // The gateway starts over: the grant the restored store never issued ends...
    let (code, err, _) = t.wait_cut();
    assert_eq!(code, 255, "{err}");
    assert!(err.contains("withdrawn"), "{err}");
    env.eventually("the log line naming the store identity change", || {
        env.gw_log().contains("store identity changed")
            && env.gw_log().contains("re-read the whole state")
    });
    // ...the user removed after the restore is refused...
    env.eventually("dave refused at the gateway", || {
        env.gw_ssh("dave", &["whoami"]).code != 0
    });
    // ...and a new grant does not reuse the old one's id.
    let new_grant = grant(&env, "alice", "echo-b", "1h");
    assert!(
        new_grant > old_grant,
        "grant id {new_grant} repeats an id the gateway held (up to {old_grant})"
    );
    let mut t = Tunnel::open(&env, "alice", &format!("echo-b:{}", g.echo_b.port));
    assert_eq!(t.echo(b"y"), b"y");
    t.close();
    assert!(env.has_event(
        "store.history_diverged",
        "gateway",
        serde_json::json!("gw-1")
    ));
}

/// The gateway away while the store is restored and moves on past the revision the gateway
/// had reached: same revision numbers, another history. The gateway's change at its revision
/// is not the store's, so it starts over from a snapshot instead of resuming.
#[test]
fn a_restored_store_that_moved_on_past_the_gateway_is_caught_by_the_history() {
    let g = common::start("");
    let mut env = g.env;
    let approver_dir = env.path().join("approver");
    let backup = env.path().join("backup");
    env.kill9();
    copy(&approver_dir, &backup);
    env.start_approver();
    env.eventually("the gateway back on the approver", || {
        env.gw_ssh("alice", &["whoami"]).code == 0
    });
    let old_grant = grant(&env, "alice", "echo", "1h");
    // Let the gateway apply it, then stop it.
    std::thread::sleep(std::time::Duration::from_millis(500));
    env.kill9_gateway();

    env.kill9();
    std::fs::remove_dir_all(&approver_dir).unwrap();
    copy(&backup, &approver_dir);
    env.start_approver();
    // The restored store moves on: as many changes and more, none of them alice's grant.
    for _ in 0..3 {
        grant(&env, "dave", "echo-b", "1h");
    }
    env.start_gateway();
    env.eventually("the snapshot", || {
        env.gw_log().contains("re-read the whole state")
    });
    let r = env
        .gw_command("alice", &["-W", &format!("echo:{}", g.echo.port)])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("no active grant"),
        "the old grant still works: {err}"
    );
    let new_grant = grant(&env, "alice", "echo", "1h");
    assert!(new_grant > old_grant, "{new_grant} <= {old_grant}");
}

/// A gateway's first stream opens with a snapshot (it has no history yet), so its replica shows
/// that snapshot's digest, which no stored change has. Restarted before any other change, it
/// must be taken for what it is, this store's own history: no new store identity, no
/// `store.history_diverged`, no snapshot again.
#[test]
fn a_gateway_restarted_after_its_first_snapshot_resumes() {
    let g = common::start("");
    let mut env = g.env;
    let epoch_line = |log: &str| log.matches("store identity changed").count();
    env.stop_gateway();
    env.start_gateway();
    env.eventually("the gateway back on the approver", || {
        env.gw_ssh("alice", &["whoami"]).code == 0
    });
    env.stop_gateway();
    env.start_gateway();
    env.eventually("the gateway back on the approver", || {
        env.gw_ssh("alice", &["whoami"]).code == 0
    });
    assert_eq!(epoch_line(&env.gw_log()), 0, "{}", env.gw_log());
    let diverged: Vec<_> = env
        .audit_events()
        .into_iter()
        .filter(|e| e["event"] == "store.history_diverged")
        .collect();
    assert!(diverged.is_empty(), "{diverged:?}");
}
