//! `[approver] retention`: recordings of sessions that ended longer ago than it are removed.
//! Each removal is an audit event first, committed, and only then is the file removed: `audit
//! verify` expects exactly the recordings the log does not say were removed, and a crash
//! between the two leaves a file the next pass removes without a second event.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use portcullis_core::audit_event::{AuditEvent, EventKind};
use portcullis_core::time::format_duration;

use crate::app::Approver;
use crate::errors::ApproverError;

/// Prune now and then: often enough that a recording outlives its retention by at most a
/// quarter of it, at most hourly, at least a second apart.
pub(crate) async fn run(app: Arc<Approver>) {
    let Some(keep) = app.settings.retention else {
        return;
    };
    let every = (keep / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    loop {
        match prune(&app, keep).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                "retention {}: removed {n} recordings",
                format_duration(keep)
            ),
            Err(e) => tracing::error!("retention: {e}"),
        }
        tokio::time::sleep(every).await;
    }
}

/// One pass; how many recordings it removed.
async fn prune(app: &Approver, keep: Duration) -> Result<usize, ApproverError> {
    let now = app.now();
    let keep_ms = u64::try_from(keep.as_millis()).unwrap_or(u64::MAX);
    // Sessions past retention whose recording is still on disk. Most passes find none and
    // read nothing more.
    let mut due = Vec::new();
    for s in app.store.sessions()? {
        let Some((sha256, at)) = s
            .end
            .as_ref()
            .and_then(|e| e.recording.as_ref().map(|(sha, _)| (sha.clone(), e.at)))
        else {
            continue;
        };
        if now.0.saturating_sub(at.0) >= keep_ms && app.recordings.locate(&s.id)?.is_some() {
            due.push((s, sha256));
        }
    }
    if due.is_empty() {
        return Ok(0);
    }
    // Removals already in the log (a pass cut short between the event and the file) get no
    // second event.
    let removed_before: BTreeSet<String> =
        portcullis_audit::expected_recordings(app.store.audit_records())
            .removed
            .into_iter()
            .collect();
    let removed = due.len();
    for (s, sha256) in due {
        if !removed_before.contains(&s.id) {
            let event = AuditEvent::new(
                "approver",
                EventKind::RecordingRemoved {
                    session: s.id.clone(),
                    sha256,
                    why: format!("retention {}", format_duration(keep)),
                },
            )
            .user(&s.user)
            .target(&s.target);
            app.write(|tx| {
                tx.audit(event);
                Ok(())
            })
            .await?;
        }
        let recordings = app.recordings.clone();
        let id = s.id.clone();
        tokio::task::spawn_blocking(move || recordings.remove(&id))
            .await
            .map_err(|e| ApproverError::Config(format!("removing a recording: {e}")))??;
    }
    Ok(removed)
}
