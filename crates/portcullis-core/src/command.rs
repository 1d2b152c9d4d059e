//! The control-command grammar: what `ssh -p 2223 alice@approver COMMAND …` accepts. The
//! approver parses exec lines with it; the thin clients parse with it first so that `--help`
//! and typos are answered locally, then send the same words.

use clap::{Args, Parser, Subcommand};

mod log_filter;
mod words;
pub use log_filter::{LogFilter, LOG_HELP};

/// How many entries a listing shows unless `--limit` says otherwise: one reply stays small
/// enough for a gateway to relay and a terminal to show.
pub const DEFAULT_LIMIT: u64 = 1000;
/// The most `--limit` may ask for.
pub const MAX_LIMIT: u64 = 100_000;

/// A parsed control line.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "portcullis",
    no_binary_name = true,
    disable_version_flag = true,
    about = "portcullis control plane: ask for access, decide, revoke, audit",
    after_help = "Examples:\n  request pg-prod --for 1h --reason \"INC-42\"\n  wait 17\n  approve 17 --note \"checked with on-call\"\n  grants --active\n  audit log --since 1h --json"
)]
pub struct ControlLine {
    /// Print one JSON document on stdout (JSON Lines for `audit log`).
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: ControlCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ControlCommand {
    /// Ask for access to a target; policy may approve it at once.
    #[command(after_help = "Example:\n  request pg-prod --for 1h --reason \"INC-42\"")]
    Request(RequestArgs),

    /// List requests: yours, and those you may decide.
    #[command(after_help = "Example:\n  requests --pending")]
    Requests {
        /// Only undecided requests (the default).
        #[arg(long, conflicts_with = "all")]
        pending: bool,
        /// Every request, decided or not.
        #[arg(long)]
        all: bool,
        /// Show at most this many, the newest (default 1000); a last line says how many more.
        #[arg(long, value_name = "N", default_value_t = DEFAULT_LIMIT, value_parser = clap::value_parser!(u64).range(1..=MAX_LIMIT))]
        limit: u64,
    },

    /// Approve a request (approvers of its policy; never your own).
    #[command(after_help = "Example:\n  approve 17 --note \"checked with on-call\"")]
    Approve(DecideArgs),

    /// Deny a request (approvers of its policy; never your own).
    #[command(after_help = "Example:\n  deny 17 --note \"use staging\"")]
    Deny(DecideArgs),

    /// Block until a request is decided; exit 0 only when approved.
    #[command(
        after_help = "Example:\n  wait 17 && ssh -p 2222 -N -L 15432:pg-prod:5432 alice@bastion"
    )]
    Wait {
        /// The request id.
        id: u64,
    },

    /// Withdraw your own pending request; anyone waiting on it is told (the requester only).
    #[command(after_help = "Example:\n  cancel 17 --reason \"fixed without access\"")]
    Cancel {
        /// The request id.
        id: u64,
        /// Why (kept in the audit log). Several words are fine.
        #[arg(long, num_args = 1.., value_name = "TEXT")]
        reason: Vec<String>,
    },

    /// List grants with their remaining time: yours, or anyone's for admins.
    #[command(after_help = "Example:\n  grants --active --target pg-prod")]
    Grants {
        /// Only grants in force now.
        #[arg(long)]
        active: bool,
        /// Only this user's grants (admins).
        #[arg(long)]
        user: Option<String>,
        /// Only grants on this target.
        #[arg(long)]
        target: Option<String>,
        /// Show at most this many, the newest (default 1000); a last line says how many more.
        #[arg(long, value_name = "N", default_value_t = DEFAULT_LIMIT, value_parser = clap::value_parser!(u64).range(1..=MAX_LIMIT))]
        limit: u64,
    },

    /// End a grant now; every session on it is cut (admins, approvers of its policy).
    #[command(after_help = "Example:\n  revoke 17 --reason \"incident closed\"")]
    Revoke {
        /// The grant id.
        grant: u64,
        /// Why (kept in the audit log). Several words are fine.
        #[arg(long, num_args = 1.., value_name = "TEXT")]
        reason: Vec<String>,
    },

    /// Sessions through the gateways (admins, auditors).
    #[command(after_help = "Example:\n  sessions --live")]
    Sessions {
        /// Only sessions still open.
        #[arg(long)]
        live: bool,
        /// Show at most this many, the newest (default 1000); a last line says how many more.
        #[arg(long, value_name = "N", default_value_t = DEFAULT_LIMIT, value_parser = clap::value_parser!(u64).range(1..=MAX_LIMIT))]
        limit: u64,
    },

    /// Cut one session now (admins).
    #[command(after_help = "Example:\n  kill gw-1-3fa2-42")]
    Kill {
        /// The session id, as `sessions` shows it.
        session: String,
    },

    /// Your targets, active grants (with the time they have left) and pending requests.
    #[command(after_help = "Example:\n  status --json")]
    Status,

    /// Who you are authenticated as, your groups, and the policies you approve for.
    #[command(after_help = "Example:\n  whoami")]
    Whoami,

    /// Targets you can request, and the policy that covers each.
    #[command(after_help = "Example:\n  targets")]
    Targets,

    /// Re-read the config file; a bad file is refused and the old one kept (admins).
    #[command(after_help = "Example:\n  reload")]
    Reload,

    /// The audit trail (admins, auditors).
    #[command(subcommand)]
    Audit(AuditCommand),

    /// Run a command for a user the gateway authenticated (gateway identities only).
    #[command(hide = true)]
    As {
        /// The user the gateway authenticated.
        #[arg(long)]
        user: String,
        /// The fingerprint of the key that user proved to the gateway.
        #[arg(long)]
        key: String,
        /// How the user reaches the gateway, as the start of an ssh command line
        /// (`ssh -p 2222 alice@10.0.0.1`): replies that suggest a next command use it.
        #[arg(long)]
        reach: Option<String>,
        /// The user's command words.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        words: Vec<String>,
    },

    /// Deliver one session report, its versioned encoding on standard input (gateway
    /// identities only).
    #[command(hide = true)]
    Report {
        /// The gateway's sequence number for this report.
        #[arg(long)]
        seq: u64,
        /// The gateway instance (its replica's id) the sequence belongs to.
        #[arg(long, default_value = "0")]
        instance: String,
    },

    /// Stream signed catalog and grant changes after a revision (gateway identities only).
    #[command(hide = true)]
    Watch {
        /// Resume after this revision (0 for everything).
        #[arg(long, default_value_t = 0)]
        since: u64,
        /// The store identity the gateway's replica follows (0: none yet). Asks for a signed
        /// hello first, and a snapshot instead of changes if the store is another.
        #[arg(long)]
        epoch: Option<u64>,
        /// SHA-256 (hex) of the change the gateway applied at `since`: its history must be
        /// this store's, or it gets a snapshot.
        #[arg(long)]
        after: Option<String>,
        /// The highest grant id the gateway holds: after a restore, new ids start above it.
        #[arg(long)]
        max_grant: Option<u64>,
    },
}

