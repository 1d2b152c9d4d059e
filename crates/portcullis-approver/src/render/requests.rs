//! Requests: listed, created, decided, waited on.

use std::time::Duration;

use portcullis_core::model::{Grant, Request, RequestState};
use portcullis_core::Timestamp;
use serde_json::{json, Value};

use super::words::{count, duration};
use super::{clean, grant_json, listing, newest, out, Reply};

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
        "cancel_reason": match &r.state { RequestState::Cancelled { reason } => json!(reason), _ => Value::Null },
        "decided_at": r.decided_at.map(|t| t.rfc3339()),
    })
}

/// One line of `requests`.
pub fn request_line(r: &Request, now: Timestamp) -> String {
    let state = match &r.state {
        RequestState::Pending => format!(
            "pending, {}/{}, lapses in {}",
            r.approvals.len(),
            count(r.needed.into(), "approval", "approvals"),
            duration(now.until(r.expires_at))
        ),
        RequestState::Approved { grant } => format!("approved → grant {grant}"),
        RequestState::Denied { by, note } => match note {
            Some(n) => format!("denied by {by}: {}", clean(n)),
            None => format!("denied by {by}"),
        },
        RequestState::Expired => "expired undecided".to_string(),
        RequestState::Cancelled { reason } => format!("cancelled by requester{}", because(reason)),
    };
    let reason = r
        .reason
        .as_ref()
        .map(|x| format!(" reason=\"{}\"", clean(x)))
        .unwrap_or_default();
    format!(
        "{:>5}  {:<10} {:<16} {:<8} {}{}",
        r.id,
        clean(&r.user),
        clean(&r.target),
        duration(r.duration),
        state,
        reason
    )
}

/// `requests`: `list` (oldest first), the newest `limit` of it.
pub fn list(list: Vec<Request>, all: bool, limit: u64, now: Timestamp, json: bool) -> Reply {
    let (list, more) = newest(list, limit);
    let value = json!({
        "requests": list.iter().map(|r| request_json(r, now)).collect::<Vec<_>>(),
        "more": more,
    });
    let empty = if all {
        "no requests"
    } else {
        "no pending requests"
    };
    let lines = list.iter().map(|r| request_line(r, now));
    out(json, value, listing(lines, more, limit, empty))
}

/// `request`: approved at once by policy (with its grant), or pending until `approvers`
/// decide or `ttl` passes. `reach` starts the `wait` line suggested (`ssh -p 2222
/// alice@bastion`); without it the line is the command alone.
pub fn created(
    req: &Request,
    grant: Option<&Grant>,
    approvers: &str,
    ttl: Duration,
    reach: Option<&str>,
    now: Timestamp,
    json: bool,
) -> Reply {
    let value = json!({
        "request": request_json(req, now),
        "grant": grant.map(|g| grant_json(g, now)),
    });
    let text = match grant {
        Some(g) => format!(
            "request {} approved by policy {:?}: grant {} on {} for {}, until {}\n",
            req.id,
            req.policy,
            g.id,
            g.target,
            duration(req.duration),
            g.expires_at
        ),
        None => format!(
            "request {} is pending: policy {:?} needs {} from {approvers}; it lapses in {} if undecided.\nwait for the decision: {}wait {}\n",
            req.id,
            req.policy,
            count(req.needed.into(), "approval", "approvals"),
            duration(ttl),
            reach.map(|r| format!("{} ", clean(r))).unwrap_or_default(),
            req.id
        ),
    };
    out(json, value, text)
}

/// What an `approve` or a `deny` came to.
pub enum Decision<'a> {
    Denied,
    /// Counted (or counted before: `repeated`), with the grant if the count is met.
    Approved {
        repeated: bool,
        counted: usize,
        grant: Option<&'a Grant>,
    },
}

/// `approve` and `deny`.
pub fn decided(req: &Request, decision: Decision<'_>, now: Timestamp, json: bool) -> Reply {
    let (grant, repeated, counted, text) = match decision {
        Decision::Denied => (None, false, 0, format!("request {} denied\n", req.id)),
        Decision::Approved {
            repeated,
            counted,
            grant,
        } => {
            let text = match (grant, repeated) {
                (Some(g), _) => format!(
                    "request {} approved: grant {} for {} on {} until {}\n",
                    req.id, g.id, g.user, g.target, g.expires_at
                ),
                (None, true) => format!(
                    "your approval of request {} was already counted ({counted} of {})\n",
                    req.id, req.needed
                ),
                (None, false) => format!(
                    "approval recorded: request {} has {counted} of {}\n",
                    req.id,
                    count(req.needed.into(), "approval", "approvals")
                ),
            };
            (grant, repeated, counted, text)
        }
    };
    let value = json!({
        "request": request_json(req, now),
        "grant": grant.map(|g| grant_json(g, now)),
        "already_counted": repeated,
        "approvals_counted": counted,
    });
    out(json, value, text)
}

/// `wait`, once the request is decided (or expired): exit 0 only when approved. `until` is
/// the end of the grant it was approved with, where that grant could be read.
pub fn waited(req: &Request, until: Option<Timestamp>, now: Timestamp, json: bool) -> Reply {
    let id = req.id;
    let (text, code) = match &req.state {
        RequestState::Approved { grant } => {
            let until = until.map(|t| format!(" until {t}")).unwrap_or_default();
            (format!("request {id} approved: grant {grant}{until}\n"), 0)
        }
        RequestState::Denied { by, note } => (
            format!(
                "request {id} denied by {}{}\n",
                clean(by),
                note.as_ref()
                    .map(|n| format!(": {}", clean(n)))
                    .unwrap_or_default()
            ),
            1,
        ),
        RequestState::Pending => (format!("request {id} is still pending\n"), 1),
        RequestState::Expired => (format!("request {id} expired undecided\n"), 1),
        RequestState::Cancelled { reason } => (
            format!(
                "request {id} was cancelled by its requester{}\n",
                because(reason)
            ),
            1,
        ),
    };
    let mut r = out(json, request_json(req, now), text);
    r.code = code;
    r
}

/// `cancel`: the request withdrawn.
pub fn cancelled(req: &Request, now: Timestamp, json: bool) -> Reply {
    out(
        json,
        json!({"request": request_json(req, now)}),
        format!(
            "request {} cancelled: {} is no longer asked for; anyone waiting on it is told\n",
            req.id,
            clean(&req.target)
        ),
    )
}

/// `: REASON` (escaped), or nothing.
fn because(reason: &Option<String>) -> String {
    reason
        .as_ref()
        .map(|x| format!(": {}", clean(x)))
        .unwrap_or_default()
}
