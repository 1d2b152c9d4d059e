//! Rendering a parsed line back into the words [`super::parse_line`] reads as the same line:
//! what a thin client sends after parsing its own command line.

use super::{join_words, text, AuditCommand, ControlCommand, ControlLine, DEFAULT_LIMIT};

impl ControlLine {
    /// The words that [`parse_line`] reads back as this same line: what a thin client sends
    /// after parsing its own command line.
    pub fn to_words(&self) -> Vec<String> {
        let mut w = Words::default();
        match &self.command {
            ControlCommand::Request(r) => {
                w.push("request");
                w.positional(&r.target);
                if let Some(d) = &r.duration {
                    w.push(&format!("--for={d}"));
                }
                if let Some(x) = text(&r.reason) {
                    w.push(&format!("--reason={x}"));
                }
            }
            ControlCommand::Requests {
                pending,
                all,
                limit,
            } => {
                w.push("requests");
                if *pending {
                    w.push("--pending");
                }
                if *all {
                    w.push("--all");
                }
                w.limit(*limit);
            }
            ControlCommand::Approve(d) | ControlCommand::Deny(d) => {
                w.push(if matches!(self.command, ControlCommand::Approve(_)) {
                    "approve"
                } else {
                    "deny"
                });
                w.push(&d.id.to_string());
                if let Some(n) = text(&d.note) {
                    w.push(&format!("--note={n}"));
                }
            }
            ControlCommand::Wait { id } => {
                w.push("wait");
                w.push(&id.to_string());
            }
            ControlCommand::Cancel { id, reason } => {
                w.push("cancel");
                w.push(&id.to_string());
                if let Some(r) = text(reason) {
                    w.push(&format!("--reason={r}"));
                }
            }
            ControlCommand::Grants {
                active,
                user,
                target,
                limit,
            } => {
                w.push("grants");
                if *active {
                    w.push("--active");
                }
                if let Some(u) = user {
                    w.push(&format!("--user={u}"));
                }
                if let Some(t) = target {
                    w.push(&format!("--target={t}"));
                }
                w.limit(*limit);
            }
            ControlCommand::Revoke { grant, reason } => {
                w.push("revoke");
                w.push(&grant.to_string());
                if let Some(r) = text(reason) {
                    w.push(&format!("--reason={r}"));
                }
            }
            ControlCommand::Sessions { live, limit } => {
                w.push("sessions");
                if *live {
                    w.push("--live");
                }
                w.limit(*limit);
            }
            ControlCommand::Kill { session } => {
                w.push("kill");
                w.positional(session);
            }
            ControlCommand::Status => w.push("status"),
            ControlCommand::Whoami => w.push("whoami"),
            ControlCommand::Targets => w.push("targets"),
            ControlCommand::Reload => w.push("reload"),
            ControlCommand::Audit(a) => a.push_words(&mut w),
            gateway @ (ControlCommand::As { .. }
            | ControlCommand::Report { .. }
            | ControlCommand::Watch { .. }) => gateway_words(gateway, &mut w),
        }
        if self.json {
            w.push("--json");
        }
        w.into_words()
    }

    /// The exec line for [`ControlLine::to_words`].
    pub fn to_line(&self) -> String {
        join_words(&self.to_words())
    }
}

impl AuditCommand {
    /// The words of `audit …` (see [`ControlLine::to_words`]).
    fn push_words(&self, w: &mut Words) {
        match self {
            AuditCommand::Log {
                since,
                limit,
                filter,
            } => {
                w.push("audit");
                w.push("log");
                if let Some(s) = since {
                    w.push(&format!("--since={s}"));
                }
                w.limit(*limit);
                filter.to_words(w);
            }
            AuditCommand::Verify => {
                w.push("audit");
                w.push("verify");
            }
            AuditCommand::Sessions {
                user,
                target,
                since,
                live,
                limit,
            } => {
                w.push("audit");
                w.push("sessions");
                for (flag, v) in [("--user", user), ("--target", target), ("--since", since)] {
                    if let Some(v) = v {
                        w.push(&format!("{flag}={v}"));
                    }
                }
                if *live {
                    w.push("--live");
                }
                w.limit(*limit);
            }
            AuditCommand::Replay {
                session,
                speed,
                idle_limit,
            } => {
                w.push("audit");
                w.push("replay");
                w.positional(session);
                w.push(&format!("--speed={speed}"));
                if let Some(i) = idle_limit {
                    w.push(&format!("--idle-limit={i}"));
                }
            }
            AuditCommand::Export { session } => {
                w.push("audit");
                w.push("export");
                w.positional(session);
            }
        }
    }
}

/// The words of the commands only gateways send (`as`, `report`, `watch`); `to_words` hands
/// it nothing else.
fn gateway_words(command: &ControlCommand, w: &mut Words) {
    match command {
        ControlCommand::As {
            user,
            key,
            reach,
            words,
        } => {
            w.push("as");
            w.push(&format!("--user={user}"));
            w.push(&format!("--key={key}"));
            if let Some(r) = reach {
                w.push(&format!("--reach={r}"));
            }
            w.push("--");
            for word in words {
                w.push(word);
            }
        }
        ControlCommand::Report { seq, instance } => {
            w.push("report");
            w.push(&format!("--seq={seq}"));
            w.push(&format!("--instance={instance}"));
        }
        ControlCommand::Watch {
            since,
            epoch,
            after,
            max_grant,
        } => {
            w.push("watch");
            w.push(&format!("--since={since}"));
            if let Some(e) = epoch {
                w.push(&format!("--epoch={e}"));
            }
            if let Some(a) = after {
                w.push(&format!("--after={a}"));
            }
            if let Some(m) = max_grant {
                w.push(&format!("--max-grant={m}"));
            }
        }
        _ => {}
    }
}

/// Words being rendered for [`ControlLine::to_words`]. Options go as `--flag=value` and
/// positionals that begin with '-' after a `--`, so that no value is ever read back as a flag.
#[derive(Default)]
pub(super) struct Words {
    words: Vec<String>,
    dashed: Vec<String>,
}

impl Words {
    pub(super) fn push(&mut self, s: &str) {
        self.words.push(s.to_string());
    }

    /// `--limit=N`, left out at its default so that lines stay as they were.
    pub(super) fn limit(&mut self, n: u64) {
        if n != DEFAULT_LIMIT {
            self.push(&format!("--limit={n}"));
        }
    }

    pub(super) fn positional(&mut self, s: &str) {
        if s.starts_with('-') {
            self.dashed.push(s.to_string());
        } else {
            self.push(s);
        }
    }

    pub(super) fn into_words(mut self) -> Vec<String> {
        if !self.dashed.is_empty() {
            self.words.push("--".to_string());
            self.words.append(&mut self.dashed);
        }
        self.words
    }
}
