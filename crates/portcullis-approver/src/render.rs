//! How requests and grants read, for people and as JSON.
//!
//! Text meant for a terminal goes through [`clean`]: users choose reasons, notes, and the
//! commands their sessions run, and an admin's terminal must not obey escape sequences hidden
//! in them. JSON keeps every string exact (its encoding escapes control characters already).

use std::borrow::Cow;
use std::fmt::Write as _;

use portcullis_core::model::{Grant, Request, RequestState};
use portcullis_core::time::format_duration;
use portcullis_core::Timestamp;
use serde_json::{json, Value};

/// Whether a terminal could take `c` as part of a control sequence, a line break, or a
/// reordering of the text around it: C0, DEL, C1, the Unicode line and paragraph separators,
/// and the bidirectional overrides and isolates ("Trojan Source", CVE-2021-42574).
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` fit for a terminal: each unsafe character written as an escape (`\n`, `\t`, `\r`,
/// `\x1b` below 0x80, `\u{9b}` above), the rest unchanged. Borrowed when nothing needs it.
pub fn clean(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe(c) && (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Keep the newest `limit` of `list` (the last ones, in the order given); how many were left
/// out.
pub fn newest<T>(mut list: Vec<T>, limit: u64) -> (Vec<T>, usize) {
    let keep = usize::try_from(limit).unwrap_or(usize::MAX);
    let more = list.len().saturating_sub(keep);
    list.drain(..more);
    (list, more)
}

/// The last line of a capped listing.
pub fn more_line(more: usize, limit: u64) -> String {
    format!("… {more} more not shown: the newest {limit} are listed (--limit N for more)\n")
}

/// A listing's text: its lines (each already [`clean`]), `empty` if there are none, and the
/// [`more_line`] if some were left out.
pub fn listing(
    lines: impl Iterator<Item = String>,
    more: usize,
    limit: u64,
    empty: &str,
) -> String {
    let mut text = String::new();
    for line in lines {
        text.push_str(&line);
        text.push('\n');
    }
    if text.is_empty() && more == 0 {
        text.push_str(empty);
        text.push('\n');
    }
    if more > 0 {
        text.push_str(&more_line(more, limit));
    }
    text
}

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
            Some(n) => format!("denied by {by}: {}", clean(n)),
            None => format!("denied by {by}"),
        },
        RequestState::Expired => "expired undecided".to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_escapes_control_characters_and_keeps_the_rest() {
        assert!(matches!(
            clean("INC-42 disk full: ünïcode ✓"),
            Cow::Borrowed(_)
        ));
        assert_eq!(clean("a\u{1b}[2Jb"), "a\\x1b[2Jb");
        assert_eq!(clean("one\ntwo\r\tthree"), "one\\ntwo\\r\\tthree");
        assert_eq!(clean("\u{0}\u{7}\u{7f}"), "\\x00\\x07\\x7f");
        // C1: CSI as one character, and NEL.
        assert_eq!(clean("\u{9b}31m\u{85}"), "\\u{9b}31m\\u{85}");
        // Bidirectional overrides and line separators.
        assert_eq!(
            clean("x\u{202e}y\u{2066}z\u{2028}"),
            "x\\u{202e}y\\u{2066}z\\u{2028}"
        );
        // Whatever goes in, nothing a terminal acts on comes out.
        let all: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        assert!(!clean(&all).chars().any(is_unsafe));
    }

    #[test]
    fn newest_keeps_the_last_and_counts_the_rest() {
        assert_eq!(newest(vec![1, 2, 3, 4, 5], 2), (vec![4, 5], 3));
        assert_eq!(newest(vec![1, 2], 5), (vec![1, 2], 0));
        assert!(more_line(3, 2).contains("3 more not shown"));
    }
}
