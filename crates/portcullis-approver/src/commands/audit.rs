//! The compliance side: `sessions`, `kill`, and `audit log|sessions|replay|export|verify`.
//!
//! Sessions are put on the books by [`crate::sessions`] from the gateways' reports; this
//! module lists, cuts and checks them and reads the audit trail. The one write here is a kill,
//! which [`crate::sessions::kill`] makes under the writer.

use std::sync::Arc;

use portcullis_core::command::{AuditCommand, LogFilter};
use portcullis_core::model::SessionRecord;
use portcullis_core::time::parse_duration;
use portcullis_core::Timestamp;

use super::{Outcome, Reply};
use crate::app::Approver;
use crate::errors::ApproverError;
use crate::render::{self, sessions::Listed};

/// `sessions [--live]`: every session the gateways reported, or only the open ones.
pub(super) async fn sessions(
    app: &Arc<Approver>,
    live: bool,
    limit: u64,
    json: bool,
) -> Result<Outcome, ApproverError> {
    let empty = if live {
        "no live sessions"
    } else {
        "no sessions"
    };
    let wanted = move |s: &SessionRecord| !live || s.end.is_none();
    blocking(app, move |app| listing(app, wanted, limit, empty, json)).await
}

/// The sessions `wanted` keeps, oldest first by start, the newest `limit` of them, each with
/// whether its recording is here. It reads the whole tree and looks for each listed
/// recording, so it runs on the blocking pool.
fn listing(
    app: &Approver,
    wanted: impl Fn(&SessionRecord) -> bool,
    limit: u64,
    empty: &str,
    json: bool,
) -> Result<Reply, ApproverError> {
    let mut list: Vec<SessionRecord> = app
        .store
        .sessions()?
        .into_iter()
        .filter(|s| wanted(s))
        .collect();
    list.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
    let (list, more) = render::newest(list, limit);
    let listed: Vec<Listed> = list
        .into_iter()
        .map(|session| {
            // A live session's recording arrives when it ends; one retention removed is gone.
            let recorded =
                session.end.is_some() && matches!(app.recordings.locate(&session.id), Ok(Some(_)));
            Listed { session, recorded }
        })
        .collect();
    Ok(render::sessions::list(
        &listed,
        more,
        limit,
        empty,
        app.now(),
        json,
    ))
}

/// `kill SESSION_ID`: a signed kill on the stream for the gateway holding it.
pub(super) async fn kill(
    app: &Approver,
    actor: &str,
    session: &str,
    json: bool,
) -> Result<Reply, ApproverError> {
    let rec = crate::sessions::kill(app, actor, session).await?;
    Ok(render::sessions::killed(&rec, json))
}

/// `audit …`, once the caller may: recordings are streamed by the server; the rest reads the
/// whole trail (and `verify` every recording), so it runs on the blocking pool, off the async
/// workers.
pub(super) async fn run(
    app: &Arc<Approver>,
    cmd: AuditCommand,
    json: bool,
) -> Result<Outcome, ApproverError> {
    match cmd {
        AuditCommand::Replay {
            session,
            speed,
            idle_limit,
        } => replay(app, session, speed, idle_limit),
        AuditCommand::Export { session } => {
            let (path, raw) = recording_file(app, &session)?;
            Ok(Outcome::Export { path, raw, session })
        }
        AuditCommand::Log {
            since,
            limit,
            filter,
        } => {
            let cutoff = cutoff(app, since)?;
            blocking(app, move |app| {
                Ok(audit_log(app, cutoff, &filter, limit, json))
            })
            .await
        }
        AuditCommand::Sessions {
            user,
            target,
            since,
            live,
            limit,
        } => {
            let cutoff = cutoff(app, since)?;
            let wanted = move |s: &SessionRecord| {
                (!live || s.end.is_none())
                    && user.as_ref().is_none_or(|u| &s.user == u)
                    && target.as_ref().is_none_or(|t| &s.target == t)
                    && cutoff.is_none_or(|c| s.started_at >= c)
            };
            blocking(app, move |app| {
                listing(app, wanted, limit, "no sessions", json)
            })
            .await
        }
        AuditCommand::Verify => blocking(app, move |app| Ok(verify_reply(app, json))).await,
    }
}

/// Run `f` on the blocking pool.
async fn blocking(
    app: &Arc<Approver>,
    f: impl FnOnce(&Approver) -> Result<Reply, ApproverError> + Send + 'static,
) -> Result<Outcome, ApproverError> {
    let app = Arc::clone(app);
    tokio::task::spawn_blocking(move || f(&app))
        .await
        .map_err(|e| ApproverError::Config(format!("the audit command failed: {e}")))?
        .map(Outcome::Done)
}

/// `--since DURATION` as the instant it reaches back to.
fn cutoff(app: &Approver, since: Option<String>) -> Result<Option<Timestamp>, ApproverError> {
    Ok(since
        .as_deref()
        .map(parse_duration)
        .transpose()
        .map_err(ApproverError::BadInput)?
        .map(|d| app.now().minus(d)))
}

