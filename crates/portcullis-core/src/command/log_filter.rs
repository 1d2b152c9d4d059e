//! `audit log`'s filters besides `--since`: `--kind` (a kind's name or a dotted prefix, checked
//! against the kinds there are), `--user`, `--target`, `--session`, and the help that lists
//! the kinds.

use clap::Args;

use super::words::Words;
use crate::audit_event::{AuditEvent, KIND_NAMES};

/// `audit log --help`'s examples and the kinds `--kind` takes.
pub const LOG_HELP: &str = "Examples:
  audit log --since 24h
  audit log --json > events.jsonl
  audit log --kind session.refused --kind gateway --since 1h
  audit log --kind sftp --user alice --session gw-1-3fa2-17

Kinds (--kind takes one, or a dotted prefix such as sftp, session, request):
  approver.started approver.stopped gateway.started gateway.stopped
  config.loaded config.refused signing_key.rotated store.history_diverged
  request.created request.approved request.denied request.expired request.cancelled
  grant.issued grant.expired grant.revoked command.refused
  session.started session.ended session.killed session.regranted session.refused
  target.host_key_mismatch recording.removed
  sftp.open sftp.close sftp.rename sftp.remove sftp.mkdir sftp.rmdir sftp.setstat
  sftp.symlink sftp.hardlink sftp.counted sftp.parse_abandoned
  scp.file scp.dir scp.parse_abandoned";

/// What `audit log` keeps besides `--since`: every option given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct LogFilter {
    /// Only events of this kind: its name (`session.refused`) or a dotted prefix of names
    /// (`sftp`, `session`). Repeat for several kinds; any of them.
    #[arg(long = "kind", value_name = "KIND", value_parser = known_kind)]
    pub kinds: Vec<String>,
    /// Only events about this user.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Only events about this target.
    #[arg(long, value_name = "TARGET")]
    pub target: Option<String>,
    /// Only events of this session (its start, file operations, end, …).
    #[arg(long, value_name = "SESSION")]
    pub session: Option<String>,
}

impl LogFilter {
    /// Whether `event` passes.
    pub fn keeps(&self, event: &AuditEvent) -> bool {
        (self.kinds.is_empty() || self.kinds.iter().any(|k| event.kind.matches(k)))
            && self
                .user
                .as_ref()
                .is_none_or(|u| event.user.as_ref() == Some(u))
            && self
                .target
                .as_ref()
                .is_none_or(|t| event.target.as_ref() == Some(t))
            && self
                .session
                .as_ref()
                .is_none_or(|s| event.session() == Some(s.as_str()))
    }

    pub(super) fn to_words(&self, w: &mut Words) {
        for k in &self.kinds {
            w.push(&format!("--kind={k}"));
        }
        for (flag, v) in [
            ("--user", &self.user),
            ("--target", &self.target),
            ("--session", &self.session),
        ] {
            if let Some(v) = v {
                w.push(&format!("{flag}={v}"));
            }
        }
    }
}

/// `--kind`: a kind's name or a dotted prefix of some, so that a typo is an error rather than
/// an empty listing.
fn known_kind(s: &str) -> Result<String, String> {
    let known = |name: &str| {
        name == s
            || name
                .strip_prefix(s)
                .is_some_and(|rest| rest.starts_with('.'))
    };
    if KIND_NAMES.iter().any(|n| known(n)) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "no event kind is or starts with {s:?}; kinds: {}",
            KIND_NAMES.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_help_lists_every_kind() {
        for name in KIND_NAMES {
            assert!(
                LOG_HELP.split_whitespace().any(|w| w == *name),
                "{name} is missing from `audit log --help`"
            );
        }
    }
}
