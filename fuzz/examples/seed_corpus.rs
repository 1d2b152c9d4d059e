//! Writes the seed corpus (`fuzz/corpus/<target>/seed-*`): real records encoded with the
//! product's own encoders and signed with the fuzz key, the example configurations, and
//! command lines from the documentation. Run from `fuzz/`:
//!
//! ```text
//! cargo run --example seed_corpus
//! ```
//!
//! Re-running it rewrites the same files byte for byte (fixed keys, fixed times).

use std::path::Path;
use std::time::Duration;

use portcullis_audit::{AuditRecord, Chain};
use portcullis_core::audit_event::{AuditEvent, EventKind};
use portcullis_core::codec::{encode, frame};
use portcullis_core::model::{
    Approval, Grant, GrantRecord, Request, RequestState, Revocation, SessionEnd, SessionRecord,
    SessionReport,
};
use portcullis_core::stream::{Change, ChangeBody, Frame, SignedChange};
use portcullis_core::{Catalog, Timestamp};
use portcullis_fuzz::signing_key;
use sha2::{Digest, Sha256};

const T0: u64 = 1_780_000_000_000;

fn put(target: &str, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let dir = Path::new("corpus").join(target);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(format!("seed-{name}")), bytes)
}

fn request(id: u64, state: RequestState) -> Request {
    Request {
        id,
        user: "alice".into(),
        target: "pg-prod".into(),
        policy: "prod-db".into(),
        duration: Duration::from_secs(3600),
        reason: Some("INC-42".into()),
        created_at: Timestamp(T0),
        expires_at: Timestamp(T0 + 3_600_000),
        approvals: vec![Approval {
            by: "bob".into(),
            at: Timestamp(T0 + 60_000),
            note: Some("checked with on-call".into()),
        }],
        needed: 1,
        state,
        decided_at: Some(Timestamp(T0 + 60_000)),
    }
}

fn grant(id: u64, revoked: bool) -> Grant {
    Grant {
        id,
        request: id,
        user: "alice".into(),
        target: "pg-prod".into(),
        policy: "prod-db".into(),
        issued_at: Timestamp(T0 + 60_000),
        expires_at: Timestamp(T0 + 3_660_000),
        approvers: vec!["bob".into()],
        revoked: revoked.then(|| Revocation {
            at: Timestamp(T0 + 120_000),
            by: "admin".into(),
            reason: Some("incident closed".into()),
        }),
    }
}

fn session_ended(sha: Option<String>) -> SessionReport {
    SessionReport::Ended {
        session: "gw-1-3fa2-17".into(),
        bytes_in: 4096,
        bytes_out: 65536,
        duration: Duration::from_millis(61_500),
        reason: "expired".into(),
        exit_status: Some(0),
        at: Timestamp(T0 + 3_660_000),
        recording: sha.map(|s| (s, 1234)),
    }
}

fn reports(cast: &[u8]) -> Vec<(&'static str, SessionReport)> {
    vec![
        (
            "started",
            SessionReport::Started {
                session: "gw-1-3fa2-17".into(),
                user: "alice".into(),
                target: "pg-prod".into(),
                grant: 17,
                client: "10.0.0.7:51234".into(),
                fingerprint: "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU".into(),
                channel: "direct-tcpip".into(),
                at: Timestamp(T0 + 61_000),
            },
        ),
        ("ended", session_ended(None)),
        ("ended-recorded", session_ended(Some(hex::encode(Sha256::digest(cast))))),
        (
            "recorded",
            SessionReport::Recorded {
                session: "gw-1-3fa2-18".into(),
                sha256: hex::encode(Sha256::digest(cast)),
                size: cast.len() as u64,
                format: "cast".into(),
            },
        ),
        (
            "host-key-mismatch",
            SessionReport::HostKeyMismatch {
                session: "gw-1-3fa2-19".into(),
                user: "alice".into(),
                target: "web-1".into(),
                presented: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGoHkF4rbbzfHvvGr0tPbMM1bFsHr3OxCzNd0R3dTNNb".into(),
                at: Timestamp(T0 + 62_000),
            },
        ),
    ]
}

