//! Refusals as audit events (`session.refused`): every channel of an authenticated user that
//! the gateway refuses (a forward or a recorded session: no grant, unknown target, wrong port,
//! a forwarding-only target, the connection's channel limit, …) is reported to the approver
//! through the spool, so that it survives an approver restart like session reports do.
//!
//! Refused logins too (a connection that tried keys and never got in: one refusal, the most
//! telling, see `portcullis_ssh::login`), with `channel = "login"`, counted per source
//! address.
//!
//! Bounded: each key (the user; for refused logins, the source address) gets
//! [`PER_WINDOW`] reports one by one per [`WINDOW`]; past that its refusals are only counted,
//! and the counts are spooled as one report per key every [`FLUSH_EVERY`] ([`run`]). A user
//! opening thousands of refused channels a minute so costs the spool and the log at most
//! `PER_WINDOW` records and one count per interval, and memory one entry per key, with at
//! most [`MAX_KEYS`] keys (the rest share one entry) and [`MAX_REASONS`] reasons per key.
//! This module owns the budget and nothing else; the approver writes the events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portcullis_core::locks;
use portcullis_core::model::{Refusal, RefusalCount, SessionReport};
use portcullis_core::Timestamp;

use crate::session::Holder;
use crate::spool;
use crate::state::GatewayState;

/// Refusals reported one by one per key and window.
pub(crate) const PER_WINDOW: u32 = 10;
/// The window of [`PER_WINDOW`].
pub(crate) const WINDOW: Duration = Duration::from_secs(60);
/// How often counted refusals are spooled.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_secs(5);
/// Keys tracked at once; past it, new keys share [`OTHERS`]. Users are bounded by the catalog
/// already; sources of refused logins would not be.
const MAX_KEYS: usize = 4096;
/// The shared key of everyone past [`MAX_KEYS`].
const OTHERS: &str = "(others)";
/// Distinct reasons counted per key; past it, they count as `other`.
const MAX_REASONS: usize = 16;
/// The most of a user-chosen text (a forward's host, the message quoting it) that is kept.
const MAX_TEXT: usize = 512;

/// What a key has spent of its window, and what it has counted and not yet reported.
#[derive(Debug)]
struct Spent {
    window_start: Instant,
    reported: u32,
    counted: Option<Counted>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Counted {
    count: u64,
    first: Timestamp,
    last: Timestamp,
    reasons: Vec<(String, u64)>,
}

/// Whose refusals a count is: a user's channels, or a source address's logins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    User,
    Source,
}

/// The per-key budget of refusals reported one by one.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    spent: Mutex<HashMap<(Key, String), Spent>>,
}

impl Budget {
    /// Whether this refusal is reported on its own (true) or only counted (false).
    pub fn admit(&self, key: Key, who: &str, reason: &str, at: Timestamp, now: Instant) -> bool {
        let mut map = locks::lock(&self.spent);
        let who = if map.len() >= MAX_KEYS && !map.contains_key(&(key, who.to_string())) {
            OTHERS
        } else {
            who
        };
        let spent = map.entry((key, who.to_string())).or_insert(Spent {
            window_start: now,
            reported: 0,
            counted: None,
        });
        if now.duration_since(spent.window_start) >= WINDOW {
            spent.window_start = now;
            spent.reported = 0;
        }
        if spent.reported < PER_WINDOW {
            spent.reported += 1;
            return true;
        }
        let counted = spent.counted.get_or_insert(Counted {
            count: 0,
            first: at,
            last: at,
            reasons: Vec::new(),
        });
        counted.count += 1;
        counted.last = at;
        let reason = if counted.reasons.len() >= MAX_REASONS
            && !counted.reasons.iter().any(|(r, _)| r == reason)
        {
            "other"
        } else {
            reason
        };
        match counted.reasons.iter_mut().find(|(r, _)| r == reason) {
            Some((_, n)) => *n += 1,
            None => counted.reasons.push((reason.to_string(), 1)),
        }
        false
    }

    /// The counts not yet reported, taken out.
    pub fn take_counted(&self) -> Vec<RefusalCount> {
        let mut map = locks::lock(&self.spent);
        let out = map
            .iter_mut()
            .filter_map(|((key, who), spent)| {
                spent.counted.take().map(|c| RefusalCount {
                    user: (*key == Key::User).then(|| who.clone()),
                    client: (*key == Key::Source).then(|| who.clone()),
                    count: c.count,
                    first: c.first,
                    last: c.last,
                    reasons: c.reasons,
                })
            })
            .collect();
        // Keys whose window is over and that have nothing counted need no entry.
        map.retain(|_, s| s.counted.is_some() || s.window_start.elapsed() < WINDOW);
        out
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

/// Report that `who` was refused `channel` to `destination` for `reason` (a `Denial`'s
/// [`reason`](crate::session::Denial::reason), or `channel_limit`), having been told
/// `message`: on its own while the user is within the budget, else counted. Spooling can fail
/// only with the replica; that is logged, and the refusal stands.
pub(crate) async fn record(
    gw: &GatewayState,
    who: &Holder,
    channel: &str,
    destination: &str,
    reason: &str,
    message: &str,
) {
    let at = gw.now();
    if !gw
        .refusals()
        .admit(Key::User, &who.user, reason, at, Instant::now())
    {
        return;
    }
    let target = gw
        .catalog()
        .and_then(|c| named_target(&c, destination).map(str::to_string));
    let refusal = Refusal {
        at,
        user: who.user.clone(),
        client: who.client.clone(),
        fingerprint: who.fingerprint.clone(),
        channel: channel.to_string(),
        target,
        destination: capped(destination),
        reason: reason.to_string(),
        message: capped(message),
    };
    if let Err(e) = spool::submit(gw, &SessionReport::Refused(refusal)).await {
        tracing::error!("cannot record a refusal of {}: {e}", who.user);
    }
}

/// The configured target `destination` names (`NAME`, `NAME:PORT`, or its exact address),
/// whatever the port.
fn named_target<'a>(catalog: &'a portcullis_core::Catalog, destination: &str) -> Option<&'a str> {
    if let Some(t) = catalog.targets.get(destination) {
        return Some(&t.name);
    }
    let (host, port) = destination.rsplit_once(':')?;
    if let Some(t) = catalog.targets.get(host) {
        return Some(&t.name);
    }
    let port = port.parse::<u16>().ok()?;
    catalog
        .target_by_name_or_address(host, port)
        .map(|t| t.name.as_str())
}