/// `audit replay SESSION`: checked here, played by the server.
fn replay(
    app: &Approver,
    session: String,
    speed: f64,
    idle_limit: Option<String>,
) -> Result<Outcome, ApproverError> {
    let idle = idle_limit
        .as_deref()
        .map(parse_duration)
        .transpose()
        .map_err(ApproverError::BadInput)?;
    if !(speed > 0.0 && speed.is_finite()) {
        return Err(ApproverError::BadInput("--speed must be above zero".into()));
    }
    let (path, raw) = recording_file(app, &session)?;
    Ok(Outcome::Replay {
        path,
        raw,
        session,
        speed,
        idle,
    })
}

/// `audit verify` as a reply: exit 0 intact, 1 tampered, 2 when the check could not be made
/// (nothing was found wrong, so not 1).
fn verify_reply(app: &Approver, json: bool) -> Reply {
    verify(app, json).unwrap_or_else(|e| render::audit::could_not_verify(&e, json))
}

/// Where a session's recording is, and whether it is a raw data stream: for `audit export`
/// and `audit replay`, which read it in pieces.
fn recording_file(
    app: &Approver,
    session: &str,
) -> Result<(std::path::PathBuf, bool), ApproverError> {
    app.recordings
        .locate(session)
        .map_err(|e| ApproverError::Config(e.to_string()))?
        .ok_or_else(|| no_recording(app, session))
}

/// Why a session has no recording here.
fn no_recording(app: &Approver, session: &str) -> ApproverError {
    let why = match app.store.session(session) {
        Err(e) => return e.into(),
        Ok(None) => format!("no session {session:?} — `audit sessions` lists them"),
        Ok(Some(s)) if s.end.is_none() => {
            format!("session {session} is still live; its recording arrives when it ends")
        }
        Ok(Some(_)) => format!(
            "session {session} has no recording (pty sessions are recorded; others only where record_data = true)"
        ),
    };
    ApproverError::NotFound(why)
}

/// `audit verify`: the chain up to the signed head read under the writer (records committed
/// while it runs come after it), every signature, and every finished recording.
fn verify(app: &Approver, json: bool) -> Result<Reply, ApproverError> {
    let end = app.audit_end()?;
    let upto = match &end.signed {
        Some(Ok(h)) => h.peek().map(|h| h.seq).unwrap_or(u64::MAX),
        _ => u64::MAX,
    };
    let key = app.keys.signing().verifying_key();
    let records = || {
        app.store
            .audit_records()
            .take_while(move |(position, _)| *position <= upto)
    };
    // The key in force now signed the newest records; a rotation in the log hands back to
    // the key before it.
    let chain = portcullis_audit::KeySchedule::from_log(&key, records())
        .and_then(|schedule| portcullis_audit::verify_scheduled(&schedule, records(), &end))
        .map_err(|b| (b.first_bad(), b.to_string()));
    // Recordings are checked against the hashes in the signed end events.
    let expected = portcullis_audit::expected_recordings(app.store.audit_records());
    let (hashes, removed) = (expected.present, expected.removed.len());
    let result = chain.and_then(|v| {
        for (session, sha) in &hashes {
            let found = app
                .recordings
                .sha256(session)
                .map_err(|e| (0, e.to_string()))?;
            portcullis_audit::verify_recording_hash(session, sha, found)
                .map_err(|b| (0, b.to_string()))?;
        }
        Ok((v, hashes.len()))
    });
    Ok(match result {
        Ok((v, recordings)) => render::audit::verified(
            &render::audit::Verified {
                records: v.records,
                head: v.head,
                signed_at: v.signed_head.map(|h| h.at),
                recordings,
                removed,
            },
            json,
        ),
        Err((first_bad, broken)) => render::audit::verify_failed(first_bad, &broken, json),
    })
}

/// `audit log`: the newest `limit` events since `cutoff` that `filter` keeps, oldest first,
/// one a line (JSON Lines with `--json`, where the note that more exist goes to stderr so the
/// lines stay events). Only `limit` records are held at a time, however long the log. A
/// record that does not decode is listed whatever the filter: it could be anything.
fn audit_log(
    app: &Approver,
    cutoff: Option<Timestamp>,
    filter: &LogFilter,
    limit: u64,
    json: bool,
) -> Reply {
    let keep = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut newest = std::collections::VecDeque::new();
    let mut more = 0usize;
    for (seq, rec) in app.store.audit_records() {
        let line = match &rec {
            Ok(r) if cutoff.is_some_and(|c| r.at < c) || !filter.keeps(&r.event) => continue,
            Ok(r) => render::audit::log_line(seq, Ok(r), json),
            Err(e) => render::audit::log_line(seq, Err(e), json),
        };
        newest.push_back(line);
        if newest.len() > keep {
            newest.pop_front();
            more += 1;
        }
    }
    render::audit::log(newest, more, limit, json)
}
