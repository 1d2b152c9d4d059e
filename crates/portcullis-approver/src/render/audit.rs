//! The audit trail and the daemon's own answers: `audit log`, `audit verify`, `reload`, and
//! the acknowledgement of a gateway's reports.

use std::fmt::Display;

use portcullis_audit::AuditRecord;
use portcullis_core::Timestamp;
use serde_json::json;

use super::words::count;
use super::{clean, more_line, out, Reply};

/// One event of `audit log`: a JSON line with `--json`, else `seq  time  summary`. A record
/// that does not decode is listed as such, not skipped.
pub fn log_line(seq: u64, record: Result<&AuditRecord, &dyn Display>, json: bool) -> String {
    match record {
        Ok(r) if json => r.to_json().to_string(),
        Ok(r) => format!("{:>6}  {}  {}", r.seq, r.at, clean(&r.event.summary())),
        Err(e) if json => json!({"seq": seq, "error": e.to_string()}).to_string(),
        Err(e) => format!("{seq:>6}  <unreadable record: {}>", clean(&e.to_string())),
    }
}

/// `audit log`: its lines, and how many older ones were left out. With `--json` the note
/// that more exist goes to stderr, so that stdout stays JSON Lines.
pub fn log(lines: impl IntoIterator<Item = String>, more: usize, limit: u64, json: bool) -> Reply {
    let mut text = String::new();
    for line in lines {
        text.push_str(&line);
        text.push('\n');
    }
    let note = (more > 0).then(|| more_line(more, limit));
    match note {
        Some(n) if json => Reply {
            out: text,
            err: n,
            code: 0,
        },
        Some(n) => Reply::text(text + &n),
        None => Reply::text(text),
    }
}

/// What `audit verify` found intact.
pub struct Verified {
    pub records: u64,
    /// The last record's hash.
    pub head: [u8; 32],
    /// When the head the log ends at was signed; `None` for a store from before signed heads.
    pub signed_at: Option<Timestamp>,
    /// Recordings that match the hashes in their sessions' end events.
    pub recordings: usize,
    /// Recordings retention removed (their removals are in the log).
    pub removed: usize,
}

/// `audit verify`, intact: exit 0 (with a warning on stderr where the head is unsigned).
pub fn verified(v: &Verified, json: bool) -> Reply {
    let signed = v.signed_at.map(|at| at.rfc3339());
    let head = hex::encode(v.head);
    let mut reply = out(
        json,
        json!({"ok": true, "records": v.records, "recordings": v.recordings, "recordings_removed_by_retention": v.removed, "head": head, "head_signed_at": signed}),
        format!(
            "audit log verified: {}, chain intact, every signature valid, ends at its {} (head {head}); {}{}\n",
            count(v.records, "record", "records"),
            signed.as_deref().map_or("unsigned head".to_string(), |at| format!("signed head of {at}")),
            match v.recordings {
                1 => "1 recording matches its hash".to_string(),
                n => format!("{n} recordings match their hashes"),
            },
            removed_note(v.removed)
        ),
    );
    if v.signed_at.is_none() && v.records > 0 {
        reply.err = format!("portcullis: warning: {}\n", portcullis_audit::UNSIGNED_HEAD);
    }
    reply
}

/// `audit verify`, tampered: exit 1, naming the first bad record.
pub fn verify_failed(first_bad: u64, broken: &str, json: bool) -> Reply {
    let mut r = Reply::failure(
        format!(
            "portcullis: audit log verification FAILED: {}\n",
            clean(broken)
        ),
        1,
    );
    if json {
        r.out = format!(
            "{}\n",
            json!({"ok": false, "first_bad": first_bad, "error": broken})
        );
    }
    r
}

/// `audit verify` could not be made: exit 2, not 1, since nothing was found wrong.
pub fn could_not_verify(e: &dyn Display, json: bool) -> Reply {
    let mut r = Reply::failure(format!("portcullis: could not verify: {e}\n"), 2);
    if json {
        r.out = format!("{}\n", json!({"ok": null, "error": e.to_string()}));
    }
    r
}

/// `; 3 removed by retention`, or nothing.
fn removed_note(removed: usize) -> String {
    match removed {
        0 => String::new(),
        1 => "; 1 removed by retention (its removal is in the log)".into(),
        n => format!("; {n} removed by retention (their removals are in the log)"),
    }
}

/// `reload`: what the new config holds.
pub fn reloaded(summary: &str, json: bool) -> Reply {
    out(
        json,
        json!({"reloaded": true, "summary": summary}),
        format!("{summary}\n"),
    )
}

/// A gateway's `report`: one line per report, as recorded (or not).
pub fn reports_acknowledged(notes: &str) -> Reply {
    Reply::text(format!("{notes}\n"))
}
