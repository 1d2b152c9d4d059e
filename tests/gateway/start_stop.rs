//! The daemons' own lives are audit events: `approver.started` (version, listen address, pid)
//! and `approver.stopped` (the signal), `gateway.started` and `gateway.stopped` reported by
//! the gateway through its spool. A gateway killed outright shows as a start with no stop
//! before it. `audit log --kind` picks them out.

use serde_json::Value;

use super::common;
use crate::support::Env;

fn named<'a>(events: &'a [Value], event: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == event).collect()
}

/// The events `audit log --kind …` lists.
fn kinds(env: &Env, filters: &[&str]) -> Vec<Value> {
    let mut args = vec!["--json", "audit", "log", "--limit", "100000"];
    for f in filters {
        args.extend(["--kind", f]);
    }
    let out = env.admin("audrey", &args);
    out.ok();
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn starts_and_stops_of_both_daemons_are_in_the_log() {
    let g = common::start("");
    let mut env = g.env;
    let first_pid = env.pid();
    env.eventually("the gateway's start", || {
        !named(&env.audit_events(), "gateway.started").is_empty()
    });
    let events = env.audit_events();
    let started = named(&events, "approver.started");
    assert_eq!(started.len(), 1, "{events:#?}");
    assert_eq!(started[0]["pid"], first_pid);
    assert_eq!(started[0]["listen"].as_str().unwrap(), env.addr);
    assert!(started[0]["version"].is_string());
    let gw = named(&events, "gateway.started")[0];
    assert_eq!(gw["gateway"], "gw-1");
    assert_eq!(gw["actor"], "gw-1");
    assert!(gw["pid"].as_u64().unwrap() > 0);
    assert!(gw["instance"].is_string() && gw["started_at"].is_string());

    // SIGTERM: the gateway reports its stop and drains its spool before it exits.
    let (status, _) = env.stop_gateway();
    assert!(status.success(), "{status}");
    let events = env.audit_events();
    let stopped = named(&events, "gateway.stopped");
    assert_eq!(stopped.len(), 1, "{events:#?}");
    assert_eq!(stopped[0]["reason"], "SIGTERM");

    // Started again, then killed outright: the next start follows a start with no stop.
    env.start_gateway();
    env.kill9_gateway();
    env.start_gateway();
    env.eventually("three gateway starts", || {
        named(&env.audit_events(), "gateway.started").len() == 3
    });
    let lives: Vec<String> = kinds(&env, &["gateway"])
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        lives,
        [
            "gateway.started",
            "gateway.stopped",
            "gateway.started",
            "gateway.started"
        ]
    );

    // SIGTERM the approver: its stop is its last record, with the signal and its pid.
    let (status, _) = env.stop_approver();
    assert!(status.success(), "{status}");
    env.start_approver();
    let events = env.audit_events();
    let stopped = named(&events, "approver.stopped");
    assert_eq!(stopped.len(), 1, "{events:#?}");
    assert_eq!(stopped[0]["reason"], "SIGTERM");
    assert_eq!(stopped[0]["pid"], first_pid);
    let second = named(&events, "approver.started")[1];
    assert_eq!(second["seq"], stopped[0]["seq"].as_u64().unwrap() + 1);
    assert_eq!(second["pid"], env.pid());

    // Both daemons' lives, and nothing else, by one prefix each.
    let approver: Vec<Value> = kinds(&env, &["approver"]);
    assert!(approver
        .iter()
        .all(|e| e["event"].as_str().unwrap().starts_with("approver.")));
    assert_eq!(approver.len(), 3);
    assert_eq!(
        kinds(&env, &["approver.stopped", "gateway.stopped"]).len(),
        2
    );
    env.admin("audrey", &["audit", "verify"]).ok();
}
