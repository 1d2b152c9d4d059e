//! `[approver] retention`: a recording of a session that ended longer ago is removed, the
//! removal is an audit event, and `audit verify` passes over the pruned store, saying which
//! recordings retention removed.

use std::time::Duration;

use crate::support::Env;
use portcullis_core::codec;
use portcullis_core::model::SessionReport;
use portcullis_core::Timestamp;

/// SHA-256 of `abc`.
const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

fn framed(r: &SessionReport) -> Vec<u8> {
    codec::frame(&codec::encode(r))
}

/// `report --seq SEQ` as gw-1 with `input`.
fn report(env: &Env, seq: u64, input: Vec<u8>) {
    let r = env.as_gw1(&format!("report --seq {seq} --instance t"), &input);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
}

fn now() -> Timestamp {
    Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64,
    )
}

#[test]
fn old_recordings_are_removed_with_an_event_and_the_log_still_verifies() {
    let mut env = Env::prepare("24h", "");
    let cfg = std::fs::read_to_string(&env.config).unwrap().replacen(
        "request_ttl = \"24h\"",
        "request_ttl = \"24h\"\nretention = \"2s\"",
        1,
    );
    std::fs::write(&env.config, cfg).unwrap();
    env.start_approver();
    let session = "gw-1-t-1";
    let started = SessionReport::Started {
        session: session.into(),
        user: "alice".into(),
        target: "pg-prod".into(),
        grant: 1,
        client: "127.0.0.1:1".into(),
        fingerprint: "SHA256:x".into(),
        channel: "exec: true".into(),
        at: now(),
    };
    let recorded = SessionReport::Recorded {
        session: session.into(),
        sha256: ABC.into(),
        size: 3,
        format: "data".into(),
    };
    let ended = SessionReport::Ended {
        session: session.into(),
        bytes_in: 3,
        bytes_out: 0,
        duration: Duration::from_secs(1),
        reason: "closed".into(),
        exit_status: Some(0),
        at: now(),
        recording: Some((ABC.into(), 3)),
    };
    report(&env, 1, framed(&started));
    report(&env, 2, [framed(&recorded), b"abc".to_vec()].concat());
    report(&env, 3, framed(&ended));
    let file = env.path().join("approver/recordings/gw-1-t-1.data");
    assert!(file.exists());
    env.eventually("the recording removed by retention", || !file.exists());
    assert!(env.has_event("recording.removed", "session", serde_json::json!(session)));
    let verified = env.admin("audrey", &["audit", "verify"]);
    verified.ok();
    assert!(
        verified.stdout.contains("1 removed by retention"),
        "{}",
        verified.stdout
    );
    // Offline too, with the pinned key.
    env.kill9();
    let key = env.signing_key.clone();
    let offline = crate::support::run(
        std::process::Command::new(crate::support::BIN)
            .args(["audit", "verify", "--data-dir"])
            .arg(env.path().join("approver"))
            .args(["--signing-key", &key]),
    );
    offline.ok();
    assert!(
        offline.stdout.contains("removed by retention"),
        "{}",
        offline.stdout
    );
}
