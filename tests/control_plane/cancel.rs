//! `cancel`: a requester withdraws their own pending request; waiters are told, and it can no
//! longer be approved.

use std::time::Duration;

use crate::support::{request_id, Env};

#[test]
fn a_requester_cancels_their_pending_request_and_waiters_are_told() {
    let env = Env::start();
    let id = request_id(&env.ssh(
        "alice",
        &["request", "pg-prod", "--reason", "INC-11", "--json"],
    ))
    .to_string();

    std::thread::scope(|s| {
        let waiter = s.spawn(|| env.ssh("alice", &["wait", &id]));
        // Give the waiter time to be asleep on the request, so that it is the cancel that
        // wakes it (it would say the same if it came late, from the stored state).
        std::thread::sleep(Duration::from_secs(1));

        // Only the requester: an approver is told to deny instead; someone who cannot see the
        // request is not told it exists.
        env.ssh("bob", &["cancel", &id])
            .fails_with("only its requester may cancel");
        env.ssh("ada", &["cancel", &id])
            .fails_with("only its requester may cancel");
        env.ssh("dave", &["cancel", &id])
            .fails_with(&format!("no request {id} that you can see"));

        let out = env.ssh(
            "alice",
            &["cancel", &id, "--reason", "fixed", "without", "access"],
        );
        out.ok();
        assert!(
            out.stdout.contains(&format!("request {id} cancelled")),
            "{}",
            out.stdout
        );

        let waited = waiter.join().unwrap();
        assert_eq!(
            waited.code, 1,
            "a cancelled request is not approved: {}",
            waited.stdout
        );
        assert!(
            waited.stdout.contains(&format!(
                "request {id} was cancelled by its requester: fixed without access"
            )),
            "{}",
            waited.stdout
        );
    });

    // It cannot be approved, denied or cancelled again.
    env.ssh("bob", &["approve", &id])
        .fails_with("was cancelled by its requester");
    env.ssh("carol", &["deny", &id])
        .fails_with("was cancelled by its requester");
    env.ssh("alice", &["cancel", &id])
        .fails_with("was cancelled by its requester");

    // `requests` shows the state: gone from the pending ones, marked in the full listing.
    let pending = env.ssh("bob", &["requests", "--json"]);
    assert!(pending.json()["requests"].as_array().unwrap().is_empty());
    let all = env.ssh("alice", &["requests", "--all", "--json"]);
    assert_eq!(all.json()["requests"][0]["state"], "cancelled");
    assert_eq!(
        all.json()["requests"][0]["cancel_reason"],
        "fixed without access"
    );
    let text = env.ssh("bob", &["requests", "--all"]);
    text.ok();
    assert!(
        text.stdout
            .contains("cancelled by requester: fixed without access"),
        "{}",
        text.stdout
    );

    // Audited as its own event, with the reason; the refusals too.
    assert!(env.has_event(
        "request.cancelled",
        "reason",
        serde_json::json!("fixed without access")
    ));
    assert!(env.has_event("command.refused", "actor", serde_json::json!("bob")));
    // It no longer counts against the requester's pending requests.
    let status = env.ssh("alice", &["status", "--json"]);
    assert!(status.json()["pending"].as_array().unwrap().is_empty());
}

#[test]
fn a_decided_request_cannot_be_cancelled() {
    let env = Env::start();
    // Staging approves alice at once: there is nothing left to withdraw (revoke ends grants).
    let out = env.ssh(
        "alice",
        &["request", "pg-staging", "--for", "30m", "--json"],
    );
    let id = out.json()["request"]["id"].as_u64().unwrap().to_string();
    env.ssh("alice", &["cancel", &id])
        .fails_with("is already decided: approved");
    // Also through the thin client, with the same words.
    env.admin("alice", &["cancel", &id])
        .fails_with("is already decided: approved");
}