#[derive(Debug, Clone, Args)]
pub struct RequestArgs {
    /// The target's name, as `targets` lists it.
    pub target: String,
    /// How long, e.g. 30m, 1h, 1h30m (default: the policy's default_duration).
    #[arg(long = "for", value_name = "DURATION")]
    pub duration: Option<String>,
    /// Why you need it: a ticket or incident id. Several words are fine (put it last).
    #[arg(long, num_args = 1.., value_name = "TEXT")]
    pub reason: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct DecideArgs {
    /// The request id.
    pub id: u64,
    /// A note kept with the decision in the audit log. Several words are fine.
    #[arg(long, num_args = 1.., value_name = "TEXT")]
    pub note: Vec<String>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum AuditCommand {
    /// Print audit events, oldest first.
    #[command(after_help = LOG_HELP)]
    Log {
        /// Only events newer than this, e.g. 1h, 7d.
        #[arg(long, value_name = "DURATION")]
        since: Option<String>,
        /// Show at most this many, the newest (default 1000); a last line says how many more.
        #[arg(long, value_name = "N", default_value_t = DEFAULT_LIMIT, value_parser = clap::value_parser!(u64).range(1..=MAX_LIMIT))]
        limit: u64,
        #[command(flatten)]
        filter: LogFilter,
    },
    /// Check the hash chain, every signature and every finished recording; name the first
    /// bad record.
    #[command(after_help = "Example:\n  audit verify")]
    Verify,
    /// Sessions through the gateways, newest last.
    #[command(
        after_help = "Examples:\n  audit sessions --since 24h --user alice\n  audit sessions --live --json"
    )]
    Sessions {
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        target: Option<String>,
        /// Only sessions started within this long, e.g. 1h, 7d.
        #[arg(long, value_name = "DURATION")]
        since: Option<String>,
        /// Only sessions still open.
        #[arg(long)]
        live: bool,
        /// Show at most this many, the newest (default 1000); a last line says how many more.
        #[arg(long, value_name = "N", default_value_t = DEFAULT_LIMIT, value_parser = clap::value_parser!(u64).range(1..=MAX_LIMIT))]
        limit: u64,
    },
    /// Play a recorded session in the terminal with its timing.
    #[command(after_help = "Example:\n  audit replay gw-1-3fa2-17 --speed 2 --idle-limit 2s")]
    Replay {
        session: String,
        /// Play this many times faster.
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        /// Never wait longer than this between two events.
        #[arg(long, value_name = "DURATION")]
        idle_limit: Option<String>,
    },
    /// Write a recorded session as asciicast v2 (what `asciinema play` reads).
    #[command(after_help = "Example:\n  audit export gw-1-3fa2-17 > session.cast")]
    Export { session: String },
}

