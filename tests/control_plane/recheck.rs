//! A decision re-checks the request against the config in force (issue 16, item 5): a reload
//! between the request and its approval can tighten the rules, remove the requester or take an
//! approver out of the approver groups, and the approval must follow what is in force then.

use serde_json::json;

use crate::support::{request_id, Env};

/// A target under an easy policy (one approval, 8h, no reason) that a reload moves under a
/// strict one (two approvals, 1h, reason required) by relabelling it.
const OPS: &str = r#"
[[targets]]
name = "pg-ops"
kind = "tcp"
address = "127.0.0.1:55432"
labels = { env = "ops" }

[[policies]]
name = "ops-easy"
match = { env = "ops" }
approvers = ["dba"]
approvals = 1
max_duration = "8h"

[[policies]]
name = "ops-strict"
match = { env = "ops-strict" }
approvers = ["dba"]
approvals = 2
max_duration = "1h"
require_reason = true
"#;

fn rewrite(env: &Env, from: &str, to: &str) {
    let cfg = std::fs::read_to_string(&env.config).unwrap();
    assert!(cfg.contains(from), "{from:?} not in the config");
    std::fs::write(&env.config, cfg.replacen(from, to, 1)).unwrap();
    env.admin("ada", &["reload"]).ok();
}

#[test]
fn an_approval_after_a_tightening_reload_is_refused_not_granted() {
    let env = Env::start_with("24h", OPS);
    let id =
        request_id(&env.ssh("alice", &["request", "pg-ops", "--for", "8h", "--json"])).to_string();
    rewrite(
        &env,
        "labels = { env = \"ops\" }",
        "labels = { env = \"ops-strict\" }",
    );

    let out = env.ssh("bob", &["approve", &id, "--json"]);
    out.fails_with("no longer qualifies");
    assert_eq!(out.json()["error"], "refused", "{}", out.stdout);
    // No grant, and the request is closed with the reason, which `wait` tells the requester.
    let grants = env.ssh("alice", &["grants", "--json"]);
    assert!(
        grants.json()["grants"].as_array().unwrap().is_empty(),
        "{}",
        grants.stdout
    );
    let w = env.ssh("alice", &["wait", &id]);
    assert_eq!(w.code, 1, "{}", w.stdout);
    assert!(w.stdout.contains("no longer qualifies"), "{}", w.stdout);
    // An audit event says why.
    let refused = env
        .audit_events()
        .into_iter()
        .find(|e| {
            e["event"] == "request.denied" && e["request"] == json!(id.parse::<u64>().unwrap())
        })
        .expect("a request.denied event");
    assert_eq!(refused["actor"], "approver");
    assert!(
        refused["note"]
            .as_str()
            .unwrap()
            .contains("policy \"ops-easy\""),
        "{refused}"
    );
}

#[test]
fn a_request_over_the_new_maximum_is_refused_not_shortened() {
    let env = Env::start_with("24h", OPS);
    let id =
        request_id(&env.ssh("alice", &["request", "pg-ops", "--for", "8h", "--json"])).to_string();
    // Same policy, a lower maximum and a reason now required.
    rewrite(
        &env,
        "approvals = 1\nmax_duration = \"8h\"",
        "approvals = 1\nmax_duration = \"1h\"",
    );
    env.ssh("bob", &["approve", &id])
        .fails_with("over the 1h maximum");
    let grants = env.ssh("alice", &["grants", "--json"]);
    assert!(grants.json()["grants"].as_array().unwrap().is_empty());
}

