//! Sessions as gateways report them: recorded once each (by per-gateway sequence number), with
//! their audit events; cut by `kill` through the signed stream. `sessions` lists them through
//! `render::sessions`.

use portcullis_core::audit_event::{AuditEvent, EventKind};
use portcullis_core::codec;
use portcullis_core::model::{SessionEnd, SessionRecord, SessionReport};

use portcullis_store::Incoming;

use crate::app::{Approver, Tx};
use crate::errors::ApproverError;

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
/// it arrived into `recording` (see [`head`]), and is put in place here if it is whole and
/// matches its announced hash and size.
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
        // The server writes a recording to disk as it arrives (see [`head`]); bytes left after
        // the reports here are not one.
        return Err(ApproverError::BadInput(format!(
            "{} stray bytes after the reports",
            attachment.len()
        )));
    }
    // A recording this gateway may not deliver is acknowledged (so its spool moves on) and
    // audited, never kept: its temporary file goes with `incoming`.
    let mut refused_recording = None;
    match (reports.as_slice(), recording) {
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
                refused_recording = Some(why);
            } else {
                // The file first (idempotent if this report is a retry), then the books.
                let (sha256, size) = (sha256.clone(), *size);
                let kept = tokio::task::spawn_blocking(move || incoming.keep(&sha256, size))
                    .await
                    .map_err(|e| ApproverError::Config(format!("storing the recording: {e}")))?;
                match kept {
                    Ok(()) => {}
                    Err(e) if e.source.kind() == std::io::ErrorKind::AlreadyExists => {
                        refused_recording = Some(format!("recording {e}"));
                    }
                    Err(e) if e.source.kind() == std::io::ErrorKind::InvalidData => {
                        return Err(ApproverError::BadInput(e.to_string()))
                    }
                    Err(e) => return Err(ApproverError::Recording(e)),
                }
            }
        }
        ([SessionReport::Recorded { .. }], None) => {
            return Err(ApproverError::BadInput(
                "a report announcing a recording came without the recording".into(),
            ))
        }
        (_, Some(_)) => {
            return Err(ApproverError::BadInput(
                "a recording came without the report that announces it".into(),
            ))
        }
        (_, None) => {}
    }
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
                notes.push(record(tx, gateway, seq, report)?);
            }
        }
        if last_seq > last {
            tx.set_counter(counter(gateway, instance), last_seq);
        }
        Ok(notes.join("\n"))
    })
    .await
}

/// What the start of a `report` command's stdin says comes next.
#[derive(Debug, PartialEq)]
pub(crate) enum Head {
    /// The first report has not arrived whole yet.
    Incomplete,
    /// Reports, no recording: they are read whole before anything is recorded.
    Reports,
    /// The first report announces a recording of `size` bytes, which starts at byte `end`.
    Recording {
        end: usize,
        session: String,
        format: String,
        size: u64,
    },
}

/// Look at the first report on a `report` command's stdin as it arrives, to know whether what
/// follows is a recording (to be written to disk as it comes) or more reports.
pub(crate) fn head(input: &[u8]) -> Result<Head, ApproverError> {
    let Some((len, after)) = input.split_first_chunk::<4>() else {
        return Ok(Head::Incomplete);
    };
    let len = u32::from_be_bytes(*len) as usize;
    if len as u64 > codec::MAX_RECORD_BYTES {
        return Err(ApproverError::BadInput(format!(
            "report of {len} bytes is over the {}-byte limit",
            codec::MAX_RECORD_BYTES
        )));
    }
    let Some(bytes) = after.get(..len) else {
        return Ok(Head::Incomplete);
    };
    match codec::decode(bytes) {
        Ok(SessionReport::Recorded {
            session,
            format,
            size,
            ..
        }) => Ok(Head::Recording {
            end: 4 + len,
            session,
            format,
            size,
        }),
        Ok(_) => Ok(Head::Reports),
        Err(e) => Err(ApproverError::BadInput(format!(
            "report 1 does not decode: {e}"
        ))),
    }
}

