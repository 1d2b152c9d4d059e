//! A budget for `command.refused` audit records. Each refusal for lack of permission is an
//! audit event, and each audit record is a flushed commit: a user repeating a refused command
//! in a loop would otherwise buy a disk flush and a record in the permanent log per try. Each
//! actor gets [`PER_WINDOW`] records one by one per [`WINDOW`]; past that their refusals are
//! counted, and the counts written as one `command.refused` event with a `count` per actor
//! every [`FLUSH_EVERY`] ([`Approver::record_counted_refusals`], below).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use portcullis_core::audit_event::{AuditEvent, EventKind};
use portcullis_core::Timestamp;

use crate::app::Approver;
use crate::locks;

/// Refusals recorded one by one per actor and window.
pub(crate) const PER_WINDOW: u32 = 10;
/// The window of [`PER_WINDOW`].
pub(crate) const WINDOW: Duration = Duration::from_secs(60);
/// How often counted refusals are written.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct Budget {
    window_start: Instant,
    recorded: u32,
    /// Refusals counted and not yet written: how many, the first and the last.
    counted: Option<(u64, Timestamp, Timestamp)>,
}

/// Per actor: configured users and gateways only (a refusal needs an authenticated caller),
/// so the map is bounded by the catalog.
#[derive(Debug, Default)]
pub(crate) struct RefusalBudget {
    by_actor: Mutex<HashMap<String, Budget>>,
}

impl RefusalBudget {
    fn map(&self) -> MutexGuard<'_, HashMap<String, Budget>> {
        locks::lock(&self.by_actor)
    }

    /// Whether this refusal by `actor` is recorded on its own (true) or only counted (false).
    pub fn admit(&self, actor: &str, at: Timestamp, now: Instant) -> bool {
        let mut map = self.map();
        let b = map.entry(actor.to_string()).or_insert(Budget {
            window_start: now,
            recorded: 0,
            counted: None,
        });
        if now.duration_since(b.window_start) >= WINDOW {
            b.window_start = now;
            b.recorded = 0;
        }
        if b.recorded < PER_WINDOW {
            b.recorded += 1;
            return true;
        }
        b.counted = Some(match b.counted {
            None => (1, at, at),
            Some((n, first, _)) => (n + 1, first, at),
        });
        false
    }

    /// The counts not yet written, taken out: (actor, count, first, last).
    pub fn take_counted(&self) -> Vec<(String, u64, Timestamp, Timestamp)> {
        let mut map = self.map();
        let out = map
            .iter_mut()
            .filter_map(|(actor, b)| {
                b.counted
                    .take()
                    .map(|(n, first, last)| (actor.clone(), n, first, last))
            })
            .collect();
        // Actors whose window is over and who have nothing counted need no entry.
        map.retain(|_, b| b.counted.is_some() || b.window_start.elapsed() < WINDOW);
        out
    }

    /// Put counts back after they could not be written, so none is lost.
    pub fn restore(&self, counts: Vec<(String, u64, Timestamp, Timestamp)>) {
        let mut map = self.map();
        for (actor, n, first, last) in counts {
            let b = map.entry(actor).or_insert(Budget {
                window_start: Instant::now(),
                recorded: PER_WINDOW,
                counted: None,
            });
            b.counted = Some(match b.counted {
                None => (n, first, last),
                Some((m, _, later)) => (n + m, first, later),
            });
        }
    }
}

impl Approver {
    /// Record a refusal for lack of permission: on its own while `actor` is within its budget,
    /// else only counted (see [`crate::refusals`]).
    pub(crate) async fn record_refusal(&self, actor: &str, command: String, error: String) {
        if !self
            .refusals
            .admit(actor, self.now(), std::time::Instant::now())
        {
            return;
        }
        let event = AuditEvent::new(actor, EventKind::Refused { command, error });
        let recorded = self
            .write(|tx| {
                tx.audit(event);
                Ok(())
            })
            .await;
        if let Err(e) = recorded {
            tracing::error!("could not record a refusal: {e}");
        }
    }

    /// Write the refusals counted since the last call, one event per actor, in one commit.
    pub(crate) async fn record_counted_refusals(&self) {
        let counted = self.refusals.take_counted();
        if counted.is_empty() {
            return;
        }
        let events: Vec<AuditEvent> = counted
            .iter()
            .map(|(actor, count, first, last)| {
                AuditEvent::new(
                    actor.as_str(),
                    EventKind::RefusedRepeatedly {
                        count: *count,
                        first: *first,
                        last: *last,
                    },
                )
            })
            .collect();
        let recorded = self
            .write(|tx| {
                for e in events {
                    tx.audit(e);
                }
                Ok(())
            })
            .await;
        if let Err(e) = recorded {
            tracing::error!("could not record counted refusals, kept for the next try: {e}");
            self.refusals.restore(counted);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_budget_refusals_are_counted_then_the_window_starts_over() {
        let b = RefusalBudget::default();
        let t0 = Instant::now();
        let recorded = (0..25)
            .filter(|i| b.admit("dave", Timestamp(*i), t0))
            .count();
        assert_eq!(recorded, PER_WINDOW as usize);
        // Someone else has a budget of their own.
        assert!(b.admit("alice", Timestamp(0), t0));
        assert_eq!(
            b.take_counted(),
            vec![("dave".to_string(), 15, Timestamp(10), Timestamp(24))]
        );
        assert!(b.take_counted().is_empty(), "taken once");
        assert!(!b.admit("dave", Timestamp(30), t0 + WINDOW / 2));
        assert!(b.admit("dave", Timestamp(31), t0 + WINDOW));
        // Counts that could not be written come back.
        let counted = b.take_counted();
        b.restore(counted.clone());
        assert_eq!(b.take_counted(), counted);
    }
}
