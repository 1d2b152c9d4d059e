//! The approver killed mid-session: the gateway enforces what it holds to the end, refuses new
//! requests with a clear message, and delivers what it spooled exactly once when the approver
//! is back.

use super::common::{self, grant, session_events, Tunnel};

#[test]
fn kill_9_of_the_approver_mid_session() {
    let g = common::start("");
    let mut env = g.env;
    grant(&env, "alice", "echo", "4s");
    let mut t = Tunnel::open(&env, "alice", &format!("echo:{}", g.echo.port));
    assert_eq!(t.echo(b"before"), b"before");
    let out = env.admin("ada", &["--json", "sessions", "--live"]);
    let session = out.json()["sessions"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    env.kill9();
    // The session goes on while the approver is away...
    assert_eq!(t.echo(b"during"), b"during");
    // ...new requests cannot be made, and the user is told why.
    let r = env.gw_ssh("alice", &["request", "echo-b", "--for", "5m"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("approver is unreachable"), "{}", r.stderr);
    // ...and the grant is still enforced to its end.
    let (code, err, _) = t.wait_cut();
    assert_eq!(code, 255, "{err}");
    assert!(err.contains("expired"), "{err}");

    env.start_approver();
    env.eventually("the spooled end event", || {
        session_events(&env, &session)
            .iter()
            .any(|e| e["event"] == "session.ended")
    });
    // Give the gateway a moment to (wrongly) deliver anything twice, then count.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let events = session_events(&env, &session);
    let count = |name: &str| events.iter().filter(|e| e["event"] == name).count();
    assert_eq!(count("session.started"), 1, "{events:?}");
    assert_eq!(count("session.ended"), 1, "{events:?}");
    env.admin("audrey", &["audit", "verify"]).ok();
}

#[test]
fn a_gateway_crash_ends_its_sessions_on_restart() {
    let g = common::start("");
    let mut env = g.env;
    grant(&env, "alice", "echo", "10m");
    let mut t = Tunnel::open(&env, "alice", &format!("echo:{}", g.echo.port));
    assert_eq!(t.echo(b"x"), b"x");
    let out = env.admin("ada", &["--json", "sessions", "--live"]);
    let session = out.json()["sessions"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    env.kill9_gateway();
    let _ = t.wait_cut();
    env.start_gateway();
    env.eventually("the end event after the restart", || {
        session_events(&env, &session)
            .iter()
            .any(|e| e["event"] == "session.ended" && e["end_reason"] == "gateway restart")
    });
    let out = env.admin("ada", &["--json", "sessions", "--live"]);
    assert!(out.json()["sessions"].as_array().unwrap().is_empty());
}

#[test]
fn fail_mode_closed_cuts_and_refuses_while_the_approver_is_away() {
    let echo = crate::support::targets::Echo::start();
    let mut env = crate::support::Env::prepare(
        "24h",
        &format!(
            "\n[[targets]]\nname = \"echo\"\nkind = \"tcp\"\naddress = \"127.0.0.1:{}\"\nlabels = {{ env = \"staging\" }}\n",
            echo.port
        ),
    );
    env.gateway_extra = "fail_mode = \"closed\"\nfail_after = \"1s\"".into();
    env.start_approver();
    env.start_gateway();
    grant(&env, "alice", "echo", "10m");
    let dest = format!("echo:{}", echo.port);
    let mut t = Tunnel::open(&env, "alice", &dest);
    assert_eq!(t.echo(b"x"), b"x");
    env.kill9();
    let (code, err, _) = t.wait_cut();
    assert_eq!(code, 255, "{err}");
    assert!(err.contains("fails closed"), "{err}");
    let (code, err, _) = Tunnel::open(&env, "alice", &dest).wait_cut();
    assert_ne!(code, 0);
    assert!(err.contains("fails closed"), "{err}");
    // Back in business once the approver is.
    env.start_approver();
    env.eventually("the gateway to open again", || {
        let mut t = Tunnel::open(&env, "alice", &dest);
        let ok = t.is_running() && {
            std::thread::sleep(std::time::Duration::from_millis(300));
            t.is_running()
        };
        if ok {
            assert_eq!(t.echo(b"y"), b"y");
            t.close();
        }
        ok
    });
}
