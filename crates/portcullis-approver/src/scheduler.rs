//! Acts on deadlines: undecided requests lapse after `request_ttl`, and grants that reach their
//! end get an expiry audit event whether or not anyone asks. One timer for the earliest
//! deadline, re-armed when a write adds an earlier one; no polling loop.

use std::sync::Arc;

use portcullis_core::audit_event::{AuditEvent, EventKind};
use portcullis_core::model::RequestState;
use tokio::time::Instant;

use crate::app::{Approver, Deadline};

/// Run until the process ends.
pub(crate) async fn run(app: Arc<Approver>) {
    loop {
        let next = app
            .deadlines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .first()
            .copied();
        match next {
            None => app.wake.notified().await,
            Some((at, _)) => {
                let now = app.now();
                if at > now {
                    let sleep = tokio::time::sleep_until(Instant::now() + now.until(at));
                    tokio::select! {
                        _ = sleep => {}
                        _ = app.wake.notified() => continue,
                    }
                }
                fire_due(&app).await;
            }
        }
    }
}

async fn fire_due(app: &Approver) {
    let now = app.now();
    let due: Vec<Deadline> = match app.deadlines.lock() {
        Ok(mut d) => {
            let mut due = Vec::new();
            while let Some(&(at, what)) = d.first() {
                if at > now {
                    break;
                }
                d.pop_first();
                due.push(what);
            }
            due
        }
        Err(_) => return,
    };
    for what in due {
        let result = app
            .write(|tx| {
                match what {
                    Deadline::Request(id) => {
                        let Some(mut r) = app.store.request(id)? else {
                            return Ok(());
                        };
                        if r.is_pending() && tx.now >= r.expires_at {
                            r.state = RequestState::Expired;
                            r.decided_at = Some(tx.now);
                            tx.audit(
                                AuditEvent::new("approver", EventKind::RequestExpired)
                                    .user(&r.user)
                                    .target(&r.target)
                                    .request(r.id),
                            );
                            tx.put_request(r);
                        }
                    }
                    Deadline::Grant(id) => {
                        let Some(rec) = app.store.grant(id)? else {
                            return Ok(());
                        };
                        let Ok(g) = rec.signed.grant() else {
                            tracing::error!(
                                "grant {id} does not decode; its expiry cannot be recorded"
                            );
                            return Ok(());
                        };
                        if !rec.end_recorded && g.revoked.is_none() && tx.now >= g.expires_at {
                            tx.audit(
                                AuditEvent::new("approver", EventKind::GrantExpired)
                                    .user(&g.user)
                                    .target(&g.target)
                                    .request(g.request)
                                    .grant(g.id),
                            );
                            tx.mark_end_recorded(id, rec);
                        }
                    }
                }
                Ok(())
            })
            .await;
        if let Err(e) = result {
            // Put it back so the event is not lost; try again shortly.
            tracing::error!("could not record a deadline ({what:?}): {e}; retrying");
            app.deadlines
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert((now.plus(std::time::Duration::from_secs(1)), what));
        }
    }
}