/// Free text given as one or more words (`--reason INC 42` over plain ssh arrives as two
/// words): joined with single spaces, `None` when blank.
pub fn text(words: &[String]) -> Option<String> {
    let t = words.join(" ");
    let t = t.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// Parse an exec line as the approver receives it (shell-style words).
pub fn parse_line(line: &str) -> Result<ControlLine, clap::Error> {
    let words = shell_words::split(line).map_err(|e| {
        clap::Error::raw(
            clap::error::ErrorKind::InvalidValue,
            format!("cannot split the command line: {e}\n"),
        )
    })?;
    ControlLine::try_parse_from(words)
}

/// Join words into an exec line that [`parse_line`] splits back into the same words.
pub fn join_words<S: AsRef<str>>(words: &[S]) -> String {
    shell_words::join(words.iter().map(|w| w.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_spec_examples() {
        let l = parse_line("request pg-prod --for 1h --reason \"INC-42\"").unwrap();
        match l.command {
            ControlCommand::Request(r) => {
                assert_eq!(r.target, "pg-prod");
                assert_eq!(r.duration.as_deref(), Some("1h"));
                assert_eq!(text(&r.reason).as_deref(), Some("INC-42"));
            }
            other => panic!("{other:?}"),
        }
        assert!(parse_line("approve 17 --note ok --json").unwrap().json);
        assert!(matches!(
            parse_line("audit log --since 1h").unwrap().command,
            ControlCommand::Audit(AuditCommand::Log { .. })
        ));
        assert!(parse_line("approve seventeen").is_err());
        assert!(parse_line("requests --limit 0").is_err());
        assert!(parse_line("audit log --limit 100001").is_err());
        match parse_line("audit log --kind sftp --kind session.refused --user alice")
            .unwrap()
            .command
        {
            ControlCommand::Audit(AuditCommand::Log { filter, .. }) => {
                assert_eq!(filter.kinds, ["sftp", "session.refused"]);
                assert_eq!(filter.user.as_deref(), Some("alice"));
            }
            other => panic!("{other:?}"),
        }
        // A typo is an error, not an empty listing.
        for typo in ["sftp.opn", "sessio", "session.refused.x", ""] {
            assert!(
                parse_line(&format!("audit log --kind '{typo}'")).is_err(),
                "{typo}"
            );
        }
        assert!(parse_line("").is_err());
    }

    #[test]
    fn to_words_reads_back_the_same() {
        for line in [
            "request pg-prod --for 1h --reason 'INC 42'",
            "requests --all",
            "requests --all --limit 5",
            "grants --limit 2",
            "sessions --live --limit 7",
            "audit log --limit 3",
            "audit sessions --limit 9",
            "approve 17 --note 'ok then'",
            "deny 3",
            "wait 9 --json",
            "cancel 9",
            "cancel 9 --reason 'no longer needed'",
            "grants --active --user bob --target db",
            "revoke 4 --reason done",
            "sessions --live",
            "kill s-1",
            "status",
            "whoami",
            "targets",
            "reload",
            "audit log --since 1h",
            "audit log --kind sftp --kind session.refused --user alice --target web-1",
            "audit log --session gw-1-ab-3 --limit 5 --json",
            "audit verify",
            "audit sessions --user a --since 1h --live",
            "audit replay s-1 --speed 2.5 --idle-limit 1s",
            "audit export s-1",
            "watch --since 12",
            "as --user alice --key SHA256:x -- request db --reason 'a b' --json",
            "as --user alice --key SHA256:x --reach 'ssh -p 2222 alice@10.0.0.1' -- wait 3",
            "report --seq 3 --instance ab12",
        ] {
            let a = parse_line(line).unwrap();
            let b = parse_line(&a.to_line()).unwrap();
            assert_eq!(format!("{a:?}"), format!("{b:?}"), "{line}");
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,80}") { let _ = parse_line(&s); }

        /// What a thin client sends reads back, on the approver, as the line it parsed, even
        /// where a value or a session id begins with '-' (found by the `control_line` fuzz
        /// target: `--reason=-x` was sent as `--reason -x` and refused).
        #[test]
        fn to_line_reads_back_as_the_same_line(
            value in "-?[a-zA-Z0-9 ._:-]{1,12}",
            which in 0usize..6,
            json in any::<bool>(),
        ) {
            let v = shell_words::quote(&value).into_owned();
            let line = match which {
                0 => format!("request db --reason={v}"),
                1 => format!("request db --for={v}"),
                2 => format!("kill -- {v}"),
                3 => format!("audit replay --speed=2 -- {v}"),
                4 => format!("approve 3 --note={v}"),
                _ => format!("audit sessions --user={v} --live"),
            };
            let line = if json { format!("{line} --json") } else { line };
            if let Ok(parsed) = parse_line(&line) {
                let again = parse_line(&parsed.to_line());
                prop_assert!(again.is_ok(), "{} -> {}: {:?}", line, parsed.to_line(), again.err());
                prop_assert_eq!(again.unwrap().to_words(), parsed.to_words());
            }
        }

        #[test]
        fn join_then_split_keeps_words(words in proptest::collection::vec("[^-\\s][^\\s]{0,11}", 1..5)) {
            let mut all = vec!["request".to_string(), "t".to_string(), "--reason".to_string()];
            all.push(words.join(" "));
            let l = parse_line(&join_words(&all)).unwrap();
            match l.command {
                ControlCommand::Request(r) => prop_assert_eq!(text(&r.reason), Some(words.join(" "))),
                _ => prop_assert!(false),
            }
        }
    }
}
