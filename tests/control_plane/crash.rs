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
