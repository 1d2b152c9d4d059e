//! A connection that tries to log in and never does is an audit event (`session.refused`,
//! channel `login`), at the gateway and at the approver, with the name it tried, its address,
//! the key's fingerprint and the reason; a flood from one address costs the log ten events a
//! minute and a count.

use serde_json::Value;

use super::common;
use super::refused_channels::refusals;
use crate::support::{keygen, ssh_with_keys, Env};

/// The `session.refused` events of refused logins (and the counts), as the auditor lists them.
fn login_refusals(env: &Env) -> Vec<Value> {
    refusals(env)
        .into_iter()
        .filter(|e| e["channel"] == "login" || e["count"].is_u64())
        .collect()
}

#[test]
fn refused_logins_are_audit_events_counted_per_source() {
    let g = common::start("");
    let env = g.env;
    let stranger = env.path().join("stranger_key");
    keygen(env.path(), "stranger");
    let approver_port = env.addr.rsplit_once(':').unwrap().1.to_string();

    // An unknown key at each daemon: each is one event naming what was tried and why.
    let out = ssh_with_keys(&env.gw_port(), "alice", &[&stranger], &[], &["status"]);
    assert_ne!(out.code, 0);
    let out = ssh_with_keys(&approver_port, "mallory", &[&stranger], &[], &["status"]);
    assert_ne!(out.code, 0);
    env.eventually("both refused logins in the audit log", || {
        let events = login_refusals(&env);
        let at = |who: &str, user: &str, reason: &str| {
            events.iter().any(|e| {
                e["gateway"] == who
                    && e["user"] == user
                    && e["reason"] == reason
                    && e["client"]
                        .as_str()
                        .is_some_and(|c| c.starts_with("127.0.0.1:"))
                    && e["fingerprint"]
                        .as_str()
                        .is_some_and(|f| f.contains("SHA256:"))
            })
        };
        at("gw-1", "alice", "unknown_key") && at("approver", "mallory", "unknown_user")
    });

    // A flood from one address: ten one by one a minute (the harness's own early attempts,
    // refused while the gateway had no catalog, count among them), the rest counted.
    for _ in 0..14 {
        let out = ssh_with_keys(&env.gw_port(), "alice", &[&stranger], &[], &["status"]);
        assert_ne!(out.code, 0);
    }
    env.eventually("the gateway's count of the rest", || {
        let events = login_refusals(&env);
        let one_by_one = events
            .iter()
            .filter(|e| e["gateway"] == "gw-1" && e["count"].is_null())
            .count();
        let counted: u64 = events
            .iter()
            .filter(|e| e["gateway"] == "gw-1")
            .filter_map(|e| e["count"].as_u64())
            .sum();
        assert!(one_by_one <= 10, "{events:?}");
        one_by_one == 10 && counted >= 5
    });
}
