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
    released(env);
    verify_offline_now(env)
}

fn verify_offline_now(env: &Env) -> crate::support::Out {
    run(std::process::Command::new(BIN)
        .args(["audit", "verify", "--data-dir"])
        .arg(env.path().join("approver")))
}

/// The store, once a `Store` this test dropped has let go of it: sled's background threads
/// release the lock a moment after the drop.
fn store(env: &Env) -> Store {
    released(env);
    Store::open(&env.path().join("approver/store")).unwrap()
}

/// Wait until nobody holds the store's lock (sled's is a `flock` on `db`).
fn released(env: &Env) {
    let db = std::fs::File::open(env.path().join("approver/store/db")).unwrap();
    let deadline = std::time::Instant::now() + crate::support::SOON;
    while rustix::fs::flock(&db, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the store stays locked"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
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
    released(&env);
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
    assert_eq!(out.code, 1, "{}", out.stderr);
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

/// `audit verify --data-dir D --signing-key K`, with the key pinned as `portcullis keys`
/// printed it.
fn verify_pinned(env: &Env, key: &str) -> crate::support::Out {
    released(env);
    verify_pinned_now(env, key)
}

fn verify_pinned_now(env: &Env, key: &str) -> crate::support::Out {
    run(std::process::Command::new(BIN)
        .args(["audit", "verify", "--data-dir"])
        .arg(env.path().join("approver"))
        .args(["--signing-key", key]))
}

/// Cut the last `n` records and set the unsigned head counter to match: what someone with
/// write access to the store but not the key would do to make history disappear.
fn cut_the_end(env: &Env, n: u64) -> u64 {
    let s = store(env);
    let last = s.last_audit().unwrap().unwrap().seq;
    for seq in last - n + 1..=last {
        s.tamper().remove_audit(seq).unwrap();
    }
    s.tamper().set_audit_head_counter(last - n).unwrap();
    last
}

#[test]
fn the_end_cut_with_its_counter_is_caught_from_the_signed_head() {
    let env = stopped_env();
    let last = cut_the_end(&env, 3);
    let expected = format!(
        "the log ends at record {} but the approver's signed head is record {last}",
        last - 3
    );
    // Without the pin too: the head is signed with the key in the directory.
    let out = verify_offline(&env);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stderr.contains(&expected), "{}", out.stderr);
    let out = verify_pinned(&env, &format!("grant-signing {}", env.signing_key));
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stderr.contains(&expected), "{}", out.stderr);
}

#[test]
fn verify_with_the_pinned_key_and_without_it() {
    let env = stopped_env();
    // Pinned, with or without the `grant-signing ` label: no warning.
    for key in [
        env.signing_key.clone(),
        format!("grant-signing {}", env.signing_key),
    ] {
        let out = verify_pinned(&env, &key);
        out.ok();
        assert!(out.stdout.contains("chain intact"), "{}", out.stdout);
        assert!(!out.stderr.contains("warning"), "{}", out.stderr);
    }
    // Not pinned: it works, from the key in the directory, and says what that cannot prove.
    let out = verify_offline(&env);
    out.ok();
    assert!(
        out.stderr.contains("anyone able to replace files in")
            && out.stderr.contains("--signing-key"),
        "{}",
        out.stderr
    );
    // A pin that is not a key is a usage error, not a verdict on the log.
    let out = verify_pinned(&env, "ed25519:AAAA");
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
}