/// Spool the refusals counted since the last call, one report per key.
pub(crate) async fn flush(gw: &GatewayState) {
    for count in gw.refusals().take_counted() {
        if let Err(e) = spool::submit(gw, &SessionReport::RefusedRepeatedly(count)).await {
            tracing::error!("cannot record counted refusals: {e}");
        }
    }
}

/// Spool counted refusals every [`FLUSH_EVERY`].
pub(crate) async fn run(gw: Arc<GatewayState>) {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        flush(&gw).await;
    }
}

/// Report that a connection from `peer` tried to log in and never did (`refusal`, the most
/// telling of its attempts): on its own while its source address is within the budget, else
/// counted. Called from the connection's drop, so the spooling runs on a task of its own;
/// only admitted refusals get one, at most [`PER_WINDOW`] per source and window.
pub(crate) fn login(
    gw: &std::sync::Arc<GatewayState>,
    peer: std::net::SocketAddr,
    refusal: &portcullis_ssh::login::Refusal,
) {
    let at = gw.now();
    let reason = refusal.reason.label();
    let source = peer.ip().to_canonical().to_string();
    if !gw
        .refusals()
        .admit(Key::Source, &source, reason, at, Instant::now())
    {
        return;
    }
    let report = SessionReport::Refused(Refusal {
        at,
        user: capped(&refusal.user),
        client: peer.to_string(),
        fingerprint: refusal.fingerprint.clone(),
        channel: "login".into(),
        target: None,
        destination: capped(&refusal.user),
        reason: reason.to_string(),
        message: capped(&refusal.reason.to_string()),
    });
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let gw = gw.clone();
    runtime.spawn(async move {
        if let Err(e) = spool::submit(&gw, &report).await {
            tracing::error!("cannot record a refused login from {peer}: {e}");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_budget_refusals_are_counted_by_reason_then_the_window_starts_over() {
        let b = Budget::default();
        let t0 = Instant::now();
        let reported = (0..25)
            .filter(|i| {
                let reason = if i % 2 == 0 {
                    "no_grant"
                } else {
                    "unknown_target"
                };
                b.admit(Key::User, "dave", reason, Timestamp(*i), t0)
            })
            .count();
        assert_eq!(reported, PER_WINDOW as usize);
        // Someone else has a budget of their own.
        assert!(b.admit(Key::User, "alice", "no_grant", Timestamp(0), t0));
        let counted = b.take_counted();
        assert_eq!(
            counted,
            vec![RefusalCount {
                user: Some("dave".into()),
                client: None,
                count: 15,
                first: Timestamp(10),
                last: Timestamp(24),
                reasons: vec![("no_grant".into(), 8), ("unknown_target".into(), 7)],
            }]
        );
        assert!(b.take_counted().is_empty(), "taken once");
        assert!(!b.admit(
            Key::User,
            "dave",
            "no_grant",
            Timestamp(30),
            t0 + WINDOW / 2
        ));
        assert!(b.admit(Key::User, "dave", "no_grant", Timestamp(31), t0 + WINDOW));
    }

    #[test]
    fn keys_and_reasons_are_bounded() {
        let b = Budget::default();
        let t0 = Instant::now();
        for i in 0..MAX_KEYS + 50 {
            b.admit(Key::Source, &format!("10.0.{i}"), "r", Timestamp(0), t0);
        }
        assert_eq!(
            locks::lock(&b.spent).len(),
            MAX_KEYS + 1,
            "the rest share one"
        );
        let b = Budget::default();
        for i in 0..(PER_WINDOW as usize + MAX_REASONS + 10) {
            b.admit(Key::User, "eve", &format!("r{i}"), Timestamp(0), t0);
        }
        let counted = b.take_counted();
        let eve = counted
            .iter()
            .find(|c| c.user.as_deref() == Some("eve"))
            .unwrap();
        assert_eq!(eve.reasons.len(), MAX_REASONS + 1);
        assert_eq!(eve.reasons.iter().map(|(_, n)| n).sum::<u64>(), eve.count);
        assert!(eve.reasons.iter().any(|(r, _)| r == "other"));
    }

    #[test]
    fn long_texts_are_cut_on_a_character() {
        let long = "é".repeat(MAX_TEXT);
        let cut = capped(&long);
        assert!(cut.len() <= MAX_TEXT + "…".len());
        assert!(cut.ends_with('…'));
        assert_eq!(capped("short"), "short");
    }
}
