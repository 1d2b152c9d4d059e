//! How requests and grants read, for people and as JSON.

use portcullis_core::model::{Grant, Request, RequestState};
use portcullis_core::time::format_duration;
use portcullis_core::Timestamp;
use serde_json::{json, Value};

pub fn request_json(r: &Request, now: Timestamp) -> Value {
    json!({
        "id": r.id,
        "user": r.user,
        "target": r.target,
        "policy": r.policy,
        "state": r.state.as_str(),
        "duration_secs": r.duration.as_secs(),
        "reason": r.reason,
        "created_at": r.created_at.rfc3339(),
        "expires_at": r.expires_at.rfc3339(),
        "expires_in_secs": now.until(r.expires_at).as_secs(),
        "approvals": r.approvals.iter().map(|a| json!({"by": a.by, "at": a.at.rfc3339(), "note": a.note})).collect::<Vec<_>>(),
        "needed": r.needed,
        "grant": match &r.state { RequestState::Approved { grant } => json!(grant), _ => Value::Null },
        "denied_by": match &r.state { RequestState::Denied { by, .. } => json!(by), _ => Value::Null },
        "decided_at": r.decided_at.map(|t| t.rfc3339()),
    })
}

pub fn request_line(r: &Request, now: Timestamp) -> String {
    let state = match &r.state {
        RequestState::Pending => format!(
            "pending, {}/{} approvals, lapses in {}",
            r.approvals.len(),
            r.needed,
            format_duration(now.until(r.expires_at))
        ),
        RequestState::Approved { grant } => format!("approved → grant {grant}"),
        RequestState::Denied { by, note } => match note {
            Some(n) => format!("denied by {by}: {n}"),
            None => format!("denied by {by}"),
        },
        RequestState::Expired => "expired undecided".to_string(),
    };
    let reason = r
        .reason
        .as_ref()
        .map(|x| format!(" reason={x:?}"))
        .unwrap_or_default();
    format!(
        "{:>5}  {:<10} {:<16} {:<8} {}{}",
        r.id,
        r.user,
        r.target,
        format_duration(r.duration),
        state,
        reason
    )
}

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

pub fn grant_line(g: &Grant, now: Timestamp) -> String {
    let status = g.status(now);
    let when = match status {
        portcullis_core::model::GrantStatus::Active => {
            format!(
                "{} left (until {})",
                format_duration(g.remaining(now)),
                g.expires_at
            )
        }
        portcullis_core::model::GrantStatus::Expired => format!("expired {}", g.expires_at),
        portcullis_core::model::GrantStatus::Revoked => match &g.revoked {
            Some(r) => format!("revoked {} by {}", r.at, r.by),
            None => "revoked".into(),
        },
    };
    format!(
        "{:>5}  {:<10} {:<16} {:<8} {}",
        g.id,
        g.user,
        g.target,
        status.as_str(),
        when
    )
}
