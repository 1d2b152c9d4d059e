//! The audit events' names, JSON and encoding, old records included.

use super::*;

#[test]
fn json_is_flat_and_named() {
    let e = AuditEvent::new("alice", EventKind::RequestDenied)
        .user("alice")
        .request(3)
        .note(Some("no".into()));
    let j = e.to_json();
    assert_eq!(j["event"], "request.denied");
    assert_eq!(j["request"], 3);
    assert!(!j.contains_key("grant"));
    assert!(e.summary().contains("note=\"no\""));
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Records written before the variants of refusals, starts and stops, and file operations
/// were appended still decode to what they were: `audit verify` re-hashes the decoded
/// event, so a shifted variant index would fail every old record.
#[test]
fn records_encoded_before_new_kinds_still_decode() {
    let golden = [
        (
            "010800000000000000617070726f766572000000000500000000000000302e312e30000000000000",
            AuditEvent::new(
                "approver",
                EventKind::ApproverStarted {
                    version: "0.1.0".into(),
                },
            ),
        ),
        (
            "010500000000000000616c69636514000000010500000000000000616c6963650001070000000000000000010400000000000000646f6e6500",
            AuditEvent::new("alice", EventKind::RequestCancelled)
                .user("alice")
                .request(7)
                .reason(Some("done".into())),
        ),
        (
            "01040000000000000067772d310c000000090000000000000067772d312d61622d31040000000000000067772d310100000000000000020000000000000001000000000000000065cd1d0600000000000000636c6f73656401000000000000010500000000000000616c6963650105000000000000007765622d31000103000000000000000000",
            AuditEvent::new(
                "gw-1",
                EventKind::SessionEnded {
                    session: "gw-1-ab-1".into(),
                    gateway: "gw-1".into(),
                    bytes_in: 1,
                    bytes_out: 2,
                    duration: Duration::from_millis(1500),
                    reason: "closed".into(),
                    exit_status: Some(0),
                    recording_sha256: None,
                    recording_size: None,
                },
            )
            .user("alice")
            .target("web-1")
            .grant(3),
        ),
    ];
    for (bytes, event) in golden {
        let decoded: AuditEvent = crate::codec::decode(&hex(bytes)).unwrap();
        assert_eq!(decoded, event);
        assert_eq!(crate::codec::encode(&event), hex(bytes));
    }
}

/// One of every file operation.
fn file_ops() -> Vec<FileOp> {
    let s = || String::from("x");
    vec![
        FileOp::Open {
            path: s(),
            flags: s(),
        },
        FileOp::Close {
            path: s(),
            bytes_read: 0,
            bytes_written: 0,
        },
        FileOp::Rename { from: s(), to: s() },
        FileOp::Remove { path: s() },
        FileOp::Mkdir { path: s() },
        FileOp::Rmdir { path: s() },
        FileOp::Setstat { path: s() },
        FileOp::Symlink {
            link: s(),
            points_to: s(),
        },
        FileOp::Hardlink {
            link: s(),
            points_to: s(),
        },
        FileOp::SftpAbandoned { why: s() },
        FileOp::Counted { counts: vec![] },
        FileOp::ScpFile {
            direction: s(),
            path: s(),
            size: 0,
            mode: s(),
        },
        FileOp::ScpDir {
            direction: s(),
            path: s(),
            mode: s(),
        },
        FileOp::ScpAbandoned { why: s() },
    ]
}

/// One event of each kind of `attempts` but file operations.
fn attempt_kinds() -> Vec<EventKind> {
    let s = || String::from("x");
    let t = Timestamp(0);
    vec![
        EventKind::SessionRefused {
            gateway: s(),
            client: s(),
            fingerprint: s(),
            channel: s(),
            destination: s(),
            message: s(),
        },
        EventKind::SessionRefusedRepeatedly {
            gateway: s(),
            client: None,
            count: 0,
            first: t,
            last: t,
            reasons: vec![],
        },
        EventKind::ApproverStartedOn {
            version: s(),
            listen: s(),
            pid: 0,
        },
        EventKind::ApproverStopped { pid: 0 },
        EventKind::GatewayStarted {
            gateway: s(),
            instance: s(),
            version: s(),
            listen: s(),
            pid: 0,
            started_at: t,
        },
        EventKind::GatewayStopped {
            gateway: s(),
            instance: s(),
            stopped_at: t,
        },
    ]
}

/// One event of every kind (and every file operation).
fn every_kind() -> Vec<EventKind> {
    let s = || String::from("x");
    let t = Timestamp(0);
    let ops = file_ops();
    let mut kinds = vec![
        EventKind::ApproverStarted { version: s() },
        EventKind::ConfigLoaded {
            path: s(),
            sha256: s(),
        },
        EventKind::ConfigRefused {
            path: s(),
            error: s(),
        },
        EventKind::RequestCreated {
            policy: s(),
            duration: Duration::ZERO,
        },
        EventKind::RequestApproved {
            approvals: 0,
            needed: 0,
        },
        EventKind::RequestDenied,
        EventKind::RequestExpired,
        EventKind::GrantIssued {
            expires_at: t,
            approvers: vec![],
            automatic: false,
        },
        EventKind::GrantExpired,
        EventKind::GrantRevoked,
        EventKind::Refused {
            command: s(),
            error: s(),
        },
        EventKind::SessionStarted {
            session: s(),
            gateway: s(),
            client: s(),
            fingerprint: s(),
            channel: s(),
        },
        EventKind::SessionEnded {
            session: s(),
            gateway: s(),
            bytes_in: 0,
            bytes_out: 0,
            duration: Duration::ZERO,
            reason: s(),
            exit_status: None,
            recording_sha256: None,
            recording_size: None,
        },
        EventKind::SessionKilled { session: s() },
        EventKind::TargetHostKeyMismatch {
            session: s(),
            presented: s(),
        },
        EventKind::RefusedRepeatedly {
            count: 0,
            first: t,
            last: t,
        },
        EventKind::StoreHistoryDiverged {
            gateway: s(),
            gateway_rev: 0,
            store_rev: 0,
            old_epoch: 0,
            new_epoch: 0,
            ids_from: 0,
        },
        EventKind::SigningKeyRotated { old: s(), new: s() },
        EventKind::SessionRegranted {
            session: s(),
            from: 0,
        },
        EventKind::RecordingRemoved {
            session: s(),
            sha256: s(),
            why: s(),
        },
        EventKind::RequestCancelled,
    ];
    kinds.extend(attempt_kinds());
    kinds.extend(ops.into_iter().map(|op| EventKind::FileOperation {
        session: s(),
        gateway: s(),
        seen_at: t,
        op,
        outcome: None,
    }));
    kinds
}

#[test]
fn every_kind_is_listed_for_the_filter_and_every_listed_kind_exists() {
    let names: std::collections::BTreeSet<&str> =
        every_kind().iter().map(EventKind::name).collect();
    let listed: std::collections::BTreeSet<&str> = KIND_NAMES.iter().copied().collect();
    assert_eq!(names, listed);
    assert_eq!(listed.len(), KIND_NAMES.len(), "a name listed twice");
}

#[test]
fn kinds_filter_by_name_or_dotted_prefix() {
    let open = EventKind::FileOperation {
        session: "gw-1-ab-1".into(),
        gateway: "gw-1".into(),
        seen_at: Timestamp(1_000),
        op: FileOp::Open {
            path: "/tmp/x".into(),
            flags: "write,create,truncate".into(),
        },
        outcome: Some("ok".into()),
    };
    assert_eq!(open.name(), "sftp.open");
    for yes in ["sftp", "sftp.open"] {
        assert!(open.matches(yes), "{yes}");
    }
    for no in ["sft", "sftp.op", "sftp.open.x", "", "session"] {
        assert!(!open.matches(no), "{no}");
    }
    let counted = EventKind::SessionRefusedRepeatedly {
        gateway: "gw-1".into(),
        client: None,
        count: 3,
        first: Timestamp(0),
        last: Timestamp(1),
        reasons: vec![("no_grant".into(), 3)],
    };
    assert!(counted.matches("session.refused") && counted.matches("session"));
    assert!(!counted.matches("command.refused"));
}

#[test]
fn a_file_operation_reads_flat() {
    let e = AuditEvent::new(
        "gw-1",
        EventKind::FileOperation {
            session: "gw-1-ab-1".into(),
            gateway: "gw-1".into(),
            seen_at: Timestamp(1_000),
            op: FileOp::Close {
                path: "/tmp/x".into(),
                bytes_read: 0,
                bytes_written: 5,
            },
            outcome: Some("ok".into()),
        },
    )
    .user("alice")
    .target("web-1");
    let j = e.to_json();
    assert_eq!(j["event"], "sftp.close");
    assert_eq!(j["path"], "/tmp/x");
    assert_eq!(j["bytes_written"], 5);
    assert_eq!(j["outcome"], "ok");
    assert_eq!(j["target"], "web-1");
    let back: AuditEvent = crate::codec::decode(&crate::codec::encode(&e)).unwrap();
    assert_eq!(back, e);
}

/// A certificate login's start is `session.started` with the certificate's fields, and the
/// variants before it keep their place (bincode stores the variant's index), so older records
/// decode as they were written.
#[test]
fn a_certified_start_reads_as_session_started() {
    let e = AuditEvent::new(
        "gw-1",
        EventKind::SessionStartedCertified {
            session: "gw-1-1".into(),
            gateway: "gw-1".into(),
            client: "127.0.0.1:5".into(),
            fingerprint: "SHA256:x".into(),
            channel: "shell".into(),
            ca: "corp".into(),
            key_id: "alice@laptop".into(),
            serial: 42,
        },
    );
    let j = e.to_json();
    assert_eq!(j["event"], "session.started");
    assert_eq!(j["key_id"], "alice@laptop");
    assert_eq!(j["serial"], 42);
    assert_eq!(j["ca"], "corp");
    let plain = EventKind::SessionStarted {
        session: "s".into(),
        gateway: "g".into(),
        client: "c".into(),
        fingerprint: "f".into(),
        channel: "x".into(),
    };
    let bytes = crate::codec::encode(&plain);
    assert_eq!(
        bytes[1..5],
        11u32.to_le_bytes(),
        "SessionStarted is still variant 11"
    );
    assert_eq!(crate::codec::decode::<EventKind>(&bytes).unwrap(), plain);
}
