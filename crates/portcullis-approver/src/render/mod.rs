//! Everything the approver says back: text for people, one JSON document with `--json`
//! (JSON Lines for `audit log`), and the exit code. Handlers in [`crate::commands`] gather the
//! facts; how they read is decided here, by area: [`requests`], [`grants`], [`view`] (a user's
//! own view), [`sessions`], [`audit`]. Nothing here reads the store or decides anything.
//!
//! Text meant for a terminal goes through [`clean`]: users choose reasons, notes, and the
//! commands their sessions run, and an admin's terminal must not obey escape sequences hidden
//! in them. JSON keeps every string exact (its encoding escapes control characters already).

use std::borrow::Cow;
use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::errors::ApproverError;

pub mod audit;
pub mod grants;
pub mod help;
pub mod requests;
pub mod sessions;
pub mod view;
/// How counts, durations, sizes and columns read: one wording for every process, so it lives in
/// `portcullis_core`.
pub use portcullis_core::words;

pub use grants::grant_json;
pub use requests::request_json;

/// A finished command's output: what goes to stdout and stderr, and the exit status.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    pub out: String,
    pub err: String,
    pub code: u32,
}

impl Reply {
    pub fn text(out: String) -> Reply {
        Reply {
            out,
            ..Default::default()
        }
    }

    pub fn failure(err: String, code: u32) -> Reply {
        Reply {
            err,
            code,
            ..Default::default()
        }
    }

    /// For a client that asked for a terminal (`ssh -t`): its terminal is raw, so each line
    /// ends with CR LF, as a pty's output processing (ONLCR) would have written it.
    pub fn for_terminal(self) -> Reply {
        Reply {
            out: self.out.replace('\n', "\r\n"),
            err: self.err.replace('\n', "\r\n"),
            code: self.code,
        }
    }
}

/// The JSON document with `--json`, the text otherwise.
pub fn out(json: bool, value: Value, text: String) -> Reply {
    if json {
        Reply::text(format!("{value}\n"))
    } else {
        Reply::text(text)
    }
}

/// A failed command: the message on stderr, exit 1; with `--json` also `{"error": KIND,
/// "message": …}` on stdout.
pub fn error_reply(e: &ApproverError, json: bool) -> Reply {
    let kind = match e {
        ApproverError::Refused(_) => "refused",
        ApproverError::Forbidden(_) => "forbidden",
        ApproverError::NotFound(_) => "not_found",
        ApproverError::Conflict(_) => "conflict",
        ApproverError::BadInput(_) => "bad_input",
        ApproverError::Store(_) => "store",
        ApproverError::Config(_) | ApproverError::Key(_) => "config",
        ApproverError::Recording(_) => "recording",
    };
    let mut r = Reply::failure(format!("portcullis: {e}\n"), 1);
    if json {
        r.out = format!("{}\n", json!({"error": kind, "message": e.to_string()}));
    }
    r
}

/// Help (exit 0) or a usage error (exit 2), as clap words it.
pub fn usage(e: &clap::Error) -> Reply {
    use clap::error::ErrorKind;
    let text = e.render().to_string();
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => Reply::text(text),
        _ => Reply::failure(text, 2),
    }
}

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
    let listed = if limit == 1 {
        "the newest is listed".to_string()
    } else {
        format!("the newest {limit} are listed")
    };
    format!("… {more} more not shown: {listed} (--limit N for more)\n")
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
