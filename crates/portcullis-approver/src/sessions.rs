//! Sessions as gateways report them: recorded once each (by per-gateway sequence number), with
//! their audit events; cut by `kill` through the signed stream. `sessions` lists them through
//! `render::sessions`.

use portcullis_core::audit_event::{AuditEvent, EventKind};
use portcullis_core::model::{
    FileEvent, Refusal, RefusalCount, SessionEnd, SessionRecord, SessionReport,
};
use portcullis_core::user_ca;

use portcullis_store::Incoming;

use crate::app::{Approver, Tx};
use crate::errors::ApproverError;
use crate::intake::split_reports;

/// Reports are numbered per gateway *instance* (its replica), so a gateway whose replica was
/// made afresh starts its own sequence instead of having its reports taken for repeats.
fn counter(gateway: &str, instance: &str) -> String {
    format!("report/{gateway}/{instance}")
}

/// Record reports `first_seq`, `first_seq + 1`, … from `gateway`, as its `report` command
/// sends them on stdin: each framed, one after the other, except that a recording follows the
/// one report that announces it, which then comes alone. They are recorded in one commit, so a
/// burst of session ends (a grant with many sessions expiring) costs one flush, not one each.
/// A number at or below the last one recorded is acknowledged without recording it again: the
/// gateway retried after a lost acknowledgement.
///
/// `input` holds the framed reports; the recording, if one was announced, has been written as
/// it arrived into `recording` (see `crate::intake`), and is put in place here if it is whole
/// and matches its announced hash and size.
pub(crate) async fn report(
    app: &Approver,
    gateway: &str,
    instance: &str,
    first_seq: u64,
    input: &[u8],
    recording: Option<Incoming>,
) -> Result<String, ApproverError> {
    let (reports, attachment) = split_reports(input)?;
    if !attachment.is_empty() {
        // `intake` writes a recording to disk as it arrives: bytes left after the reports
        // here are not one.
        return Err(ApproverError::BadInput(format!(
            "{} stray bytes after the reports",
            attachment.len()
        )));
    }
    let refused_recording = keep_recording(app, gateway, &reports, recording).await?;
    // Never empty: `split_reports` refuses an input without a report.
    let last_seq = first_seq
        .checked_add(reports.len() as u64 - 1)
        .ok_or_else(|| ApproverError::BadInput(format!("report numbers past {}", u64::MAX)))?;
    app.write(|tx| {
        let last = app.store.counter(&counter(gateway, instance))?;
        let mut notes = Vec::with_capacity(reports.len());
        for (seq, report) in (first_seq..=last_seq).zip(reports) {
            if seq <= last {
                notes.push(format!("report {seq} already recorded"));
            } else if let Some(why) = &refused_recording {
                notes.push(refuse(tx, gateway, seq, why));
            } else {
                notes.push(record(tx, gateway, instance, seq, report)?);
            }
        }
        if last_seq > last {
            tx.set_counter(counter(gateway, instance), last_seq);
        }
        Ok(notes.join("\n"))
    })
    .await
}

/// Put the recording a report announces in place, if one came: `Some(why)` if this gateway may
/// not deliver it. Such a recording is acknowledged (so the gateway's spool moves on) and
/// audited, never kept: its temporary file goes with `incoming`.
async fn keep_recording(
    app: &Approver,
    gateway: &str,
    reports: &[SessionReport],
    recording: Option<Incoming>,
) -> Result<Option<String>, ApproverError> {
    match (reports, recording) {
        (
            [SessionReport::Recorded {
                session,
                sha256,
                size,
                ..
            }],
            Some(incoming),
        ) => {
            let existing = app.store.session(session)?;
            if let Some(why) = not_owner(existing.as_ref(), gateway, session) {
                return Ok(Some(why));
            }
            // The file first (idempotent if this report is a retry), then the books.
            let (sha256, size) = (sha256.clone(), *size);
            let kept = tokio::task::spawn_blocking(move || incoming.keep(&sha256, size))
                .await
                .map_err(|e| ApproverError::Config(format!("storing the recording: {e}")))?;
            match kept {
                Ok(()) => Ok(None),
                Err(e) if e.source.kind() == std::io::ErrorKind::AlreadyExists => {
                    Ok(Some(format!("recording {e}")))
                }
                Err(e) if e.source.kind() == std::io::ErrorKind::InvalidData => {
                    Err(ApproverError::BadInput(e.to_string()))
                }
                Err(e) => Err(ApproverError::Recording(e)),
            }
        }
        ([SessionReport::Recorded { .. }], None) => Err(ApproverError::BadInput(
            "a report announcing a recording came without the recording".into(),
        )),
        (_, Some(_)) => Err(ApproverError::BadInput(
            "a recording came without the report that announces it".into(),
        )),
        (_, None) => Ok(None),
    }
}

