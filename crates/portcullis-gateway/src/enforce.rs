//! Enforcement: every live session is bound to a grant. One timer for the earliest end among
//! the grants sessions rest on; the stream wakes it when a revocation moves an end earlier.
//! At an end, a session moves to another live grant for the same user and target, or is cut.

use std::sync::Arc;

use portcullis_core::config::FailMode;
use portcullis_core::model::SessionReport;
use portcullis_core::Timestamp;
use tokio::time::Instant;

use crate::session::EndReason;
use crate::state::{GatewayState, LiveEntry};

pub(crate) async fn run(gw: Arc<GatewayState>) {
    loop {
        match next_end(&gw) {
            None => gw.enforcer_woken().await,
            Some(at) => {
                let now = gw.now();
                if at > now {
                    let sleep = tokio::time::sleep_until(Instant::now() + precise_until(now, at));
                    tokio::select! {
                        _ = sleep => {}
                        _ = gw.enforcer_woken() => {}
                    }
                }
            }
        }
        sweep(&gw);
    }
}

/// How long from now until `at`, to better than the clock's millisecond: `now` is truncated to
/// the millisecond, so the part of the current millisecond already gone is taken off (else a cut
/// could come up to a millisecond late, before the timer's own rounding up).
fn precise_until(now: Timestamp, at: Timestamp) -> std::time::Duration {
    let whole = now.until(at);
    let gone = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| std::time::Duration::from_nanos(u64::from(d.subsec_nanos() % 1_000_000)))
        .unwrap_or_default();
    // Never down to zero: with a clock that is not the wall clock (tests), the sweep would spin.
    whole
        .checked_sub(gone)
        .filter(|d| !d.is_zero())
        .unwrap_or(whole)
}

/// The earliest end among the grants live sessions rest on.
fn next_end(gw: &GatewayState) -> Option<Timestamp> {
    let sessions = gw.live_sessions();
    sessions
        .iter()
        .filter(|(_, s)| !s.is_cut())
        .map(|(_, s)| {
            gw.grant(s.user(), s.grant())
                .map(|g| g.ends_at())
                .unwrap_or(Timestamp(0))
        })
        .min()
}

/// What the sweep found for one session.
enum Verdict {
    /// Its grant ended and another live grant covers it: it goes on under that one.
    Moved { note: String, report: SessionReport },
    /// It was cut; `late` is how long after its grant's end (or revocation's arrival).
    Cut {
        note: String,
        reason: EndReason,
        late: Option<std::time::Duration>,
    },
}

/// Rebind or cut every session whose grant has ended. Every cut is signalled before anything
/// is logged: in a burst (many sessions on one grant), the log lines would otherwise delay the
/// last cut by the time it takes to write all the others'.
fn sweep(gw: &Arc<GatewayState>) {
    let now = gw.now();
    let catalog = gw.catalog();
    let verdicts: Vec<Verdict> = {
        let mut sessions = gw.live_sessions();
        sessions
            .iter_mut()
            .filter(|(_, s)| !s.is_cut())
            .filter_map(|(id, s)| judge(gw, now, catalog.as_deref(), id, s))
            .collect()
    };
    let mut moves: Vec<SessionReport> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    for verdict in verdicts {
        match verdict {
            Verdict::Moved { note, report } => {
                notes.push(note);
                moves.push(report);
            }
            Verdict::Cut { note, reason, late } => {
                notes.push(note);
                gw.metrics().cut(&reason);
                if let Some(late) = late {
                    gw.metrics().cut_delay(late);
                }
            }
        }
    }
    if !notes.is_empty() {
        // Grants ended here: the clock must never again read earlier than this.
        gw.keep_clock_floor(None);
    }
    for note in notes {
        tracing::info!("{note}");
    }
    if !moves.is_empty() {
        // A session moving to another grant is an audit event; the sweep itself must not wait
        // on the spool's disk.
        let gw = gw.clone();
        tokio::spawn(async move {
            for report in moves {
                if let Err(e) = crate::spool::submit(&gw, &report).await {
                    tracing::error!("cannot record a session's move to another grant: {e}");
                }
            }
        });
    }
    gw.prune_grants(now);
}