/// Replace the signing key in the directory and re-sign every record with it: the whole log
/// then verifies against the directory's own key, and only a pinned key tells.
#[test]
fn a_log_re_signed_with_a_replaced_key_fails_only_against_the_pin() {
    let env = stopped_env();
    let dir = env.path().join("approver");
    std::fs::remove_file(dir.join("grant_signing_key")).unwrap();
    std::fs::remove_file(dir.join("grant_signing_key.pub")).ok();
    let (mallory, _) =
        portcullis_ssh::keyfile::load_or_create_signing(&dir.join("grant_signing_key")).unwrap();
    {
        let s = store(&env);
        let records: Vec<portcullis_audit::AuditRecord> =
            s.audit_records().map(|(_, r)| r.unwrap()).collect();
        let mut chain = portcullis_audit::Chain::after(None);
        for r in records {
            let forged = chain.seal(&mallory, r.at, r.event);
            s.tamper()
                .put_audit_raw(forged.seq, &portcullis_core::codec::encode(&forged))
                .unwrap();
        }
        re_sign_head(&s, &mallory);
    }
    let out = verify_offline(&env);
    out.ok();
    assert!(
        out.stderr.contains("anyone able to replace files in"),
        "{}",
        out.stderr
    );
    let out = verify_pinned(&env, &env.signing_key);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("is not the pinned key"),
        "{}",
        out.stderr
    );
}

/// Sign a head for the log as it stands with `key`, and store it.
fn re_sign_head(s: &Store, key: &ed25519_dalek::SigningKey) {
    let last = s.last_audit().unwrap();
    let head = portcullis_audit::Chain::after(last.as_ref())
        .head(portcullis_core::Timestamp(1))
        .unwrap();
    let signed = portcullis_audit::SignedHead::seal(key, &head);
    s.tamper()
        .put_signed_audit_head_raw(&portcullis_core::codec::encode(&signed))
        .unwrap();
}

/// A head signed by any other key, naming the cut end of the log: tampering, not a pass.
#[test]
fn a_forged_head_is_tampering() {
    let env = stopped_env();
    cut_the_end(&env, 2);
    re_sign_head(
        &store(&env),
        &ed25519_dalek::SigningKey::from_bytes(&[7; 32]),
    );
    let out = verify_pinned(&env, &env.signing_key);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("signed head is not signed by this approver's key"),
        "{}",
        out.stderr
    );
    // Bytes that do not decode are no better.
    store(&env)
        .tamper()
        .put_signed_audit_head_raw(b"\x01garbage")
        .unwrap();
    verify_pinned(&env, &env.signing_key).fails_with("signed head does not decode");
}

/// The approver does not write over a cut end: its next commit would sign a head for it.
#[test]
fn an_approver_does_not_start_on_a_log_cut_at_the_end() {
    let env = stopped_env();
    let last = cut_the_end(&env, 1);
    released(&env);
    let out = run(std::process::Command::new(BIN)
        .args(["approver", "--config"])
        .arg(&env.config));
    assert_ne!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "the audit log ends at record {} but its signed head is record {last}",
            last - 1
        )),
        "{}",
        out.stderr
    );
    // Nothing was written: the evidence is still there.
    verify_pinned(&env, &env.signing_key).fails_with("removed from the end");
}

/// A store written before heads were signed still verifies, saying what it cannot prove; the
/// approver's next start signs a head, and the warning goes.
#[test]
fn a_store_from_before_signed_heads_verifies_with_a_warning() {
    let mut env = stopped_env();
    store(&env).tamper().remove_signed_audit_head().unwrap();
    let out = verify_pinned(&env, &env.signing_key);
    out.ok();
    assert!(
        out.stderr.contains("no signed head") && out.stdout.contains("unsigned head"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    released(&env);
    env.start_approver();
    env.admin("audrey", &["audit", "verify"]).ok();
    env.kill9();
    let out = verify_pinned(&env, &env.signing_key);
    out.ok();
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);
    assert!(out.stdout.contains("signed head of"), "{}", out.stdout);
}

#[test]
fn a_running_approvers_directory_says_stop_or_verify_online() {
    let env = Env::start();
    let out = verify_pinned_now(&env, &env.signing_key);
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("stop the approver or verify online"),
        "{}",
        out.stderr
    );
    let out = verify_offline_now(&env);
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    // And a directory with no store is not "verified: 0 records".
    let out = run(std::process::Command::new(BIN)
        .args(["audit", "verify", "--data-dir"])
        .arg(env.path().join("nowhere")));
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
}
