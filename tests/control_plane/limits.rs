//! Sizes and counts bounded at the source (issue 16, items 3 and 7): reasons and notes have a
//! maximum length, a user a maximum of pending requests, listings a cap, refusals a budget in
//! the audit log, a connection a cap on commands running at once.

use std::time::Duration;

use portcullis_ssh::{ClientConnection, ConnectOptions, HostKeyPolicy, Identity};

use crate::support::{request_id, Env, SOON};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// One SSH connection to the approver as `user` (a russh client, so that many commands can
/// share it).
async fn connect(env: &Env, user: &str) -> ClientConnection {
    ClientConnection::connect(&ConnectOptions {
        addr: env.addr.clone(),
        user: user.into(),
        identity: Identity::KeyFile(env.key(user)),
        host_key: HostKeyPolicy::Pinned(
            portcullis_core::keys::parse_public_key(&env.host_key).unwrap(),
        ),
        connect_timeout: SOON,
    })
    .await
    .unwrap()
}

#[test]
fn a_reason_or_note_over_1_kib_is_refused_before_anything_is_written() {
    let env = Env::start();
    let events = env.audit_events().len();
    let long = "x".repeat(1025);
    env.ssh("alice", &["request", "pg-prod", "--reason", &long])
        .fails_with("the reason is 1025 bytes; at most 1024");
    let none = env.ssh("alice", &["requests", "--all", "--json"]);
    assert!(none.json()["requests"].as_array().unwrap().is_empty());

    let fits = "x".repeat(1024);
    let id = request_id(&env.ssh(
        "alice",
        &["request", "pg-prod", "--reason", &fits, "--json"],
    ))
    .to_string();
    env.ssh("bob", &["approve", &id, "--note", &long])
        .fails_with("the note is 1025 bytes; at most 1024");
    env.ssh("bob", &["deny", &id, "--note", &long])
        .fails_with("the note is 1025 bytes; at most 1024");
    let j = env.ssh("alice", &["requests", "--json"]).json();
    assert_eq!(j["requests"][0]["state"], "pending");
    assert_eq!(j["requests"][0]["approvals"], serde_json::json!([]));
    // Only the one request was written: no event for the refused ones.
    assert_eq!(env.audit_events().len(), events + 1);
}

#[test]
fn a_user_has_at_most_ten_pending_requests_by_default() {
    let env = Env::start();
    for _ in 0..10 {
        env.ssh("alice", &["request", "pg-prod", "--reason", "INC-1"])
            .ok();
    }
    env.ssh("alice", &["request", "pg-prod", "--reason", "INC-1"])
        .fails_with("10 requests pending, the most one user may have");
    // Auto-approved requests never wait, so they are not held back; nor is anyone else.
    env.ssh("alice", &["request", "pg-staging"]).ok();
    env.ssh("dave", &["request", "pg-prod", "--reason", "INC-1"])
        .ok();
    let j = env.ssh("ada", &["requests", "--json"]).json();
    assert_eq!(j["requests"].as_array().unwrap().len(), 11);
}

#[test]
fn the_pending_cap_is_configurable() {
    let mut env = Env::prepare("24h", "");
    let cfg = std::fs::read_to_string(&env.config).unwrap().replace(
        "request_ttl = \"24h\"",
        "request_ttl = \"24h\"\nmax_pending_requests_per_user = 2",
    );
    std::fs::write(&env.config, cfg).unwrap();
    env.start_approver();
    for _ in 0..2 {
        env.ssh("alice", &["request", "pg-prod", "--reason", "INC-1"])
            .ok();
    }
    env.ssh("alice", &["request", "pg-prod", "--reason", "INC-1"])
        .fails_with("2 requests pending");
}

