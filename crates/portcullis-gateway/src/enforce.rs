//! Enforcement: every live session is bound to a grant. One timer for the earliest end among
//! the grants sessions rest on; the stream wakes it when a revocation moves an end earlier.
//! At an end, a session moves to another live grant for the same user and target, or is cut.

use std::sync::Arc;

use portcullis_core::Timestamp;
use tokio::time::Instant;

use crate::state::{EndReason, Gateway};

pub(crate) async fn run(gw: Arc<Gateway>) {
    loop {
        match next_end(&gw) {
            None => gw.enforce_wake.notified().await,
            Some(at) => {
                let now = gw.now();
                if at > now {
                    let sleep = tokio::time::sleep_until(Instant::now() + now.until(at));
                    tokio::select! {
                        _ = sleep => {}
                        _ = gw.enforce_wake.notified() => {}
                    }
                }
            }
        }
        sweep(&gw);
    }
}

/// The earliest end among the grants live sessions rest on.
fn next_end(gw: &Gateway) -> Option<Timestamp> {
    let sessions = gw.sessions();
    sessions
        .live
        .values()
        .filter(|s| s.cut.borrow().is_none())
        .map(|s| {
            gw.grant(&s.user, s.grant)
                .map(|g| g.ends_at())
                .unwrap_or(Timestamp(0))
        })
        .min()
}

/// Rebind or cut every session whose grant has ended.
fn sweep(gw: &Gateway) {
    let now = gw.now();
    let mut sessions = gw.sessions();
    let catalog = gw.catalog();
    for (id, s) in sessions.live.iter_mut() {
        if s.cut.borrow().is_some() {
            continue;
        }
        // Deprovisioning takes effect on live sessions too, not only on new ones.
        if !catalog
            .as_ref()
            .is_some_and(|c| crate::server::still_valid(c, &s.user, &s.key))
        {
            tracing::info!(
                "session {id}: {} or their key left the catalog; cutting",
                s.user
            );
            s.cut.send_replace(Some(EndReason::Deprovisioned));
            continue;
        }
        let current = gw.grant(&s.user, s.grant);
        if current.as_ref().is_some_and(|g| g.is_active(now)) {
            continue;
        }
        match gw.active_grant(&s.user, &s.target) {
            Some(next) => {
                tracing::info!(
                    "session {id}: grant {} ended; continuing under grant {}",
                    s.grant,
                    next.id
                );
                s.grant = next.id;
            }
            None => {
                let reason = match current {
                    Some(g) if g.revoked.is_some() => EndReason::Revoked,
                    _ => EndReason::Expired,
                };
                tracing::info!(
                    "session {id}: grant {} {}; cutting",
                    s.grant,
                    reason.as_str()
                );
                s.cut.send_replace(Some(reason));
            }
        }
    }
    drop(sessions);
    if let Ok(mut v) = gw.view.write() {
        v.grants.prune(now);
    }
}

/// An admin's kill: cut the session if it is here.
pub(crate) fn kill(gw: &Gateway, session: &str) {
    {
        let sessions = gw.sessions();
        if let Some(s) = sessions.live.get(session) {
            tracing::info!("session {session}: killed by an admin");
            s.cut.send_replace(Some(EndReason::Killed));
        }
    }
}

/// `fail_mode = "closed"`: once the approver link has been down longer than `fail_after`,
/// cut every session and refuse new ones until it is back. (The default, "open-until-expiry",
/// enforces the signed grants the replica holds to their end.)
pub(crate) async fn fail_closed(gw: Arc<Gateway>) {
    use std::sync::atomic::Ordering;
    if !gw.settings.fail_closed {
        return;
    }
    let mut link = gw.link.subscribe();
    loop {
        if link.borrow_and_update().is_some() {
            if gw.failed_closed.swap(false, Ordering::SeqCst) {
                tracing::info!("approver link back: the gateway opens again");
            }
            if link.changed().await.is_err() {
                return;
            }
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(gw.settings.fail_after) => {
                tracing::warn!(
                    "approver unreachable for {:?}: failing closed, cutting every session",
                    gw.settings.fail_after
                );
                gw.failed_closed.store(true, Ordering::SeqCst);
                for s in gw.sessions().live.values() {
                    s.cut.send_replace(Some(EndReason::FailedClosed));
                }
                if link.changed().await.is_err() {
                    return;
                }
            }
            r = link.changed() => {
                if r.is_err() {
                    return;
                }
            }
        }
    }
}