/// One live session at `now`: cut if its user or key left the catalog, moved to another grant
/// or cut if its grant has ended, left alone otherwise (`None`). The cut is signalled here,
/// with the table held; what to log and count is returned.
fn judge(
    gw: &GatewayState,
    now: Timestamp,
    catalog: Option<&portcullis_core::Catalog>,
    id: &str,
    s: &mut LiveEntry,
) -> Option<Verdict> {
    // Deprovisioning takes effect on live sessions too, not only on new ones.
    if !catalog.is_some_and(|c| crate::session::still_valid(c, s.user(), s.key())) {
        s.cut(EndReason::Deprovisioned);
        return Some(Verdict::Cut {
            note: format!(
                "session {id}: {} or their key left the catalog; cut",
                s.user()
            ),
            reason: EndReason::Deprovisioned,
            late: None,
        });
    }
    let current = gw.grant(s.user(), s.grant());
    if current.as_ref().is_some_and(|g| g.is_active(now)) {
        return None;
    }
    if let Some(next) = gw.active_grant(s.user(), s.target()) {
        let from = s.grant();
        s.rebind(next.id);
        return Some(Verdict::Moved {
            note: format!(
                "session {id}: grant {from} ended; continuing under grant {}",
                next.id
            ),
            report: SessionReport::Regranted {
                session: id.to_string(),
                from,
                to: next.id,
                at: now,
            },
        });
    }
    let expires = current.as_ref().map(|g| g.expires_at);
    let reason = why_ended(gw, current, s.grant());
    s.cut(reason.clone());
    let late = match (&reason, expires) {
        (EndReason::Revoked, _) => gw
            .metrics()
            .since_revocation(s.grant(), std::time::Instant::now()),
        (EndReason::Expired, Some(at)) => {
            Some(crate::metrics::late_by(at, std::time::SystemTime::now()))
        }
        _ => None,
    };
    Some(Verdict::Cut {
        note: format!("session {id}: grant {} {}; cut", s.grant(), reason.as_str()),
        reason,
        late,
    })
}

/// Why a session's grant ended: revoked, expired, or withdrawn. A grant already pruned from
/// memory (a session can be put on the books under a grant that ends a moment later) is looked
/// up in the replica, so that the sweep never forgets that a grant was revoked.
fn why_ended(
    gw: &GatewayState,
    known: Option<portcullis_core::model::Grant>,
    id: u64,
) -> EndReason {
    let grant = known.or_else(|| {
        gw.replica()
            .grant(id)
            .ok()
            .flatten()
            .and_then(|signed| signed.verify_any(gw.signing()).ok())
    });
    match grant {
        Some(g) if g.revoked.is_some() => EndReason::Revoked,
        Some(_) => EndReason::Expired,
        // Neither in memory nor in the replica: a snapshot replaced the replica without it.
        None => EndReason::Withdrawn,
    }
}

/// `fail_mode = "closed"`: once the approver link has been down longer than `fail_after`,
/// cut every session and refuse new ones until it is back. (The default, "open-until-expiry",
/// enforces the signed grants the replica holds to their end.)
///
/// The deadline counts from the moment the link was first lost (or from start, if it never
/// came up), not from the latest notification: every failed reconnect says "down" again, and
/// with reconnects at most a few seconds apart a deadline restarted on each would never run out.
pub(crate) async fn fail_closed(gw: Arc<GatewayState>) {
    if gw.settings().fail_mode != FailMode::Closed {
        return;
    }
    let mut link = gw.link().watch();
    let mut down_since: Option<Instant> = None;
    loop {
        if *link.borrow_and_update() {
            down_since = None;
            if gw.reopen() {
                tracing::info!("approver link back: the gateway opens again");
            }
            if link.changed().await.is_err() {
                return;
            }
            continue;
        }
        let since = *down_since.get_or_insert_with(Instant::now);
        if gw.has_failed_closed() {
            if link.changed().await.is_err() {
                return;
            }
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(since + gw.settings().fail_after) => {
                tracing::warn!(
                    "approver unreachable for {:?}: failing closed, cutting every session",
                    gw.settings().fail_after
                );
                gw.fail_closed();
            }
            r = link.changed() => {
                if r.is_err() {
                    return;
                }
            }
        }
    }
}

/// Record the clock's progress every second, so that after a restart with the wall clock
/// stepped back no grant that had ended comes back to life (see `state::open`).
pub(crate) async fn keep_clock_floor(gw: Arc<GatewayState>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        gw.keep_clock_floor(None);
    }
}