fn audit_log(cast: &[u8]) -> Vec<AuditRecord> {
    let key = signing_key();
    let mut chain = Chain::after(None);
    let events = vec![
        AuditEvent::new(
            "approver",
            EventKind::ApproverStarted {
                version: "0.1.0".into(),
            },
        ),
        AuditEvent::new(
            "alice",
            EventKind::RequestCreated {
                policy: "prod-db".into(),
                duration: Duration::from_secs(3600),
            },
        )
        .user("alice")
        .target("pg-prod")
        .request(17)
        .reason(Some("INC-42".into())),
        AuditEvent::new(
            "bob",
            EventKind::GrantIssued {
                expires_at: Timestamp(T0 + 3_660_000),
                approvers: vec!["bob".into()],
                automatic: false,
            },
        )
        .user("alice")
        .grant(17)
        .note(Some("checked with on-call".into())),
        AuditEvent::new(
            "gw-1",
            EventKind::SessionEnded {
                session: "gw-1-3fa2-17".into(),
                gateway: "gw-1".into(),
                bytes_in: 4096,
                bytes_out: 65536,
                duration: Duration::from_secs(61),
                reason: "expired".into(),
                exit_status: Some(0),
                recording_sha256: Some(hex::encode(Sha256::digest(cast))),
                recording_size: Some(cast.len() as u64),
            },
        ),
        AuditEvent::new(
            "carol",
            EventKind::Refused {
                command: "revoke".into(),
                error: "forbidden".into(),
            },
        ),
    ];
    events
        .into_iter()
        .enumerate()
        .map(|(i, e)| chain.seal(&key, Timestamp(T0 + i as u64 * 1000), e))
        .collect()
}

/// A pty session's recording as the gateway's recorder writes it.
fn cast() -> Vec<u8> {
    let mut c = String::new();
    c.push_str("{\"env\":{\"SHELL\":\"/bin/sh\",\"TERM\":\"xterm-256color\"},\"height\":24,\"timestamp\":1780000061,\"title\":\"alice@web-1 (gw-1-3fa2-18)\",\"version\":2,\"width\":80}\n");
    c.push_str("[0.012417, \"o\", \"alice@web-1:~$ \"]\n");
    c.push_str("[1.204551, \"i\", \"ls\\r\"]\n");
    c.push_str("[1.205002, \"o\", \"ls\\r\\n\"]\n");
    c.push_str("[1.210113, \"o\", \"notes.txt  \\u001b[01;34mprojects\\u001b[0m\\r\\n\"]\n");
    c.push_str("[2.500000, \"r\", \"120x40\"]\n");
    c.push_str("[3.017734, \"i\", \"\\u0004\"]\n");
    c.into_bytes()
}