/// Why `gateway` may not report on `session`, if it may not. A session belongs to the
/// gateway that numbered it (`GATEWAY-INSTANCE-N`) and reported its start: no other gateway's
/// key may start, end or record it, or overwrite what it reported.
fn not_owner(existing: Option<&SessionRecord>, gateway: &str, session: &str) -> Option<String> {
    let numbered_here = session
        .strip_prefix(gateway)
        .and_then(|rest| rest.strip_prefix('-'))
        .and_then(|rest| rest.split_once('-'))
        .is_some_and(|(instance, n)| {
            !instance.is_empty() && !instance.contains('-') && n.parse::<u64>().is_ok()
        });
    if !numbered_here {
        return Some(format!(
            "session {session} is not one gateway {gateway} numbered"
        ));
    }
    match existing {
        Some(r) if r.gateway != gateway => Some(format!(
            "session {session} belongs to gateway {}",
            r.gateway
        )),
        _ => None,
    }
}

/// A report acknowledged (so the gateway's spool moves on) but not believed: audited.
fn refuse(tx: &mut Tx<'_>, gateway: &str, seq: u64, why: &str) -> String {
    tx.audit(AuditEvent::new(
        gateway,
        EventKind::Refused {
            command: "report".into(),
            error: why.to_string(),
        },
    ));
    tracing::warn!("report {seq} from {gateway} refused: {why}");
    format!("report {seq} refused: {why}")
}

/// Record one report in `tx`; what to say about it.
fn record(
    tx: &mut Tx<'_>,
    gateway: &str,
    instance: &str,
    seq: u64,
    report: SessionReport,
) -> Result<String, ApproverError> {
    match report {
        SessionReport::Refused(r) => refused(tx, gateway, r),
        SessionReport::RefusedRepeatedly(c) => refused_repeatedly(tx, gateway, c),
        SessionReport::GatewayStarted {
            version,
            listen,
            pid,
            at,
        } => {
            tx.audit(AuditEvent::new(
                gateway,
                EventKind::GatewayStarted {
                    gateway: gateway.to_string(),
                    instance: instance.to_string(),
                    version,
                    listen,
                    pid,
                    started_at: at,
                },
            ));
        }
        SessionReport::GatewayStopped { reason, at } => {
            tx.audit(
                AuditEvent::new(
                    gateway,
                    EventKind::GatewayStopped {
                        gateway: gateway.to_string(),
                        instance: instance.to_string(),
                        stopped_at: at,
                    },
                )
                .reason(Some(reason)),
            );
        }
        report => return session_report(tx, gateway, seq, report),
    }
    Ok(format!("report {seq} recorded"))
}

/// A channel the gateway refused: `session.refused`.
fn refused(tx: &mut Tx<'_>, gateway: &str, r: Refusal) {
    let mut event = AuditEvent::new(
        gateway,
        EventKind::SessionRefused {
            gateway: gateway.to_string(),
            client: r.client,
            fingerprint: r.fingerprint,
            channel: r.channel,
            destination: r.destination,
            message: r.message,
        },
    )
    .user(r.user)
    .reason(Some(r.reason));
    event.target = r.target;
    tx.audit(event);
}

