//! Acts on deadlines: undecided requests lapse after `request_ttl`, and grants that reach their
//! end get an expiry audit event whether or not anyone asks. One timer for the earliest
//! deadline, re-armed when a write adds an earlier one; no polling loop.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use portcullis_core::audit_event::{AuditEvent, EventKind};
use portcullis_core::model::RequestState;
use portcullis_core::Timestamp;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::app::Approver;
use crate::locks;

/// Something with a deadline the scheduler must act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Deadline {
    Request(u64),
    Grant(u64),
}

/// The deadlines to act on, earliest first, and the wake-up of the scheduler's one timer. A
/// deadline added from outside always wakes the scheduler ([`Deadlines::add`]): it may be
/// asleep towards a later one.
#[derive(Debug, Default)]
pub(crate) struct Deadlines {
    due: Mutex<BTreeSet<(Timestamp, Deadline)>>,
    wake: Notify,
}

impl Deadlines {
    /// Add deadlines and wake the scheduler to re-arm its timer.
    pub fn add(&self, deadlines: impl IntoIterator<Item = (Timestamp, Deadline)>) {
        let mut due = locks::lock(&self.due);
        let before = due.len();
        due.extend(deadlines);
        let added = due.len() != before;
        drop(due);
        if added {
            self.wake.notify_one();
        }
    }

    /// The earliest deadline.
    fn next(&self) -> Option<Timestamp> {
        locks::lock(&self.due).first().map(|(at, _)| *at)
    }

    /// Take out every deadline at or before `now`, earliest first.
    fn take_due(&self, now: Timestamp) -> Vec<Deadline> {
        let mut d = locks::lock(&self.due);
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

    /// Put back a deadline that could not be acted on, without a wake-up: only the scheduler
    /// does this, and it reads the next deadline again right after.
    fn retry(&self, at: Timestamp, what: Deadline) {
        locks::lock(&self.due).insert((at, what));
    }
}

/// Run until the process ends.
pub(crate) async fn run(app: Arc<Approver>) {
    let deadlines = &app.deadlines;
    loop {
        match deadlines.next() {
            None => deadlines.wake.notified().await,
            Some(at) => {
                let now = app.now();
                if at > now {
                    let sleep = tokio::time::sleep_until(Instant::now() + now.until(at));
                    tokio::select! {
                        _ = sleep => {}
                        _ = deadlines.wake.notified() => continue,
                    }
                }
                fire_due(&app).await;
            }
        }
    }
}

async fn fire_due(app: &Approver) {
    let now = app.now();
    for what in app.deadlines.take_due(now) {
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
                .retry(now.plus(std::time::Duration::from_secs(1)), what);
        }
    }
}
