//! Sessions as the gateways reported them: `sessions`, `audit sessions`, `kill`.

use portcullis_core::model::SessionRecord;
use portcullis_core::time::format_duration;
use serde_json::{json, Value};

use super::{clean, listing, newest, out, Reply};

/// A session as JSON: the same in every reply that holds one.
pub fn session_json(s: &SessionRecord) -> Value {
    json!({
        "id": s.id,
        "gateway": s.gateway,
        "user": s.user,
        "target": s.target,
        "grant": s.grant,
        "client": s.client,
        "fingerprint": s.fingerprint,
        "channel": s.channel,
        "started_at": s.started_at.rfc3339(),
        "live": s.end.is_none(),
        "ended_at": s.end.as_ref().map(|e| e.at.rfc3339()),
        "end_reason": s.end.as_ref().map(|e| e.reason.clone()),
        "bytes_in": s.end.as_ref().map(|e| e.bytes_in),
        "bytes_out": s.end.as_ref().map(|e| e.bytes_out),
    })
}

/// One line of a session listing.
pub fn session_line(s: &SessionRecord) -> String {
    let state = match &s.end {
        None => "live".to_string(),
        Some(e) => format!(
            "ended {} ({}, {} in, {} out, {})",
            e.at,
            e.reason,
            e.bytes_in,
            e.bytes_out,
            format_duration(e.duration)
        ),
    };
    // Every string here came from a gateway's report, and `channel` holds the command a user
    // ran: escaped for the terminal (the `--json` form keeps them exact).
    format!(
        "{:<12} {:<10} {:<16} grant {:<5} {:<12} since {}  {}",
        clean(&s.id),
        clean(&s.user),
        clean(&s.target),
        s.grant,
        clean(&s.channel),
        s.started_at,
        clean(&state)
    )
}

/// `sessions` and `audit sessions`: the newest `limit` by start, oldest first.
pub fn list(mut list: Vec<SessionRecord>, limit: u64, empty: &str, json: bool) -> Reply {
    list.sort_by_key(|s| s.started_at);
    let (list, more) = newest(list, limit);
    let value = json!({
        "sessions": list.iter().map(session_json).collect::<Vec<_>>(),
        "more": more,
    });
    let lines = list.iter().map(session_line);
    out(json, value, listing(lines, more, limit, empty))
}

/// `kill`: the session being cut, and by which gateway.
pub fn killed(s: &SessionRecord, json: bool) -> Reply {
    out(
        json,
        session_json(s),
        format!(
            "session {} ({} on {}) is being cut by gateway {}\n",
            clean(&s.id),
            clean(&s.user),
            clean(&s.target),
            clean(&s.gateway)
        ),
    )
}
