//! The approver killed mid-session: the gateway enforces what it holds to the end, refuses new
//! requests with a clear message, and delivers what it spooled exactly once when the approver
//! is back.

use std::time::Duration;

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

/// `fail_mode = "closed"` counts `fail_after` from the moment the link was first lost, not
/// from the last failed reconnect: with reconnects backing off at most 5 s apart, a deadline
/// restarted on each would never run out for any `fail_after` above that.
fn fail_closed_after(fail_after: Option<u64>) -> Duration {
    let echo = crate::support::targets::Echo::start();
    let mut env =
        crate::support::Env::prepare("24h", &crate::support::tcp_target("echo", echo.port));
    env.gateway_extra = match fail_after {
        Some(s) => format!("fail_mode = \"closed\"\nfail_after = \"{s}s\""),
        None => "fail_mode = \"closed\"".into(),
    };
    env.start_approver();
    env.start_gateway();
    grant(&env, "alice", "echo", "1h");
    let dest = format!("echo:{}", echo.port);
    let mut t = Tunnel::open(&env, "alice", &dest);
    assert_eq!(t.echo(b"x"), b"x");
    env.kill9();
    let limit = Duration::from_secs(fail_after.unwrap_or(30) + 15);
    let (code, err, took) = t.wait_cut_within(limit);
    assert_eq!(code, 255, "{err}");
    assert!(err.contains("fails closed"), "{err}");
    eprintln!("fail_after {fail_after:?}: cut {took:?} after the approver was killed");
    assert!(env.gw_log().contains("failing closed"), "{}", env.gw_log());
    took
}

#[test]
fn fail_mode_closed_cuts_at_fail_after_though_reconnects_keep_failing() {
    let took = fail_closed_after(Some(10));
    assert!(
        took >= Duration::from_millis(9_900) && took <= Duration::from_secs(11),
        "cut after {took:?}, not 10 s ± 1 s"
    );
}

#[test]
fn fail_mode_closed_cuts_at_the_default_30s() {
    let took = fail_closed_after(None);
    assert!(
        took >= Duration::from_millis(29_900) && took <= Duration::from_secs(31),
        "cut after {took:?}, not 30 s ± 1 s"
    );
}

/// `status` through the gateway with the approver stopped: answered from the gateway's replica
/// (its signed grants and catalog), saying so, with the user's grants and their time left.
#[test]
fn status_answers_from_the_replica_while_the_approver_is_away() {
    let g = common::start("");
    let mut env = g.env;
    let id = grant(&env, "alice", "echo", "10m");
    // The grant is in the gateway's replica once a forward under it opens.
    let mut t = Tunnel::open(&env, "alice", &format!("echo:{}", g.echo.port));
    assert_eq!(t.echo(b"x"), b"x");
    drop(t);

    env.stop_approver();
    let mut out = env.gw_ssh("alice", &["status"]);
    env.eventually("the gateway to notice the approver is gone", || {
        out = env.gw_ssh("alice", &["status"]);
        out.stdout.contains("approver unreachable since")
    });
    out.ok();
    assert!(
        out.stdout.contains("shown from the gateway's replica"),
        "{}",
        out.stdout
    );
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains(&format!("grant {id} ")))
        .unwrap_or_else(|| panic!("no grant {id}:\n{}", out.stdout));
    assert!(
        line.trim_start().starts_with("echo") && line.contains("m ") && line.contains(" left"),
        "{line}"
    );
    let json = env.gw_ssh("alice", &["status", "--json"]);
    json.ok();
    let v = json.json();
    assert_eq!(v["source"], "gateway replica", "{v}");
    assert!(v["approver_unreachable_since"].is_string(), "{v}");
    assert_eq!(v["grants"][0]["id"], id, "{v}");
    assert!(
        v["grants"][0]["remaining_secs"].as_u64().unwrap() > 500,
        "{v}"
    );
    // Someone else's grants are not in hers; the rest still waits for the approver.
    assert!(!env
        .gw_ssh("dave", &["status"])
        .stdout
        .contains(&format!("grant {id} ")));
    env.gw_ssh("alice", &["request", "echo-b"])
        .fails_with("`status` answers from this gateway's replica");
}