/// The reports on a `report` command's stdin, and the recording after the one that announces
/// it (empty otherwise).
fn split_reports(input: &[u8]) -> Result<(Vec<SessionReport>, &[u8]), ApproverError> {
    let bad = |why: String| ApproverError::BadInput(why);
    let mut reports = Vec::new();
    let mut rest = input;
    loop {
        let Some((len, after)) = rest.split_first_chunk::<4>() else {
            return Err(bad(if reports.is_empty() {
                "report is not framed".into()
            } else {
                format!("{} stray bytes after report {}", rest.len(), reports.len())
            }));
        };
        let len = u32::from_be_bytes(*len) as usize;
        if after.len() < len {
            return Err(bad(format!(
                "report {} is cut short ({} of {len} bytes)",
                reports.len() + 1,
                after.len()
            )));
        }
        let (bytes, after) = after.split_at(len);
        let report: SessionReport = codec::decode(bytes)
            .map_err(|e| bad(format!("report {} does not decode: {e}", reports.len() + 1)))?;
        let recorded = matches!(report, SessionReport::Recorded { .. });
        if recorded && !reports.is_empty() {
            return Err(bad("a report announcing a recording must come alone".into()));
        }
        reports.push(report);
        if recorded || after.is_empty() {
            return Ok((reports, after));
        }
        rest = after;
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
    seq: u64,
    report: SessionReport,
) -> Result<String, ApproverError> {
    let session = report.session().to_string();
    if let Some(why) = not_owner(tx.session(&session)?.as_ref(), gateway, &session) {
        return Ok(refuse(tx, gateway, seq, &why));
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
            // Its owner is checked above.
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
        SessionReport::Regranted {
            session,
            from,
            to,
            at: _,
        } => {
            let mut rec = tx.session(&session)?;
            let (user, target) = rec
                .as_ref()
                .map(|r| (r.user.clone(), r.target.clone()))
                .unwrap_or_default();
            tx.audit(
                AuditEvent::new(
                    gateway,
                    EventKind::SessionRegranted {
                        session: session.clone(),
                        from,
                    },
                )
                .user(&user)
                .target(&target)
                .grant(to),
            );
            if let Some(r) = rec.as_mut() {
                r.grant = to;
                tx.put_session(r.clone());
            }
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
    Ok(format!("report {seq} recorded"))
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

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::Timestamp;

    fn framed(r: &SessionReport) -> Vec<u8> {
        codec::frame(&codec::encode(r))
    }

    fn mismatch(session: &str) -> SessionReport {
        SessionReport::HostKeyMismatch {
            session: session.into(),
            user: "alice".into(),
            target: "web-1".into(),
            presented: "ssh-ed25519 AAAA".into(),
            at: Timestamp(1),
        }
    }

    fn recorded(session: &str) -> SessionReport {
        SessionReport::Recorded {
            session: session.into(),
            sha256: "00".into(),
            size: 3,
            format: "cast".into(),
        }
    }

    #[test]
    fn reports_come_one_after_another() {
        let input = [framed(&mismatch("a")), framed(&mismatch("b"))].concat();
        let (reports, attachment) = split_reports(&input).unwrap();
        assert_eq!(reports.len(), 2);
        assert_eq!(reports[1].session(), "b");
        assert!(attachment.is_empty());
    }

    #[test]
    fn a_recording_follows_the_report_that_announces_it() {
        let input = [framed(&recorded("a")), b"abc".to_vec()].concat();
        let (reports, attachment) = split_reports(&input).unwrap();
        assert_eq!(reports.len(), 1);
        assert_eq!(attachment, b"abc");
    }

    #[test]
    fn the_head_tells_a_recording_from_reports_as_soon_as_the_first_report_is_whole() {
        let rec = [framed(&recorded("a")), b"abc".to_vec()].concat();
        let end = framed(&recorded("a")).len();
        assert_eq!(head(&rec[..3]).unwrap(), Head::Incomplete);
        assert_eq!(head(&rec[..end - 1]).unwrap(), Head::Incomplete);
        let want = Head::Recording {
            end,
            session: "a".into(),
            format: "cast".into(),
            size: 3,
        };
        assert_eq!(head(&rec[..end]).unwrap(), want);
        assert_eq!(head(&rec).unwrap(), want);
        assert_eq!(head(&framed(&mismatch("a"))).unwrap(), Head::Reports);
        let huge = [(u32::MAX).to_be_bytes().to_vec(), vec![0; 8]].concat();
        assert!(head(&huge).unwrap_err().to_string().contains("over"));
        assert!(head(&[0, 0, 0, 3, 1, 2, 3]).is_err());
    }

    #[test]
    fn bad_batches_are_refused_with_a_reason() {
        let late = [
            framed(&mismatch("a")),
            framed(&recorded("a")),
            b"abc".to_vec(),
        ]
        .concat();
        let cut = {
            let mut v = [framed(&mismatch("a")), framed(&mismatch("b"))].concat();
            v.truncate(v.len() - 1);
            v
        };
        let stray = [framed(&mismatch("a")), vec![0, 0]].concat();
        for (input, why) in [
            (Vec::new(), "not framed"),
            (late, "must come alone"),
            (cut, "cut short"),
            (stray, "stray bytes"),
            (vec![0, 0, 0, 3, 1, 2, 3], "does not decode"),
        ] {
            let e = split_reports(&input).unwrap_err().to_string();
            assert!(e.contains(why), "{why}: {e}");
        }
    }
}