/// Refusals the gateway counted past its budget: one `session.refused` with a `count`.
fn refused_repeatedly(tx: &mut Tx<'_>, gateway: &str, c: RefusalCount) {
    let mut event = AuditEvent::new(
        gateway,
        EventKind::SessionRefusedRepeatedly {
            gateway: gateway.to_string(),
            client: c.client,
            count: c.count,
            first: c.first,
            last: c.last,
            reasons: c.reasons,
        },
    );
    event.user = c.user;
    tx.audit(event);
}

/// Record a report about one session, once its owner is checked.
fn session_report(
    tx: &mut Tx<'_>,
    gateway: &str,
    seq: u64,
    report: SessionReport,
) -> Result<String, ApproverError> {
    let Some(session) = report.session().map(str::to_string) else {
        return Err(ApproverError::BadInput(format!(
            "report {seq} is about no session"
        )));
    };
    if let Some(why) = not_owner(tx.session(&session)?.as_ref(), gateway, &session) {
        return Ok(refuse(tx, gateway, seq, &why));
    }
    match report {
        SessionReport::FileOps { session, ops } => file_ops(tx, gateway, session, ops)?,
        // Not about a session: `record` took them.
        SessionReport::Refused(_)
        | SessionReport::RefusedRepeatedly(_)
        | SessionReport::GatewayStarted { .. }
        | SessionReport::GatewayStopped { .. } => {}
        SessionReport::Started {
            session,
            user,
            target,
            grant,
            client,
            fingerprint,
            channel,
            at,
        } => started(
            tx,
            SessionRecord {
                id: session,
                gateway: gateway.to_string(),
                user,
                target,
                grant,
                client,
                fingerprint,
                channel,
                started_at: at,
                end: None,
            },
        ),
        SessionReport::Ended {
            session,
            bytes_in,
            bytes_out,
            duration,
            reason,
            exit_status,
            at,
            recording,
        } => ended(
            tx,
            gateway,
            session,
            SessionEnd {
                at,
                bytes_in,
                bytes_out,
                duration,
                reason,
                exit_status,
                recording,
            },
        )?,
        SessionReport::Recorded {
            session,
            sha256,
            size,
            ..
        } => {
            // Stored above; `audit verify` checks it against the hash in the end event.
            tracing::info!("recording of {session} stored ({size} bytes, {sha256})");
        }
        SessionReport::Regranted {
            session,
            from,
            to,
            at: _,
        } => regranted(tx, gateway, session, from, to)?,
        SessionReport::HostKeyMismatch {
            session,
            user,
            target,
            presented,
            at: _,
        } => {
            tx.audit(
                AuditEvent::new(
                    gateway,
                    EventKind::TargetHostKeyMismatch { session, presented },
                )
                .user(&user)
                .target(&target),
            );
        }
    }
    Ok(format!("report {seq} recorded"))
}

/// File operations of a recorded session, one event each, with the session's user, target
/// and grant.
fn file_ops(
    tx: &mut Tx<'_>,
    gateway: &str,
    session: String,
    ops: Vec<FileEvent>,
) -> Result<(), ApproverError> {
    let rec = tx.session(&session)?;
    for FileEvent { at, op, outcome } in ops {
        let mut event = AuditEvent::new(
            gateway,
            EventKind::FileOperation {
                session: session.clone(),
                gateway: gateway.to_string(),
                seen_at: at,
                op,
                outcome,
            },
        );
        if let Some(r) = &rec {
            event = event.user(&r.user).target(&r.target).grant(r.grant);
        }
        tx.audit(event);
    }
    Ok(())
}

