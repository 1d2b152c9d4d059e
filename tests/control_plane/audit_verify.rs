//! `audit verify` proves the log untouched, or names the first bad record: altered, removed,
//! reordered, or cut off the end. The tampering is done to the store's files directly, as an
//! attacker with disk access would.

use portcullis_store::Store;

use crate::support::{run, Env, BIN};

/// A log with a few records, then the approver stopped so the store can be opened.
fn stopped_env() -> Env {
    let mut env = Env::start();
    for _ in 0..3 {
        env.ssh("alice", &["request", "pg-staging", "--for", "5m"])
            .ok();
    }
    env.ssh("ada", &["audit", "verify"]).ok();
    env.kill9();
    env
}

fn verify_offline(env: &Env) -> crate::support::Out {
    run(std::process::Command::new(BIN)
        .args(["audit", "verify", "--data-dir"])
        .arg(env.path().join("approver")))
}

fn store(env: &Env) -> Store {
    Store::open(&env.path().join("approver/store")).unwrap()
}

#[test]
fn untouched_log_verifies_offline_and_online() {
    let mut env = stopped_env();
    verify_offline(&env).ok();
    env.start_approver();
    let out = env.admin("audrey", &["audit", "verify"]);
    out.ok();
    assert!(out.stdout.contains("chain intact"), "{}", out.stdout);
}

#[test]
fn an_altered_record_is_named() {
    let mut env = stopped_env();
    {
        // What an attacker would do: rewrite who did it, keep everything else.
        let s = store(&env);
        let raw = s.tamper().audit_raw(4).unwrap().unwrap();
        let mut rec: portcullis_audit::AuditRecord = portcullis_core::codec::decode(&raw).unwrap();
        rec.event.actor = "mallory".into();
        s.tamper()
            .put_audit_raw(4, &portcullis_core::codec::encode(&rec))
            .unwrap();
    }
    let out = verify_offline(&env);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("record 4 was altered"),
        "{}",
        out.stderr
    );
    // The running approver reports the same through the API.
    env.start_approver();
    env.admin("audrey", &["audit", "verify"])
        .fails_with("record 4");
}

#[test]
fn a_flipped_byte_is_named() {
    let env = stopped_env();
    {
        let s = store(&env);
        let mut raw = s.tamper().audit_raw(2).unwrap().unwrap();
        let mid = raw.len() / 2;
        raw[mid] ^= 0x20;
        s.tamper().put_audit_raw(2, &raw).unwrap();
    }
    let out = verify_offline(&env);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("record 2 "), "{}", out.stderr);
}

#[test]
fn a_removed_record_is_named() {
    let env = stopped_env();
    store(&env).tamper().remove_audit(3).unwrap();
    let out = verify_offline(&env);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("record 4 is out of place"),
        "{}",
        out.stderr
    );
}

#[test]
fn reordered_records_are_named() {
    let env = stopped_env();
    {
        let s = store(&env);
        let a = s.tamper().audit_raw(3).unwrap().unwrap();
        let b = s.tamper().audit_raw(4).unwrap().unwrap();
        s.tamper().put_audit_raw(3, &b).unwrap();
        s.tamper().put_audit_raw(4, &a).unwrap();
    }
    let out = verify_offline(&env);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("record 4 is out of place"),
        "{}",
        out.stderr
    );
}

#[test]
fn records_cut_off_the_end_are_caught() {
    let env = stopped_env();
    let last = store(&env).last_audit().unwrap().unwrap().seq;
    store(&env).tamper().remove_audit(last).unwrap();
    let out = verify_offline(&env);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("removed from the end"),
        "{}",
        out.stderr
    );
}