/// A channel without a pty, `record_data = true`: the raw stream.
fn raw(records: &[(u8, u32, &[u8])]) -> Vec<u8> {
    let mut out = b"portcullis-data v1\n".to_vec();
    for (stream, ms, bytes) in records {
        out.push(*stream);
        out.extend_from_slice(&ms.to_be_bytes());
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let key = signing_key();
    let cast = cast();

    // The real catalog of the deployment example, as the approver streams it.
    let deploy = std::fs::read_to_string("../deploy/portcullis.toml")?;
    let cookbook = std::fs::read_to_string("../docs/policy-cookbook.toml")?;
    let catalog = match portcullis_core::config::parse(&deploy) {
        Ok(c) => c.catalog,
        Err(e) => {
            eprintln!("deploy/portcullis.toml does not validate ({e}); using an empty catalog");
            Catalog::default()
        }
    };

    // store_records
    let store = "store_records";
    put(
        store,
        "request-pending",
        &encode(&request(16, RequestState::Pending)),
    )?;
    put(
        store,
        "request-approved",
        &encode(&request(17, RequestState::Approved { grant: 17 })),
    )?;
    put(
        store,
        "request-denied",
        &encode(&request(
            18,
            RequestState::Denied {
                by: "bob".into(),
                note: Some("use staging".into()),
            },
        )),
    )?;
    put(
        store,
        "grant-record",
        &encode(&GrantRecord {
            signed: grant(17, false).sign(&key),
            end_recorded: false,
        }),
    )?;
    put(
        store,
        "signed-grant-revoked",
        &encode(&grant(17, true).sign(&key)),
    )?;
    let changes = [
        ChangeBody::Catalog(catalog.clone()),
        ChangeBody::Grant(grant(17, false).sign(&key)),
        ChangeBody::KillSession {
            session: "gw-1-3fa2-42".into(),
        },
    ];
    let signed: Vec<SignedChange> = changes
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            SignedChange::seal(
                &key,
                &Change {
                    rev: i as u64 + 1,
                    at: Timestamp(T0 + i as u64),
                    body,
                },
            )
        })
        .collect();
    for (name, c) in ["change-catalog", "change-grant", "change-kill"]
        .iter()
        .zip(&signed)
    {
        put(store, name, &encode(c))?;
    }
    let log = audit_log(&cast);
    put(store, "audit-request-created", &encode(&log[1]))?;
    put(store, "audit-session-ended", &encode(&log[3]))?;
    put(
        store,
        "session-record",
        &encode(&SessionRecord {
            id: "gw-1-3fa2-17".into(),
            gateway: "gw-1".into(),
            user: "alice".into(),
            target: "pg-prod".into(),
            grant: 17,
            client: "10.0.0.7:51234".into(),
            fingerprint: "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU".into(),
            channel: "shell".into(),
            started_at: Timestamp(T0 + 61_000),
            end: Some(SessionEnd {
                at: Timestamp(T0 + 3_660_000),
                bytes_in: 4096,
                bytes_out: 65536,
                duration: Duration::from_secs(3599),
                reason: "expired".into(),
                exit_status: None,
                recording: Some((hex::encode(Sha256::digest(&cast)), cast.len() as u64)),
            }),
        }),
    )?;
    for (name, r) in reports(&cast) {
        put(store, &format!("report-{name}"), &encode(&r))?;
    }
    put(store, "catalog-deploy", &encode(&catalog))?;

    // audit_log: head byte, then the framed records
    let mut chain = vec![log.len() as u8];
    for r in &log {
        chain.extend(frame(&encode(r)));
    }
    put("audit_log", "chain-5", &chain)?;
    put("audit_log", "chain-5-no-head", &{
        let mut c = chain.clone();
        c[0] = 0xff;
        c
    })?;

    // stream_frames: since (8 bytes), chunk size, then the wire
    let mut wire = 0u64.to_be_bytes().to_vec();
    wire.push(7);
    for (i, c) in signed.iter().enumerate() {
        wire.extend(Frame::Change(c.clone()).to_wire());
        if i == 0 {
            wire.extend(
                Frame::Heartbeat {
                    rev: 1,
                    at: Timestamp(T0 + 5000),
                }
                .to_wire(),
            );
        }
    }
    put("stream_frames", "three-changes-and-a-heartbeat", &wire)?;
    let mut resume = 2u64.to_be_bytes().to_vec();
    resume.push(63);
    resume.extend(Frame::Change(signed[2].clone()).to_wire());
    put("stream_frames", "resume-after-2", &resume)?;

    // session_report: the framed report, then the recording it announces
    for (name, r) in reports(&cast) {
        let mut input = frame(&encode(&r));
        if matches!(r, SessionReport::Recorded { .. }) {
            input.extend_from_slice(&cast);
        }
        put("session_report", name, &input)?;
    }

    // config
    put("config", "deploy-portcullis.toml", deploy.as_bytes())?;
    put("config", "policy-cookbook.toml", cookbook.as_bytes())?;

    // recording: flag byte 0 = prepend `portcullis-data v1\n`, 1 = bytes as they are
    let exec = raw(&[
        (0, 0, b"SELECT 1;\n".as_slice()),
        (1, 12, b" ?column? \n----------\n        1\n".as_slice()),
        (2, 13, b"\xff\xfe not utf-8\n".as_slice()),
    ]);
    let mut seed = vec![1u8];
    seed.extend_from_slice(&exec);
    put("recording", "raw-exec", &seed)?;
    let mut seed = vec![0u8];
    seed.extend_from_slice(&exec["portcullis-data v1\n".len()..]);
    put("recording", "raw-exec-body", &seed)?;
    let mut seed = vec![1u8];
    seed.extend_from_slice(&cast);
    put("recording", "asciicast-v2", &seed)?;

    // control_line: the exec lines of the docs and the grammar's own examples
    let lines = [
        "request pg-prod --for 1h --reason \"INC-42\"",
        "request pg-prod --for 1h --reason INC 42",
        "wait 17",
        "approve 17 --note \"checked with on-call\"",
        "deny 17 --note \"use staging\"",
        "requests --pending",
        "grants --active --target pg-prod --json",
        "revoke 17 --reason \"incident closed\"",
        "sessions --live",
        "kill gw-1-3fa2-42",
        "status --json",
        "whoami",
        "targets",
        "reload",
        "audit log --since 24h --json",
        "audit verify",
        "audit sessions --since 24h --user alice --live",
        "audit replay gw-1-3fa2-17 --speed 2 --idle-limit 2s",
        "audit export gw-1-3fa2-17",
        "as --user alice --key SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU -- request web-1 --reason 'deploy 12'",
        "report --seq 3 --instance 3fa2b1c0",
        "watch --since 12",
    ];
    for (i, line) in lines.iter().enumerate() {
        let name = line
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join("-");
        put("control_line", &format!("{i:02}-{name}"), line.as_bytes())?;
    }

    // login
    for (name, login) in [
        ("plain", "alice"),
        ("recorded", "alice:web-1"),
        ("empty-target", "alice:"),
        ("two-colons", "alice:web-1:22"),
    ] {
        put("login", name, login.as_bytes())?;
    }
    Ok(())
}
