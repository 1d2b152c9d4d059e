//! Sessions as the gateways reported them: `sessions`, `audit sessions`, `kill`.

use portcullis_core::model::SessionRecord;
use portcullis_core::Timestamp;
use serde_json::{json, Value};

use super::words::{bytes, duration, table};
use super::{clean, more_line, out, Reply};

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

/// A session in a listing, and whether its recording is kept here (`audit replay` and
/// `audit export` can play it).
pub struct Listed {
    pub session: SessionRecord,
    pub recorded: bool,
}

const HEADER: [&str; 11] = [
    "SESSION", "USER", "TARGET", "GRANT", "STARTED", "STATE", "DURATION", "IN", "OUT", "REC",
    "CHANNEL",
];

/// One row of a session listing. Every string here came from a gateway's report, and
/// `channel` holds the command a user ran: escaped for the terminal (the `--json` form keeps
/// them exact).
fn row(l: &Listed, now: Timestamp) -> [String; 11] {
    let s = &l.session;
    let (state, lasted, bytes_in, bytes_out) = match &s.end {
        None => (
            "live".to_string(),
            s.started_at.until(now),
            "-".to_string(),
            "-".to_string(),
        ),
        Some(e) => (
            clean(&e.reason).into_owned(),
            e.duration,
            bytes(e.bytes_in),
            bytes(e.bytes_out),
        ),
    };
    [
        clean(&s.id).into_owned(),
        clean(&s.user).into_owned(),
        clean(&s.target).into_owned(),
        s.grant.to_string(),
        s.started_at.to_string(),
        state,
        duration(lasted),
        bytes_in,
        bytes_out,
        if l.recorded { "*" } else { "" }.to_string(),
        clean(&s.channel).into_owned(),
    ]
}

/// `sessions` and `audit sessions`: `list` oldest first (by start), after `more` older ones
/// left out. A header, then one row each under fixed columns; `REC` marks a recording kept
/// here.
pub fn list(
    list: &[Listed],
    more: usize,
    limit: u64,
    empty: &str,
    now: Timestamp,
    json: bool,
) -> Reply {
    let value = json!({
        "sessions": list.iter().map(|l| {
            let mut v = session_json(&l.session);
            v["recorded"] = json!(l.recorded);
            v
        }).collect::<Vec<_>>(),
        "more": more,
    });
    let mut text = if list.is_empty() && more == 0 {
        format!("{empty}\n")
    } else {
        let rows: Vec<_> = list.iter().map(|l| row(l, now)).collect();
        table(HEADER, &rows)
    };
    if more > 0 {
        text.push_str(&more_line(more, limit));
    }
    out(json, value, text)
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use portcullis_core::model::SessionEnd;

    use super::*;

    fn session(id: &str, user: &str, channel: &str, end: Option<SessionEnd>) -> SessionRecord {
        SessionRecord {
            id: id.into(),
            gateway: "gw-1".into(),
            user: user.into(),
            target: "web-1".into(),
            grant: 17,
            client: "127.0.0.1:1".into(),
            fingerprint: "SHA256:x".into(),
            channel: channel.into(),
            started_at: Timestamp(1_800_000_000_000),
            end,
        }
    }

    #[test]
    fn a_listing_reads_as_a_table() {
        let ended = SessionEnd {
            at: Timestamp(1_800_000_090_000),
            bytes_in: 2048,
            bytes_out: 12,
            duration: Duration::from_secs(90),
            reason: "closed".into(),
            exit_status: Some(0),
            recording: Some(("00".into(), 3)),
        };
        let list = [
            Listed {
                session: session("gw-1-ab-1", "alice", "pty shell", Some(ended)),
                recorded: true,
            },
            Listed {
                session: session("gw-1-ab-10", "bob", "exec \u{1b}[2J", None),
                recorded: false,
            },
        ];
        let now = Timestamp(1_800_000_600_000);
        let text = list_text(&list, now);
        assert_eq!(
            text,
            "SESSION     USER   TARGET  GRANT  STARTED               STATE   DURATION  IN       OUT   REC  CHANNEL\n\
             gw-1-ab-1   alice  web-1   17     2027-01-15T08:00:00Z  closed  1m 30s    2.0 KiB  12 B  *    pty shell\n\
             gw-1-ab-10  bob    web-1   17     2027-01-15T08:00:00Z  live    10m       -        -          exec \\x1b[2J\n"
        );
    }

    fn list_text(list: &[Listed], now: Timestamp) -> String {
        super::list(list, 0, 1000, "no sessions", now, false).out
    }
}