/// A session started: on the books, and `session.started` in the log.
fn started(tx: &mut Tx<'_>, mut rec: SessionRecord) {
    // A certificate login's start names the certificate after the fingerprint.
    let (fingerprint, certificate) = match user_ca::split_reported(&rec.fingerprint) {
        (fp, Some(b)) => (fp.to_string(), Some(b)),
        (_, None) => (rec.fingerprint.clone(), None),
    };
    rec.fingerprint = fingerprint;
    let kind = match certificate {
        Some(b) => EventKind::SessionStartedCertified {
            session: rec.id.clone(),
            gateway: rec.gateway.clone(),
            client: rec.client.clone(),
            fingerprint: rec.fingerprint.clone(),
            channel: rec.channel.clone(),
            ca: b.ca,
            key_id: b.key_id,
            serial: b.serial,
        },
        None => EventKind::SessionStarted {
            session: rec.id.clone(),
            gateway: rec.gateway.clone(),
            client: rec.client.clone(),
            fingerprint: rec.fingerprint.clone(),
            channel: rec.channel.clone(),
        },
    };
    tx.audit(
        AuditEvent::new(&rec.gateway, kind)
            .user(&rec.user)
            .target(&rec.target)
            .grant(rec.grant),
    );
    tx.put_session(rec);
}

/// A session ended: its end on the books, and `session.ended` in the log with the recording's
/// hash (what `audit verify` checks the recording against).
fn ended(
    tx: &mut Tx<'_>,
    gateway: &str,
    session: String,
    end: SessionEnd,
) -> Result<(), ApproverError> {
    // An end whose start never arrived is still recorded: refusing it would block the
    // gateway's spool behind it for good. Its owner is checked by the caller.
    let mut rec = match tx.session(&session)? {
        Some(r) => r,
        None => SessionRecord {
            id: session.clone(),
            gateway: gateway.to_string(),
            user: String::new(),
            target: String::new(),
            grant: 0,
            client: String::new(),
            fingerprint: String::new(),
            channel: "unknown (start not received)".into(),
            started_at: end.at,
            end: None,
        },
    };
    tx.audit(
        AuditEvent::new(
            gateway,
            EventKind::SessionEnded {
                session,
                gateway: gateway.to_string(),
                bytes_in: end.bytes_in,
                bytes_out: end.bytes_out,
                duration: end.duration,
                reason: end.reason.clone(),
                exit_status: end.exit_status,
                recording_sha256: end.recording.as_ref().map(|r| r.0.clone()),
                recording_size: end.recording.as_ref().map(|r| r.1),
            },
        )
        .user(&rec.user)
        .target(&rec.target)
        .grant(rec.grant),
    );
    rec.end = Some(end);
    tx.put_session(rec);
    Ok(())
}

/// A session moved to another grant (its own ended, another covers it): noted in the log and
/// on the books.
fn regranted(
    tx: &mut Tx<'_>,
    gateway: &str,
    session: String,
    from: u64,
    to: u64,
) -> Result<(), ApproverError> {
    let mut rec = tx.session(&session)?;
    let (user, target) = rec
        .as_ref()
        .map(|r| (r.user.clone(), r.target.clone()))
        .unwrap_or_default();
    tx.audit(
        AuditEvent::new(gateway, EventKind::SessionRegranted { session, from })
            .user(&user)
            .target(&target)
            .grant(to),
    );
    if let Some(r) = rec.as_mut() {
        r.grant = to;
        tx.put_session(r.clone());
    }
    Ok(())
}
/// Cut a live session: a signed kill on the stream, and an audit event.
pub(crate) async fn kill(
    app: &Approver,
    actor: &str,
    id: &str,
) -> Result<SessionRecord, ApproverError> {
    app.write(|tx| {
        // Checked again under the writer, against the catalog in force: a reload may have
        // taken the caller out of admins since the command started.
        if !tx.catalog.users.get(actor).is_some_and(|u| u.is_admin()) {
            return Err(ApproverError::Forbidden(format!(
                "`kill` is for members of admins; {actor} is no longer one"
            )));
        }
        let rec = app
            .store
            .session(id)?
            .filter(|s| s.end.is_none())
            .ok_or_else(|| {
                ApproverError::NotFound(format!(
                    "no live session {id:?} — `sessions --live` lists them"
                ))
            })?;
        tx.kill_session(id);
        tx.audit(
            AuditEvent::new(
                actor,
                EventKind::SessionKilled {
                    session: id.to_string(),
                },
            )
            .user(&rec.user)
            .target(&rec.target)
            .grant(rec.grant),
        );
        Ok(rec)
    })
    .await
}
