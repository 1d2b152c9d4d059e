//! Sessions end with their grant: at expiry, at revocation, by an admin's kill; and live on
//! when another grant for the same user and target is in force.

use super::common::{self, grant, session_events, Tunnel};

fn live_session(env: &crate::support::Env) -> String {
    let out = env.admin("ada", &["--json", "sessions", "--live"]);
    out.ok();
    out.json()["sessions"][0]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn cut_at_expiry() {
    let g = common::start("");
    let env = &g.env;
    grant(env, "alice", "echo", "3s");
    let mut t = Tunnel::open(env, "alice", &format!("echo:{}", g.echo.port));
    assert_eq!(t.echo(b"before"), b"before");
    let (code, err, _) = t.wait_cut();
    assert_eq!(code, 255, "{err}");
    assert!(err.contains("expired"), "{err}");
    assert!(err.contains("request echo"), "{err}");
    env.eventually("the end event", || {
        env.audit_events()
            .iter()
            .any(|e| e["event"] == "session.ended" && e["end_reason"] == "expired")
    });
}

#[test]
fn cut_at_revocation() {
    let g = common::start("");
    let env = &g.env;
    let id = grant(env, "alice", "echo", "10m");
    let mut t = Tunnel::open(env, "alice", &format!("echo:{}", g.echo.port));
    assert_eq!(t.echo(b"x"), b"x");
    env.admin(
        "ada",
        &["revoke", &id.to_string(), "--reason", "incident over"],
    )
    .ok();
    let (code, err, _) = t.wait_cut();
    assert_eq!(code, 255, "{err}");
    assert!(err.contains("revoked"), "{err}");
}

/// Many sessions on one grant end in the same instant: every one is cut, and every end
/// reaches the audit log once, with its start before it, though the gateway spools the ends
/// in groups and delivers them to the approver several to a command.
#[test]
fn a_revocation_cuts_every_session_and_records_every_end_once() {
    const N: usize = 12;
    let g = common::start("");
    let env = &g.env;
    let id = grant(env, "alice", "echo", "10m");
    let mut tunnels: Vec<Tunnel> = (0..N)
        .map(|_| Tunnel::open(env, "alice", &format!("echo:{}", g.echo.port)))
        .collect();
    for t in &mut tunnels {
        assert_eq!(t.echo(b"up"), b"up");
    }
    env.admin("ada", &["revoke", &id.to_string(), "--reason", "burst"])
        .ok();
    for t in tunnels {
        let (code, err, _) = t.wait_cut();
        assert_eq!(code, 255, "{err}");
        assert!(err.contains("revoked"), "{err}");
    }
    env.eventually("every end in the audit log", || {
        env.audit_events()
            .iter()
            .filter(|e| e["event"] == "session.ended" && e["end_reason"] == "revoked")
            .count()
            >= N
    });
    let events = env.audit_events();
    let ended: Vec<String> = events
        .iter()
        .filter(|e| e["event"] == "session.ended")
        .map(|e| e["session"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ended.len(), N, "each end recorded once: {ended:?}");
    for s in &ended {
        let kinds: Vec<String> = session_events(env, s)
            .iter()
            .map(|e| e["event"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(kinds, ["session.started", "session.ended"], "{s}");
    }
    let out = env.admin("ada", &["--json", "sessions"]);
    out.ok();
    let sessions = out.json()["sessions"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), N);
    assert!(
        sessions.iter().all(|s| s["end_reason"] == "revoked"),
        "{sessions:?}"
    );
    env.admin("audrey", &["audit", "verify"]).ok();
}

#[test]
fn a_second_grant_keeps_the_session_alive() {
    let g = common::start("");
    let env = &g.env;
    let first = grant(env, "alice", "echo", "3s");
    let mut t = Tunnel::open(env, "alice", &format!("echo:{}", g.echo.port));
    assert_eq!(t.echo(b"a"), b"a");
    let second = grant(env, "alice", "echo", "10m");
    assert_ne!(first, second);
    env.eventually("the first grant to expire", || {
        env.has_event("grant.expired", "grant", serde_json::json!(first))
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        t.is_running(),
        "the session was cut although grant {second} is live"
    );
    assert_eq!(t.echo(b"still here"), b"still here");
    // The move from one grant to the other is in the audit log.
    env.eventually("the session.regranted event", || {
        env.audit_events().iter().any(|e| {
            e["event"] == "session.regranted"
                && e["from_grant"] == serde_json::json!(first)
                && e["grant"] == serde_json::json!(second)
        })
    });
    // And it ends with the second grant.
    env.admin("ada", &["revoke", &second.to_string()]).ok();
    let (code, err, _) = t.wait_cut();
    assert_eq!(code, 255, "{err}");
}

#[test]
fn an_admin_kills_one_session() {
    let g = common::start("");
    let env = &g.env;
    grant(env, "alice", "echo", "10m");
    let mut t = Tunnel::open(env, "alice", &format!("echo:{}", g.echo.port));
    assert_eq!(t.echo(b"x"), b"x");
    let id = live_session(env);
    env.ssh("alice", &["kill", &id])
        .fails_with("is for members of admins");
    env.admin("ada", &["kill", &id]).ok();
    let (code, err, _) = t.wait_cut();
    assert_eq!(code, 255, "{err}");
    assert!(err.contains("ended by an admin"), "{err}");
    env.eventually("killed and ended events", || {
        let ev = session_events(env, &id);
        ev.iter().any(|e| e["event"] == "session.killed")
            && ev
                .iter()
                .any(|e| e["event"] == "session.ended" && e["end_reason"] == "killed")
    });
}

#[test]
fn removing_a_users_key_cuts_their_live_sessions() {
    let g = common::start("");
    let env = &g.env;
    grant(env, "alice", "echo", "10m");
    let mut t = Tunnel::open(env, "alice", &format!("echo:{}", g.echo.port));
    assert_eq!(t.echo(b"x"), b"x");
    // alice's key is replaced in the config, and the config reloaded.
    let old = std::fs::read_to_string(env.key("alice").with_extension("pub")).unwrap();
    let new = crate::support::keygen(env.path(), "alice_new");
    let cfg = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace(old.trim(), new.trim());
    std::fs::write(&env.config, cfg).unwrap();
    env.admin("ada", &["reload"]).ok();
    let (code, err, _) = t.wait_cut();
    assert_eq!(code, 255, "{err}");
    assert!(err.contains("removed from the configuration"), "{err}");
}
