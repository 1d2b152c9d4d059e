//! Revocation: who may, what it does, and that it is final.

use crate::support::Env;

#[test]
fn revoke_by_approver_admin_or_holder_only() {
    let env = Env::start();
    let out = env.ssh("alice", &["request", "pg-staging", "--for", "1h", "--json"]);
    let g = out.json()["grant"]["id"].as_u64().unwrap().to_string();

    // dave is neither admin, nor approver of "staging" (it has none), nor the holder.
    env.ssh("dave", &["revoke", &g])
        .fails_with("is for admins and approvers");
    env.ssh("audrey", &["revoke", &g])
        .fails_with("is for admins and approvers");

    let r = env.admin(
        "ada",
        &["--json", "revoke", &g, "--reason", "incident closed"],
    );
    r.ok();
    assert_eq!(r.json()["status"], "revoked");
    assert_eq!(r.json()["revoked_by"], "ada");

    env.ssh("ada", &["revoke", &g]).fails_with("already ended");
    let active = env.ssh("alice", &["grants", "--active", "--json"]);
    assert!(active.json()["grants"].as_array().unwrap().is_empty());
    assert!(env.has_event(
        "grant.revoked",
        "reason",
        serde_json::json!("incident closed")
    ));

    // A holder may give up their own grant.
    let out = env.ssh("alice", &["request", "pg-staging", "--for", "1h", "--json"]);
    let g2 = out.json()["grant"]["id"].as_u64().unwrap().to_string();
    env.ssh("alice", &["revoke", &g2]).ok();
}

#[test]
fn approvers_of_the_policy_may_revoke() {
    let env = Env::start();
    let id = crate::support::request_id(&env.ssh(
        "alice",
        &["request", "pg-prod", "--reason", "INC-9", "--json"],
    ))
    .to_string();
    env.ssh("bob", &["approve", &id]).ok();
    env.ssh("carol", &["approve", &id]).ok();
    env.ssh("dave", &["revoke", &id])
        .fails_with("is for admins and approvers");
    env.ssh("bob", &["revoke", &id]).ok();
    env.ssh("bob", &["revoke", "999"])
        .fails_with("no grant 999");
}
