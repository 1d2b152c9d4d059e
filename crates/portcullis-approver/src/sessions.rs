//! Sessions as gateways report them: recorded once each (by per-gateway sequence number), with
//! their audit events; listed by `sessions`; cut by `kill` through the signed stream.

use portcullis_core::audit_event::{AuditEvent, EventKind};
use portcullis_core::codec;
use portcullis_core::model::{SessionEnd, SessionRecord, SessionReport};
use portcullis_core::time::format_duration;
use serde_json::{json, Value};

use crate::app::Approver;
use crate::errors::ApproverError;

/// Reports are numbered per gateway *instance* (its replica), so a gateway whose replica was
/// made afresh starts its own sequence instead of having its reports taken for repeats.
fn counter(gateway: &str, instance: &str) -> String {
    format!("report/{gateway}/{instance}")
}

/// Record report `seq` from `gateway`. A sequence number at or below the last one recorded is
/// acknowledged without recording it again: the gateway retried after a lost acknowledgement.
pub(crate) async fn report(
    app: &Approver,
    gateway: &str,
    instance: &str,
    seq: u64,
    bytes: &[u8],
    attachment: &[u8],
) -> Result<String, ApproverError> {
    let report: SessionReport = codec::decode(bytes)
        .map_err(|e| ApproverError::BadInput(format!("report does not decode: {e}")))?;
    if let SessionReport::Recorded {
        session,
        sha256,
        format: kind,
        ..
    } = &report
    {
        // The file first (idempotent if this report is a retry), then the books.
        portcullis_audit::verify_recording(session, sha256, Some(attachment))
            .map_err(|e| ApproverError::BadInput(format!("recording arrived damaged: {e}")))?;
        app.recordings
            .put_as(session, kind, attachment)
            .map_err(|e| ApproverError::Config(e.to_string()))?;
    }
    app.write(|tx| {
        let last = app.store.counter(&counter(gateway, instance))?;
        if seq <= last {
            return Ok(format!("report {seq} already recorded"));
        }
        match report {
            SessionReport::Started {
                session,
                user,
                target,
                grant,
                client,
                fingerprint,
                channel,
                at,
            } => {
                tx.audit(
                    AuditEvent::new(
                        gateway,
                        EventKind::SessionStarted {
                            session: session.clone(),
                            gateway: gateway.to_string(),
                            client: client.clone(),
                            fingerprint: fingerprint.clone(),
                            channel: channel.clone(),
                        },
                    )
                    .user(&user)
                    .target(&target)
                    .grant(grant),
                );
                tx.put_session(SessionRecord {
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
                });
            }
            SessionReport::Ended {
                session,
                bytes_in,
                bytes_out,
                duration,
                reason,
                exit_status,
                at,
                recording,
            } => {
                // An end whose start never arrived is still recorded: refusing it would
                // block the gateway's spool behind it for good.
                let mut rec = match app.store.session(&session)? {
                    Some(r) if r.gateway == gateway => r,
                    Some(other) => {
                        // Acknowledged (so the spool moves on) but not believed.
                        tx.audit(AuditEvent::new(
                            gateway,
                            EventKind::Refused {
                                command: "report".into(),
                                error: format!(
                                    "end of session {session}, which belongs to gateway {}",
                                    other.gateway
                                ),
                            },
                        ));
                        tx.set_counter(counter(gateway, instance), seq);
                        return Ok(format!("report {seq} refused: not this gateway's session"));
                    }
                    None => SessionRecord {
                        id: session.clone(),
                        gateway: gateway.to_string(),
                        user: String::new(),
                        target: String::new(),
                        grant: 0,
                        client: String::new(),
                        fingerprint: String::new(),
                        channel: "unknown (start not received)".into(),
                        started_at: at,
                        end: None,
                    },
                };
                tx.audit(
                    AuditEvent::new(
                        gateway,
                        EventKind::SessionEnded {
                            session: session.clone(),
                            gateway: gateway.to_string(),
                            bytes_in,
                            bytes_out,
                            duration,
                            reason: reason.clone(),
                            exit_status,
                            recording_sha256: recording.as_ref().map(|r| r.0.clone()),
                            recording_size: recording.as_ref().map(|r| r.1),
                        },
                    )
                    .user(&rec.user)
                    .target(&rec.target)
                    .grant(rec.grant),
                );
                rec.end = Some(SessionEnd {
                    at,
                    bytes_in,
                    bytes_out,
                    duration,
                    reason,
                    exit_status,
                    recording,
                });
                tx.put_session(rec);
            }
            SessionReport::Recorded {
                session,
                sha256,
                size,
                ..
            } => {
                // Stored above; `audit verify` checks it against the hash in the end event.
                tracing::info!("recording of {session} stored ({size} bytes, {sha256})");
            }
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
        tx.set_counter(counter(gateway, instance), seq);
        Ok(format!("report {seq} recorded"))
    })
    .await
}

pub(crate) fn session_json(s: &SessionRecord) -> Value {
    json!({
        "id": s.id,
        "gateway": s.gateway,
        "user": s.user,
        "target": s.target,
        "grant": s.grant,
        "client": s.client,
        "fingerprint": s.fingerprint,
        "channel": s.channel,
        "started_at": s.started_at.rfc3339(),
        "live": s.end.is_none(),
        "ended_at": s.end.as_ref().map(|e| e.at.rfc3339()),
        "end_reason": s.end.as_ref().map(|e| e.reason.clone()),
        "bytes_in": s.end.as_ref().map(|e| e.bytes_in),
        "bytes_out": s.end.as_ref().map(|e| e.bytes_out),
    })
}

pub(crate) fn session_line(s: &SessionRecord) -> String {
    let state = match &s.end {
        None => "live".to_string(),
        Some(e) => format!(
            "ended {} ({}, {} in, {} out, {})",
            e.at,
            e.reason,
            e.bytes_in,
            e.bytes_out,
            format_duration(e.duration)
        ),
    };
    format!(
        "{:<12} {:<10} {:<16} grant {:<5} {:<12} since {}  {}",
        s.id, s.user, s.target, s.grant, s.channel, s.started_at, state
    )
}

/// Cut a live session: a signed kill on the stream, and an audit event.
pub(crate) async fn kill(
    app: &Approver,
    actor: &str,
    id: &str,
) -> Result<SessionRecord, ApproverError> {
    app.write(|tx| {
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
