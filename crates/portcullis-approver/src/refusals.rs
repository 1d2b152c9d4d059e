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

/// Actors tracked at once; past it, new ones share [`OTHERS`]. Users are bounded by the
/// catalog; the sources of refused logins are not.
const MAX_KEYS: usize = 4096;
/// The shared actor of every source past [`MAX_KEYS`].
const OTHERS: &str = "login from (others)";
/// What precedes a source address in the actor of a refused login.
const LOGIN_FROM: &str = "login from ";
/// The most of a client-chosen text (the login name) that is kept.
const MAX_TEXT: usize = 256;

#[derive(Debug)]
struct Budget {
    window_start: Instant,
    recorded: u32,
    /// Refusals counted and not yet written: how many, the first and the last.
    counted: Option<(u64, Timestamp, Timestamp)>,
}

/// Per actor: configured users and gateways for refused commands (bounded by the catalog),
/// and `login from ADDRESS` for refused logins (bounded by [`MAX_KEYS`]).
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
        let actor = if map.len() >= MAX_KEYS && !map.contains_key(actor) {
            OTHERS
        } else {
            actor
        };
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

    /// Record that a connection from `peer` tried to log in and never did (`refusal`, the
    /// most telling of its attempts) as `session.refused` with channel `login`: on its own
    /// while its source address is within the budget, else counted. Called from the
    /// connection's drop: only an admitted refusal gets a task to write it.
    pub(crate) fn record_login_refusal(
        self: &std::sync::Arc<Self>,
        peer: &str,
        refusal: &portcullis_ssh::login::Refusal,
    ) {
        let source = peer
            .parse::<std::net::SocketAddr>()
            .map(|a| a.ip().to_canonical().to_string())
            .unwrap_or_else(|_| peer.to_string());
        if !self
            .refusals
            .admit(&format!("{LOGIN_FROM}{source}"), self.now(), Instant::now())
        {
            return;
        }
        let login = capped(&refusal.user);
        let event = AuditEvent::new(
            "approver",
            EventKind::SessionRefused {
                gateway: "approver".into(),
                client: peer.to_string(),
                fingerprint: refusal.fingerprint.clone(),
                channel: "login".into(),
                destination: login.clone(),
                message: capped(&refusal.reason.to_string()),
            },
        )
        .user(login)
        .reason(Some(refusal.reason.label().to_string()));
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let app = self.clone();
        runtime.spawn(async move {
            let recorded = app
                .write(|tx| {
                    tx.audit(event);
                    Ok(())
                })
                .await;
            if let Err(e) = recorded {
                tracing::error!("could not record a refused login: {e}");
            }
        });
    }

    /// Write the refusals counted since the last call, one event per actor, in one commit.
    pub(crate) async fn record_counted_refusals(&self) {
        let counted = self.refusals.take_counted();
        if counted.is_empty() {
            return;
        }
        let events: Vec<AuditEvent> = counted
            .iter()
            .map(
                |(actor, count, first, last)| match actor.strip_prefix(LOGIN_FROM) {
                    Some(source) => AuditEvent::new(
                        "approver",
                        EventKind::SessionRefusedRepeatedly {
                            gateway: "approver".into(),
                            client: Some(source.to_string()),
                            count: *count,
                            first: *first,
                            last: *last,
                            reasons: Vec::new(),
                        },
                    ),
                    None => AuditEvent::new(
                        actor.as_str(),
                        EventKind::RefusedRepeatedly {
                            count: *count,
                            first: *first,
                            last: *last,
                        },
                    ),
                },
            )
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

/// `text`, cut at a character boundary to at most [`MAX_TEXT`] bytes, marked where cut.
fn capped(text: &str) -> String {
    if text.len() <= MAX_TEXT {
        return text.to_string();
    }
    let mut end = MAX_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
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