#[test]
fn approvals_count_only_from_approvers_still_in_an_approver_group() {
    let env = Env::start();
    let id = request_id(&env.ssh(
        "alice",
        &["request", "pg-prod", "--reason", "INC-5", "--json"],
    ))
    .to_string();
    env.ssh("bob", &["approve", &id]).ok();
    // Bob leaves the dba group (his is the first `groups = ["dba"]` in the file).
    rewrite(&env, "groups = [\"dba\"]", "groups = [\"dev\"]");
    let out = env.ssh("carol", &["approve", &id, "--json"]);
    out.ok();
    let j = out.json();
    assert_eq!(j["request"]["state"], "pending", "{}", out.stdout);
    assert!(j["grant"].is_null(), "{}", out.stdout);
    assert!(env.ssh("alice", &["grants", "--json"]).json()["grants"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn a_requester_removed_by_a_reload_gets_no_grant() {
    let env = Env::start_with("24h", OPS);
    let id = request_id(&env.ssh("alice", &["request", "pg-ops", "--json"])).to_string();
    // Alice's whole [[users]] entry goes.
    let cfg = std::fs::read_to_string(&env.config).unwrap();
    let start = cfg.find("[[users]]\nname = \"alice\"").unwrap();
    let end = start + cfg[start..].find("[[users]]\nname = \"bob\"").unwrap();
    std::fs::write(&env.config, format!("{}{}", &cfg[..start], &cfg[end..])).unwrap();
    env.admin("ada", &["reload"]).ok();
    env.ssh("bob", &["approve", &id])
        .fails_with("alice is no longer configured");
    let grants = env.ssh("ada", &["grants", "--json"]);
    assert!(grants.json()["grants"].as_array().unwrap().is_empty());
}

/// Issue 17 item 8: a request racing reloads is decided under the catalog in force when its
/// commit lands, never under one a reload replaced while it waited for the writer. Reloads
/// flip a target between a config that auto-approves it and one that covers it by no policy;
/// in the audit log, no `request.created` for it may follow a `config.loaded` of the second.
#[test]
fn a_request_racing_reloads_follows_the_catalog_in_force_at_its_commit() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    let race = |env_label: &str| {
        format!(
            "\n[[targets]]\nname = \"pg-race\"\nkind = \"tcp\"\naddress = \"127.0.0.1:56432\"\nlabels = {{ env = \"{env_label}\" }}\n\n[[policies]]\nname = \"race\"\nmatch = {{ env = \"race\" }}\nauto_approve = {{ groups = [\"dev\"] }}\nmax_duration = \"1h\"\n"
        )
    };
    let env = Env::start_with("24h", &race("race"));
    let base = std::fs::read_to_string(&env.config).unwrap();
    let allow = base.clone();
    let deny = base.replace(
        "labels = { env = \"race\" }",
        "labels = { env = \"closed\" }",
    );
    assert_ne!(allow, deny);
    let sha = |text: &str| {
        let p = env.path().join("sha-input");
        std::fs::write(&p, text).unwrap();
        let out = std::process::Command::new("sha256sum")
            .arg(&p)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let deny_sha = sha(&deny);

    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let tmp = env.path().join("portcullis.toml.new");
            let until = Instant::now() + Duration::from_secs(8);
            let mut flip = false;
            while Instant::now() < until {
                flip = !flip;
                std::fs::write(&tmp, if flip { &deny } else { &allow }).unwrap();
                std::fs::rename(&tmp, &env.config).unwrap();
                std::process::Command::new("kill")
                    .args(["-HUP", &env.pid().to_string()])
                    .status()
                    .unwrap();
                std::thread::sleep(Duration::from_millis(15));
            }
            stop.store(true, Ordering::SeqCst);
        });
        for user in ["alice", "dave"] {
            let stop = &stop;
            let env = &env;
            s.spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let _ = env.ssh(user, &["request", "pg-race", "--for", "5m"]);
                }
            });
        }
    });

    let log = env.ssh("audrey", &["audit", "log", "--json", "--limit", "100000"]);
    log.ok();
    let (mut in_force_denies, mut created, mut reloads) = (false, 0, 0);
    for line in log.stdout.lines() {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        if e["event"] == "config.loaded" {
            in_force_denies = e["sha256"] == deny_sha.as_str();
            reloads += 1;
        }
        if e["event"] == "request.created" && e["target"] == "pg-race" {
            created += 1;
            assert!(
                !in_force_denies,
                "request {} was created under a catalog a reload had replaced: {e}",
                e["request"]
            );
        }
    }
    assert!(
        created > 0 && reloads > 2,
        "{created} requests, {reloads} reloads"
    );
    println!("{created} requests across {reloads} reloads");
}
