//! Grants: listed, revoked.

use portcullis_core::model::{Grant, GrantStatus};
use portcullis_core::Timestamp;
use serde_json::{json, Value};

use super::words::duration;
use super::{clean, listing, newest, out, Reply};

pub fn grant_json(g: &Grant, now: Timestamp) -> Value {
    json!({
        "id": g.id,
        "request": g.request,
        "user": g.user,
        "target": g.target,
        "policy": g.policy,
        "status": g.status(now).as_str(),
        "issued_at": g.issued_at.rfc3339(),
        "expires_at": g.expires_at.rfc3339(),
        "expires_at_ms": g.expires_at.0,
        "remaining_secs": g.remaining(now).as_secs(),
        "approvers": g.approvers,
        "revoked_at": g.revoked.as_ref().map(|r| r.at.rfc3339()),
        "revoked_by": g.revoked.as_ref().map(|r| r.by.clone()),
        "revoke_reason": g.revoked.as_ref().and_then(|r| r.reason.clone()),
    })
}

/// One line of `grants`.
pub fn grant_line(g: &Grant, now: Timestamp) -> String {
    let status = g.status(now);
    let when = match status {
        GrantStatus::Active => {
            format!(
                "{} left (until {})",
                duration(g.remaining(now)),
                g.expires_at
            )
        }
        GrantStatus::Expired => format!("expired {}", g.expires_at),
        GrantStatus::Revoked => match &g.revoked {
            Some(r) => format!("revoked {} by {}", r.at, clean(&r.by)),
            None => "revoked".into(),
        },
    };
    format!(
        "{:>5}  {:<10} {:<16} {:<8} {}",
        g.id,
        clean(&g.user),
        clean(&g.target),
        status.as_str(),
        when
    )
}

/// `grants`: `list` (oldest first), the newest `limit` of it.
pub fn list(list: Vec<Grant>, limit: u64, now: Timestamp, json: bool) -> Reply {
    let (list, more) = newest(list, limit);
    let value = json!({
        "grants": list.iter().map(|g| grant_json(g, now)).collect::<Vec<_>>(),
        "more": more,
    });
    let lines = list.iter().map(|g| grant_line(g, now));
    out(json, value, listing(lines, more, limit, "no grants"))
}

/// `revoke`.
pub fn revoked(grant: &Grant, now: Timestamp, json: bool) -> Reply {
    out(
        json,
        grant_json(grant, now),
        format!(
            "grant {} revoked: {} no longer has {}; sessions on it are cut\n",
            grant.id,
            clean(&grant.user),
            clean(&grant.target)
        ),
    )
}
