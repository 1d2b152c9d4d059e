//! Requesting: deny by default, durations, reasons, auto-approval in and out of its window.

use crate::support::{request_id, Env};

#[test]
fn deny_by_default_and_unknown_targets() {
    let env = Env::start();
    env.ssh("alice", &["request", "lonely"])
        .fails_with("no policy allows requests for \"lonely\"");
    env.ssh("alice", &["request", "nowhere"])
        .fails_with("unknown target \"nowhere\"");
    // Nothing was created by either refusal.
    let out = env.ssh("alice", &["requests", "--all", "--json"]);
    out.ok();
    assert_eq!(out.json()["requests"].as_array().unwrap().len(), 0);
}

#[test]
fn max_duration_is_refused_not_shortened_and_defaults_apply() {
    let env = Env::start();
    env.ssh(
        "alice",
        &["request", "pg-prod", "--for", "5h", "--reason", "INC-1"],
    )
    .fails_with("over the 4h maximum");
    env.ssh(
        "alice",
        &["request", "pg-prod", "--for", "soon", "--reason", "INC-1"],
    )
    .fails_with("bad duration");
    let out = env.ssh(
        "alice",
        &["request", "pg-prod", "--reason", "INC-1", "--json"],
    );
    let j = out.json();
    assert_eq!(j["request"]["duration_secs"], 3600, "default_duration");
    assert_eq!(j["request"]["state"], "pending");
    assert_eq!(j["request"]["needed"], 2);
    let _ = request_id(&out);
}

#[test]
fn reason_required() {
    let env = Env::start();
    env.ssh("alice", &["request", "pg-prod"])
        .fails_with("requires a reason");
    // Through the thin client too, with the same words.
    env.portcullis("alice", "request", &["pg-prod"])
        .fails_with("requires a reason");
    env.portcullis(
        "alice",
        "request",
        &["pg-prod", "--reason", "INC 42: disk full"],
    )
    .ok();
    let out = env.ssh("alice", &["requests", "--json"]);
    assert_eq!(out.json()["requests"][0]["reason"], "INC 42: disk full");
}

#[test]
fn auto_approval_in_and_out_of_its_window() {
    let env = Env::start();
    // Staging auto-approves dev during a window that spans today.
    let out = env.ssh(
        "alice",
        &["request", "pg-staging", "--for", "30m", "--json"],
    );
    let j = out.json();
    assert_eq!(j["request"]["state"], "approved");
    assert_eq!(j["grant"]["status"], "active");
    let remaining = j["grant"]["remaining_secs"].as_u64().unwrap();
    assert!((1700..=1800).contains(&remaining), "{remaining}");
    // Not for someone outside the group: the policy has no approvers, so it is refused.
    env.ssh("bob", &["request", "pg-staging"])
        .fails_with("only auto-approves groups dev");
    // The weekend-only policy's window is three days from now.
    env.ssh("alice", &["request", "pg-weekend"])
        .fails_with("only auto-approves groups dev during");
    let status = env.ssh("alice", &["status"]);
    status.ok();
    assert!(status.stdout.contains("pg-staging"), "{}", status.stdout);
    // The auto-approval is in the audit log as such.
    assert!(env.has_event("grant.issued", "automatic", serde_json::json!(true)));
}

#[test]
fn help_teaches_and_bad_words_are_usage_errors() {
    let env = Env::start();
    let out = env.ssh("alice", &["help"]);
    out.ok();
    assert!(out.stdout.contains("request"), "{}", out.stdout);
    let out = env.ssh("alice", &["help", "request"]);
    out.ok();
    assert!(out.stdout.contains("Example"), "{}", out.stdout);
    let out = env.ssh("alice", &["approve", "seventeen"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let out = env.ssh("alice", &["frobnicate"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
}

#[test]
fn the_thin_client_sends_values_that_begin_with_a_dash_intact() {
    // Found by the control_line fuzz target: `--reason=-x` used to reach the approver as
    // `--reason -x`, which it refused as an unexpected argument.
    let env = Env::start();
    env.portcullis("alice", "request", &["pg-prod", "--reason=-1 replica lag"])
        .ok();
    let out = env.ssh("alice", &["requests", "--json"]);
    assert_eq!(out.json()["requests"][0]["reason"], "-1 replica lag");
}

#[test]
fn a_pending_request_suggests_the_whole_wait_line() {
    let env = Env::start();
    // Straight to the approver: the line as this user reached it.
    let out = env.ssh("alice", &["request", "pg-prod", "--reason", "INC-5"]);
    out.ok();
    let port = env.addr.rsplit(':').next().unwrap();
    let id = out.stdout.split_whitespace().nth(1).unwrap().to_string();
    let line = format!("wait for the decision: ssh -p {port} alice@127.0.0.1 wait {id}\n");
    assert!(out.stdout.ends_with(&line), "{}", out.stdout);

    // Relayed by a gateway: the line as the user reached the gateway, when it says.
    let public = std::fs::read_to_string(env.path().join("alice_key.pub")).unwrap();
    let key = portcullis_core::keys::fingerprint(
        &portcullis_core::keys::parse_public_key(public.trim()).unwrap(),
    );
    let relayed = env.as_gw1(
        &format!(
            "as --user alice --key {key} --reach 'ssh -p 2222 alice@bastion' -- request pg-prod --reason INC-6"
        ),
        b"",
    );
    assert_eq!(relayed.code, Some(0), "{}", relayed.stderr);
    assert!(
        relayed
            .stdout
            .contains("wait for the decision: ssh -p 2222 alice@bastion wait "),
        "{}",
        relayed.stdout
    );
    // A gateway that does not say gets the command alone, never an address of ours.
    let bare = env.as_gw1(
        &format!("as --user alice --key {key} -- request pg-prod --reason INC-7"),
        b"",
    );
    assert_eq!(bare.code, Some(0), "{}", bare.stderr);
    assert!(
        bare.stdout.contains("wait for the decision: wait "),
        "{}",
        bare.stdout
    );
}