#[test]
fn listings_are_capped_with_a_line_saying_more_exist() {
    let env = Env::start();
    for _ in 0..5 {
        env.ssh("alice", &["request", "pg-staging", "--for", "10m"])
            .ok();
    }
    let out = env.ssh("alice", &["requests", "--all", "--limit", "2"]);
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    assert!(lines[2].contains("3 more not shown"), "{}", out.stdout);
    // The newest are the ones shown.
    assert!(lines[0].trim_start().starts_with('4'), "{}", out.stdout);
    let j = env
        .ssh("alice", &["requests", "--all", "--limit", "2", "--json"])
        .json();
    assert_eq!(j["requests"].as_array().unwrap().len(), 2);
    assert_eq!(j["more"], 3);

    let g = env.ssh("alice", &["grants", "--limit", "3"]);
    assert!(g.stdout.contains("2 more not shown"), "{}", g.stdout);
    let log = env.ssh("audrey", &["audit", "log", "--limit", "4"]);
    log.ok();
    assert_eq!(log.stdout.lines().count(), 5, "{}", log.stdout);
    assert!(log.stdout.contains("more not shown"), "{}", log.stdout);
    // JSON Lines stay events only; the note goes to stderr.
    let log = env.ssh("audrey", &["audit", "log", "--limit", "4", "--json"]);
    assert_eq!(log.stdout.lines().count(), 4, "{}", log.stdout);
    assert!(log.stderr.contains("more not shown"), "{}", log.stderr);
    env.ssh("audrey", &["sessions", "--limit", "1"]).ok();
    env.ssh("audrey", &["audit", "sessions", "--limit", "1"])
        .ok();
    // The default cap is 1000, and a cap has bounds.
    env.ssh("alice", &["requests", "--limit", "0"])
        .fails_with("--limit");
}

#[test]
fn refused_commands_do_not_each_cost_an_audit_record() {
    let env = Env::start();
    let id = request_id(&env.ssh(
        "alice",
        &["request", "pg-prod", "--reason", "INC-1", "--json"],
    ))
    .to_string();
    let rt = runtime();
    rt.block_on(async {
        let conn = connect(&env, "dave").await;
        for _ in 0..60 {
            let (status, _, _) = conn
                .run_with_input(&format!("approve {id}"), &b""[..])
                .await
                .unwrap();
            assert_eq!(status.exit_status, Some(1));
        }
    });
    let refused = |env: &Env| -> Vec<serde_json::Value> {
        env.audit_events()
            .into_iter()
            .filter(|e| e["event"] == "command.refused" && e["actor"] == "dave")
            .collect()
    };
    let one_by_one = refused(&env).len();
    assert!(
        one_by_one <= 10,
        "{one_by_one} command.refused records for 60 refusals"
    );
    // The rest are counted, and the count reaches the log.
    env.eventually("the count of the refusals not recorded one by one", || {
        refused(&env)
            .iter()
            .filter_map(|e| e["count"].as_u64())
            .sum::<u64>()
            + refused(&env)
                .iter()
                .filter(|e| e["count"].is_null())
                .count() as u64
            == 60
    });
}

#[test]
fn running_commands_count_against_the_channel_cap() {
    let env = Env::start();
    let id = request_id(&env.ssh(
        "alice",
        &["request", "pg-prod", "--reason", "INC-1", "--json"],
    ));
    let rt = runtime();
    rt.block_on(async {
        let conn = connect(&env, "alice").await;
        let mut waits = Vec::new();
        for _ in 0..8 {
            waits.push(conn.exec(&format!("wait {id}")).await.unwrap());
        }
        // Give the approver the time to start all eight.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let ninth = conn.exec(&format!("wait {id}")).await;
        assert!(ninth.is_err(), "a ninth command ran beside eight waits");
        // A place comes back when a command ends.
        let first = waits.remove(0);
        first.close().await.unwrap();
        drop(first);
        let deadline = tokio::time::Instant::now() + SOON;
        loop {
            match conn.exec("whoami").await {
                Ok(_) => break,
                Err(e) => {
                    assert!(tokio::time::Instant::now() < deadline, "{e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    });
}
