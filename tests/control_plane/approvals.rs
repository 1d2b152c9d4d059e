//! Approvals: distinct approvers, never the requester, repeats counted once; denial; `wait`.

use std::process::{Command, Stdio};

use crate::support::{request_id, Env, BIN};

#[test]
fn two_distinct_approvers_are_needed() {
    let env = Env::start();
    let id = request_id(&env.ssh(
        "alice",
        &[
            "request", "pg-prod", "--for", "1h", "--reason", "INC-42", "--json",
        ],
    ));
    let id_s = id.to_string();

    // A waiter started now returns 0 once the grant is issued.
    let port = env.addr.rsplit(':').next().unwrap().to_string();
    let waiter = Command::new("ssh")
        .args(["-p", &port, "-i"])
        .arg(env.key("alice"))
        .args([
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
            "-F",
            "/dev/null",
            "-n",
        ])
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            env.path().join("known_hosts").display()
        ))
        .args(["alice@127.0.0.1", "wait", &id_s])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    env.ssh("alice", &["approve", &id_s])
        .fails_with("cannot approve your own request");
    env.ssh("dave", &["approve", &id_s])
        .fails_with("not an approver");
    env.admin("ada", &["approve", &id_s])
        .fails_with("not an approver");

    let first = env.admin("bob", &["--json", "approve", &id_s, "--note", "looks fine"]);
    first.ok();
    assert_eq!(
        first.json()["request"]["approvals"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(first.json()["request"]["state"], "pending");

    // Bob again: counted once, still pending.
    let again = env.ssh("bob", &["approve", &id_s, "--json"]);
    again.ok();
    assert_eq!(again.json()["already_counted"], true);
    assert_eq!(again.json()["request"]["state"], "pending");
    assert_eq!(
        again.json()["request"]["approvals"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Bob sees it among the requests he may decide; dave does not.
    let pending = env.ssh("bob", &["requests", "--pending", "--json"]);
    assert_eq!(pending.json()["requests"][0]["id"], id);
    let none = env.ssh("dave", &["requests", "--json"]);
    assert!(none.json()["requests"].as_array().unwrap().is_empty());

    let second = env.ssh("carol", &["approve", &id_s, "--json"]);
    second.ok();
    let j = second.json();
    assert_eq!(j["request"]["state"], "approved");
    assert_eq!(j["grant"]["user"], "alice");
    assert_eq!(j["grant"]["approvers"], serde_json::json!(["bob", "carol"]));

    let waited = waiter.wait_with_output().unwrap();
    assert!(
        waited.status.success(),
        "{}",
        String::from_utf8_lossy(&waited.stderr)
    );
    assert!(String::from_utf8_lossy(&waited.stdout).contains("approved"));

    env.ssh("bob", &["deny", &id_s])
        .fails_with("already decided");
    let grants = env.ssh("alice", &["grants", "--active", "--json"]);
    assert_eq!(grants.json()["grants"][0]["target"], "pg-prod");

    for (event, who) in [("request.approved", "bob"), ("request.approved", "carol")] {
        assert!(env.has_event(event, "actor", serde_json::json!(who)));
    }
    // Refusals are audited as well.
    assert!(env.has_event("command.refused", "actor", serde_json::json!("dave")));
}

#[test]
fn a_denial_ends_the_request_and_wait_says_so() {
    let env = Env::start();
    let id = request_id(&env.ssh(
        "alice",
        &["request", "pg-prod", "--reason", "INC-7", "--json"],
    ))
    .to_string();
    env.ssh("bob", &["deny", &id, "--note", "use staging"]).ok();
    let w = env.ssh("alice", &["wait", &id]);
    assert_eq!(w.code, 1, "wait exits non-zero unless approved");
    assert!(
        w.stdout.contains("denied by bob: use staging"),
        "{}",
        w.stdout
    );
    env.ssh("carol", &["approve", &id])
        .fails_with("already decided");
    // The thin client's wait behaves the same.
    let out = Command::new(BIN)
        .args(["admin", "--approver", &env.addr, "-l", "alice", "-i"])
        .arg(env.key("alice"))
        .args(["--approver-host-key", &env.host_key, "wait", &id])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}
