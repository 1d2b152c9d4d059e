//! Durability: what the approver acknowledged survives `kill -9`.

use crate::support::Env;

#[test]
fn an_acknowledged_grant_survives_kill_9() {
    let mut env = Env::start();
    let id = crate::support::request_id(&env.ssh(
        "alice",
        &["request", "pg-prod", "--reason", "INC-3", "--json"],
    ))
    .to_string();
    env.ssh("bob", &["approve", &id]).ok();
    // The acknowledgement of the second approval is the moment the grant exists.
    env.ssh("carol", &["approve", &id]).ok();
    env.kill9();
    env.start_approver();
    let g = env.ssh("alice", &["grants", "--active", "--json"]);
    let grants = g.json()["grants"].as_array().unwrap().clone();
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert_eq!(grants[0]["approvers"], serde_json::json!(["bob", "carol"]));
    // The audit trail is whole and new ids continue after the old ones.
    env.ssh("ada", &["audit", "verify"]).ok();
    let next = crate::support::request_id(&env.ssh("alice", &["request", "pg-staging", "--json"]));
    assert!(next > id.parse::<u64>().unwrap());
}

/// SIGTERM, as systemd's stop sends it: the approver stops accepting, lets the write in flight
/// finish, tells the clients it is stopping, and exits 0; what it acknowledged is all there
/// after a restart.
#[test]
fn sigterm_stops_the_approver_gracefully() {
    let mut env = Env::start();
    let out = env.ssh(
        "alice",
        &[
            "request", "pg-prod", "--for", "1h", "--reason", "x", "--json",
        ],
    );
    out.ok();
    let id = out.json()["request"]["id"].as_u64().unwrap();
    // A client blocked in `wait` when the stop comes.
    let waiting = env
        .portcullis_command("alice", "admin", &["wait", &id.to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (status, took) = env.stop_approver();
    eprintln!("approver exited {status} {took:?} after SIGTERM");
    assert!(status.success(), "{status}");
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
    let w = waiting.wait_with_output().unwrap();
    assert!(!w.status.success());
    assert!(
        String::from_utf8_lossy(&w.stderr).contains("approver stopping"),
        "{}",
        String::from_utf8_lossy(&w.stderr)
    );
    env.start_approver();
    let out = env.admin("ada", &["--json", "requests", "--all"]);
    assert!(out.json()["requests"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["id"] == id));
    env.admin("audrey", &["audit", "verify"]).ok();
}
