//! Time: undecided requests lapse after request_ttl; grants expire at their end, with an audit
//! event even if nobody asks.

use crate::support::{request_id, Env};

#[test]
fn undecided_requests_expire() {
    let env = Env::start_with("2s", "");
    let id = request_id(&env.ssh(
        "alice",
        &["request", "pg-prod", "--reason", "INC-1", "--json"],
    ));
    // `wait` blocks until the request lapses, then exits non-zero.
    let w = env.ssh("alice", &["wait", &id.to_string()]);
    assert_eq!(w.code, 1);
    assert!(w.stdout.contains("expired"), "{}", w.stdout);
    env.ssh("bob", &["approve", &id.to_string()])
        .fails_with("expired");
    assert!(env.has_event("request.expired", "request", serde_json::json!(id)));
}

#[test]
fn grants_expire_at_their_end_with_an_event() {
    let env = Env::start();
    let out = env.ssh("alice", &["request", "pg-staging", "--for", "2s", "--json"]);
    let grant = out.json()["grant"]["id"].as_u64().unwrap();
    env.eventually("the grant.expired event", || {
        env.has_event("grant.expired", "grant", serde_json::json!(grant))
    });
    let g = env.ssh("alice", &["grants", "--json"]);
    assert_eq!(g.json()["grants"][0]["status"], "expired");
    let active = env.ssh("alice", &["grants", "--active", "--json"]);
    assert!(active.json()["grants"].as_array().unwrap().is_empty());
    // The clock started at issue: issued_at + 2s == expires_at.
    let j = &g.json()["grants"][0];
    let issued = humantime::parse_rfc3339(j["issued_at"].as_str().unwrap()).unwrap();
    let expires = humantime::parse_rfc3339(j["expires_at"].as_str().unwrap()).unwrap();
    let d = expires.duration_since(issued).unwrap().as_secs();
    assert!((1..=3).contains(&d), "{d}");
}

#[test]
fn wait_counts_down_on_a_terminal_and_is_quiet_in_a_pipe() {
    let env = Env::start_with("3s", "");
    let id = request_id(&env.ssh(
        "alice",
        &["request", "pg-prod", "--reason", "INC-1", "--json"],
    ))
    .to_string();
    let client = format!(
        "{} admin --approver {} -l alice -i {} --approver-host-key '{}' wait {id}",
        crate::support::BIN,
        env.addr,
        env.key("alice").display(),
        env.host_key
    );
    // On a terminal (script gives it one): a live countdown.
    let tty = crate::support::run(std::process::Command::new("script").args([
        "-q",
        "-e",
        "-c",
        &client,
        "/dev/null",
    ]));
    assert!(tty.stdout.contains("lapses in"), "{}", tty.stdout);
    assert!(tty.stdout.contains("expired"), "{}", tty.stdout);
    // In a pipe: only the outcome.
    let id2 = request_id(&env.ssh(
        "alice",
        &["request", "pg-prod", "--reason", "INC-2", "--json"],
    ))
    .to_string();
    let piped = env.admin("alice", &["wait", &id2]);
    assert_eq!(piped.code, 1);
    assert!(!piped.stderr.contains("lapses in"), "{}", piped.stderr);
}
