//! The command line: what each subcommand takes, and which part of portcullis runs it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use portcullis_core::command::{AuditCommand, ControlCommand, ControlLine, RequestArgs};

use crate::logging::{self, LogFormat, LogOpts};
use crate::{client_cmd, init, login, setup, verify};

/// How the thin clients find their settings; the end of each one's `--help`.
macro_rules! connection_help {
    () => {
        "\n\nConnection settings (approver, user, identity, host key) come from, first match wins:\n  1. flags: --approver, -l, -i, --approver-host-key, --known-hosts\n  2. PORTCULLIS_APPROVER, PORTCULLIS_USER, PORTCULLIS_IDENTITY, PORTCULLIS_APPROVER_HOST_KEY,\n     PORTCULLIS_KNOWN_HOSTS\n  3. the profile: --profile FILE, PORTCULLIS_PROFILE, or ~/.config/portcullis/profile.toml\n     ($XDG_CONFIG_HOME/portcullis/profile.toml); `portcullis login`, `init` and `quickstart`\n     write it. Its pinned host key is used only for the approver it names.\n  4. defaults: 127.0.0.1:2223, $USER, ssh-agent then ~/.ssh/id_ed25519, and the approver's\n     host key learned on first use into ~/.config/portcullis/known_hosts (a changed key is refused)"
    };
}

#[derive(Debug, Parser)]
#[command(
    name = "portcullis",
    version,
    about = "An SSH bastion with no standing access: every session rests on a time-bound, approved, recorded grant.",
    after_help = "Examples:\n  portcullis init --dir ./pc                      # a working single-host config with fresh keys\n  portcullis approver --config ./pc/portcullis.toml\n  portcullis request pg-prod --for 1h --reason \"INC-42\"\n  portcullis admin approve 17 --note \"ok\"\n  portcullis audit verify"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the approval daemon (control plane on port 2223 by default).
    #[command(
        after_help = "Examples:\n  portcullis approver --config /etc/portcullis/portcullis.toml\n  portcullis approver --config /etc/portcullis/portcullis.toml --log-format json   # for journald\n\nSIGHUP or `portcullis admin reload` re-reads the file; a bad file is refused and the old one kept."
    )]
    Approver {
        /// The config file.
        #[arg(long, short = 'c', value_name = "FILE")]
        config: PathBuf,
        #[command(flatten)]
        log: LogOpts,
    },

    /// Run the gateway developers ssh to (port 2222 by default): enforces signed grants.
    #[command(
        after_help = "Example:\n  runuser -u portcullis-gateway -- portcullis gateway --config /etc/portcullis/portcullis.toml\n\nRun it as a user of its own: a gateway that can read the approver's grant-signing key\nrefuses to start.\n\nDevelopers then use stock OpenSSH:\n  ssh -p 2222 alice@bastion request pg-prod --for 1h --reason INC-42\n  ssh -p 2222 -N -L 15432:pg-prod:5432 alice@bastion\n  ssh -J alice@bastion:2222 deploy@web-1"
    )]
    Gateway {
        /// The config file (its [gateway] section, and pins of the approver's keys).
        #[arg(long, short = 'c', value_name = "FILE")]
        config: PathBuf,
        #[command(flatten)]
        log: LogOpts,
    },

    /// Operator commands against the approver: approve, deny, revoke, grants, reload, …
    #[command(
        after_help = concat!("Examples:\n  portcullis admin requests --pending\n  portcullis admin approve 17 --note \"checked with on-call\"\n  portcullis admin revoke 17 --reason \"incident closed\"\n  portcullis admin reload\n  portcullis admin -l ada --approver bastion:2223 status      # flags override the profile", connection_help!())
    )]
    Admin {
        #[command(flatten)]
        conn: ClientOpts,
        #[command(subcommand)]
        command: ControlCommand,
    },

    /// Ask for access to a target (same as `ssh -p 2222 USER@bastion request …`).
    #[command(after_help = concat!(
        "Example:\n  portcullis request pg-prod --for 1h --reason \"INC-42\"",
        connection_help!()
    ))]
    Request {
        #[command(flatten)]
        conn: ClientOpts,
        #[command(flatten)]
        args: RequestArgs,
    },

    /// Compliance commands: print and verify the audit trail.
    #[command(
        after_help = concat!("Examples:\n  portcullis audit log --since 24h\n  portcullis audit log --json > events.jsonl\n  portcullis audit verify\n  portcullis audit verify --data-dir /var/lib/portcullis-approver --signing-key ed25519:…   # offline, approver stopped", connection_help!())
    )]
    Audit {
        #[command(flatten)]
        conn: ClientOpts,
        #[command(subcommand)]
        command: AuditCli,
    },

    /// Check that you can reach and log in to the approver, then save how, as the profile
    /// `admin`, `request` and `audit` read.
    #[command(
        after_help = concat!("Examples:\n  portcullis login --approver bastion.example.com:2223 -l alice -i ~/.ssh/id_ed25519\n  portcullis login -l bob                  # the same approver, another user\n  portcullis login --profile ~/.config/portcullis/staging.toml --approver staging:2223\n\nIt connects first: the approver's host key must be the pinned one (--approver-host-key, or\nthe profile's for the same approver) or the one in known_hosts; an approver never seen\nbefore is learned, as ssh does, and its fingerprint shown. Then whoami must succeed. Only\nthen is the profile written (mode 0600): approver, user, identity (when one was given) and\nthe host key, pinned. Settings not given come from the profile being replaced.", connection_help!())
    )]
    Login {
        #[command(flatten)]
        conn: ClientOpts,
    },

    /// Create any missing key of a config and print the public ones, one a line.
    #[command(
        after_help = "Examples:\n  portcullis keys --config portcullis.toml\n  portcullis keys known-hosts --config portcullis.toml --host bastion.example.com   # for users' known_hosts\n\nPrints `gateway-host …`, `gateway-client …`, `approver-host …`, `grant-signing …`:\nthe gateway client key goes into targets' authorized_keys and [[gateways]]; the approver\nhost key and the grant-signing key are what [gateway] pins."
    )]
    Keys {
        #[arg(long, short = 'c', value_name = "FILE", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: Option<KeysAction>,
    },

    /// Validate a config file; exit non-zero naming each problem, and warn of policies that
    /// can never grant what waits for their approvers.
    #[command(after_help = "Example:\n  portcullis check --config portcullis.toml")]
    Check {
        #[arg(long, short = 'c', value_name = "FILE")]
        config: PathBuf,
    },

    /// Run a whole demo bastion on loopback and print the lines to try.
    #[command(
        after_help = "Example:\n  cargo run --release -- quickstart\n\nWrites config and keys into DIR, serves a demo TCP target (and a recorded shell target where\nsshd is installed), runs the approver and the gateway, and prints ready-to-paste commands.\nFor them it writes DIR/ssh_config (hosts bastion, approver, shell-rec, shell; each with its\nkey and the pinned host keys: ssh -F DIR/ssh_config bastion status) and the thin clients'\nprofile (DIR/profile.toml, and the default one unless that is for another approver).\nCtrl-C stops everything."
    )]
    Quickstart {
        /// Where config, keys and data go.
        #[arg(long, value_name = "DIR", default_value = "portcullis-quickstart")]
        dir: PathBuf,
    },

    /// Write a working single-host config with fresh keys into DIR.
    #[command(
        after_help = "Examples:\n  portcullis init --dir ./pc && portcullis approver --config ./pc/portcullis.toml   # a trial, as yourself\n  portcullis init --dir /etc/portcullis --data-root /var/lib --key ~/.ssh/id_ed25519.pub   # what deploy/*.service expect\n\nWith --data-root the approver's and the gateway's data go to ROOT/portcullis-approver and\nROOT/portcullis-gateway (the units' StateDirectory), the config (no secrets in it) is made\nreadable by both, and init prints the useradd and chown steps that give each daemon its own\nuser. It needs no root itself."
    )]
    Init {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The first admin's name (default: $USER).
        #[arg(long)]
        user: Option<String>,
        /// The first admin's public key file (default: ~/.ssh/id_ed25519.pub; without
        /// --data-root, else a new key in DIR).
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// Put the daemons' data directories under this directory, one per daemon and user
        /// (/var/lib for the shipped systemd units), instead of inside DIR.
        #[arg(long, value_name = "DIR")]
        data_root: Option<PathBuf>,
        /// With --data-root: the approver's system user, in the printed steps.
        #[arg(long, value_name = "NAME", default_value = "portcullis-approver")]
        approver_user: String,
        /// With --data-root: the gateway's system user, in the printed steps.
        #[arg(long, value_name = "NAME", default_value = "portcullis-gateway")]
        gateway_user: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCli {
    /// Print audit events, oldest first (`--json`: JSON Lines for a SIEM).
    #[command(after_help = portcullis_core::command::LOG_HELP)]
    Log {
        /// Only events newer than this, e.g. 1h, 7d.
        #[arg(long, value_name = "DURATION")]
        since: Option<String>,
        /// Show at most this many, the newest (default 1000); a last line says how many more.
        #[arg(long, value_name = "N", default_value_t = portcullis_core::command::DEFAULT_LIMIT, value_parser = clap::value_parser!(u64).range(1..=portcullis_core::command::MAX_LIMIT))]
        limit: u64,
        #[command(flatten)]
        filter: portcullis_core::command::LogFilter,
    },
    /// Check the hash chain, every signature, that the log ends at its signed head, and every
    /// finished recording; exit non-zero naming the first bad record.
    #[command(
        after_help = "Examples:\n  portcullis audit verify\n  portcullis audit verify --data-dir /var/lib/portcullis-approver --signing-key ed25519:…   # approver stopped\n\nOffline, pin the approver's public key (the grant-signing line of `portcullis keys`, with or\nwithout its label): without --signing-key the key inside DIR is used, and anyone able to\nreplace files in DIR could have re-signed the whole log.\n\nExit status: 0 the log is intact; 1 it was tampered with (the message names what);\n2 it could not be verified (the store is in use by a running approver, a file cannot be\nread, a bad --signing-key, the approver unreachable)."
    )]
    Verify {
        /// Verify a stopped approver's store directly instead of asking the approver.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// With --data-dir: the approver's public signing key to verify against
        /// (`ed25519:BASE64`, as `portcullis keys` prints it), instead of the key inside DIR.
        #[arg(long, value_name = "KEY", requires = "data_dir")]
        signing_key: Option<String>,
    },
    /// Sessions through the gateways (`--live`: still open).
    #[command(
        after_help = "Example:\n  portcullis audit -l audrey sessions --since 24h --user alice"
    )]
    Sessions {
        /// Only this user's sessions.
        #[arg(long, value_name = "USER")]
        user: Option<String>,
        #[arg(long)]
        target: Option<String>,
        /// Only sessions started within this long, e.g. 1h, 7d.
        #[arg(long, value_name = "DURATION")]
        since: Option<String>,
        #[arg(long)]
        live: bool,
        /// Show at most this many, the newest (default 1000); a last line says how many more.
        #[arg(long, value_name = "N", default_value_t = portcullis_core::command::DEFAULT_LIMIT, value_parser = clap::value_parser!(u64).range(1..=portcullis_core::command::MAX_LIMIT))]
        limit: u64,
    },
    /// Play a recorded session in this terminal with its timing.
    #[command(
        after_help = "Example:\n  portcullis audit replay gw-1-3fa2-17 --speed 4 --idle-limit 2s"
    )]
    Replay {
        session: String,
        /// Play this many times faster.
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        /// Never pause longer than this between two events.
        #[arg(long, value_name = "DURATION")]
        idle_limit: Option<String>,
    },
    /// Write a recorded session as asciicast v2, for `asciinema play`.
    #[command(
        after_help = "Example:\n  portcullis audit export gw-1-3fa2-17 > session.cast && asciinema play session.cast"
    )]
    Export { session: String },
}

/// How the thin clients reach and authenticate to the approver. Every setting is optional
/// here: what no flag or variable gives comes from the profile, then from the defaults.
#[derive(Debug, Clone, Args)]
pub struct ClientOpts {
    /// The approver's control port (default: the profile's, else 127.0.0.1:2223).
    #[arg(
        long,
        env = "PORTCULLIS_APPROVER",
        value_name = "HOST:PORT",
        global = true
    )]
    pub approver: Option<String>,
    /// Private key to log in with (default: the profile's, else ssh-agent, then
    /// ~/.ssh/id_ed25519).
    #[arg(
        short = 'i',
        long = "identity",
        env = "PORTCULLIS_IDENTITY",
        value_name = "KEYFILE",
        global = true
    )]
    pub identity: Option<PathBuf>,
    /// Your portcullis user name (default: the profile's, else $USER). Give it before the
    /// command: after it, `--user` is that command's own filter (`grants --user bob`).
    #[arg(
        id = "login",
        short = 'l',
        long = "user",
        env = "PORTCULLIS_USER",
        value_name = "NAME"
    )]
    pub user: Option<String>,
    /// Pin the approver's host key (`ssh-ed25519 AAAA…`) instead of the profile's or known_hosts.
    #[arg(
        long,
        env = "PORTCULLIS_APPROVER_HOST_KEY",
        value_name = "KEY",
        global = true
    )]
    pub approver_host_key: Option<String>,
    /// known_hosts file for accept-new, instead of the profile's pin (default:
    /// ~/.config/portcullis/known_hosts).
    #[arg(
        long,
        env = "PORTCULLIS_KNOWN_HOSTS",
        value_name = "FILE",
        global = true
    )]
    pub known_hosts: Option<PathBuf>,
    /// The profile to read (and `login` to write) instead of
    /// ~/.config/portcullis/profile.toml.
    #[arg(long, env = "PORTCULLIS_PROFILE", value_name = "FILE", global = true)]
    pub profile: Option<PathBuf>,
    /// Print one JSON document on stdout (JSON Lines for `audit log`).
    #[arg(long, global = true)]
    pub json: bool,
}

/// What `portcullis keys` can do besides printing the public keys.
#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Prepare a new key; see `--signing`.
    #[command(
        after_help = "Example:\n  portcullis keys rotate --signing --config /etc/portcullis/portcullis.toml\n\nRoll-out, with no session cut:\n  1. portcullis keys rotate --signing   prints grant-signing-next ed25519:NEW\n  2. on every gateway: grant_signing_key = [\"ed25519:OLD\", \"ed25519:NEW\"], restart it\n  3. restart the approver: it signs with NEW from then on (a signing_key.rotated audit event)\n  4. once grants signed by OLD have ended (the longest max_duration), drop OLD from the\n     gateways' lists and restart them; verify the audit log with --signing-key ed25519:NEW"
    )]
    Rotate {
        /// A new grant-signing key: made now beside the current one, put in force at the
        /// approver's next start.
        #[arg(long)]
        signing: bool,
    },
    /// Print known_hosts lines for the gateway and the approver, ready to paste.
    #[command(
        name = "known-hosts",
        after_help = "Examples:\n  portcullis keys known-hosts --config /etc/portcullis/portcullis.toml --host bastion.example.com\n  portcullis keys known-hosts --config portcullis.toml >> ~/.ssh/known_hosts\n\nOne line per daemon in the file, `[HOST]:PORT ssh-ed25519 AAAA…` (the bare HOST on port 22),\ngateway first: give developers the gateway's line for ~/.ssh/known_hosts, and operators the\napprover's for ~/.config/portcullis/known_hosts (or use `portcullis login`, which pins it).\nHOST is the listen address's IP, or --host when users reach the machine by a name (required\nwhen it listens on 0.0.0.0). Read as the daemon's user: its data directory is its own."
    )]
    KnownHosts {
        /// The name users reach the daemons by (default: the IP they listen on).
        #[arg(long, value_name = "NAME")]
        host: Option<String>,
    },
}

/// Resolves at SIGTERM (what systemd's stop sends) or SIGINT (Ctrl-C), with its name: a
/// daemon then stops gracefully, and records why.
async fn termination() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = tokio::signal::ctrl_c() => "SIGINT",
            };
            tracing::info!("{name}: stopping");
            return name;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    "SIGINT"
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Approver { config, log } => {
            logging::init(log.log_format, "info");
            setup::preflight(&config, setup::Daemon::Approver)?;
            let app = portcullis_approver::Approver::open(
                &config,
                Arc::new(portcullis_core::SystemClock),
            )?;
            app.record_start().await?;
            portcullis_approver::serve_until(app, termination()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Gateway { config, log } => {
            logging::init(log.log_format, "info");
            setup::preflight(&config, setup::Daemon::Gateway)?;
            portcullis_gateway::run_until(
                &config,
                Arc::new(portcullis_core::SystemClock),
                termination(),
            )
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Admin { conn, command } => {
            let line = ControlLine {
                json: conn.json,
                command,
            };
            client_cmd::run(&conn, &line).await
        }
        Command::Request { conn, args } => {
            let line = ControlLine {
                json: conn.json,
                command: ControlCommand::Request(args),
            };
            client_cmd::run(&conn, &line).await
        }
        Command::Audit { conn, command } => audit(&conn, command).await,
        Command::Keys { config, action } => keys(config, action),
        Command::Login { conn } => login::login(&conn).await,
        Command::Quickstart { dir } => {
            // Warnings only: the quickstart's own output is the lines to try.
            logging::init(LogFormat::Text, "warn");
            crate::quickstart::run(&dir).await
        }
        Command::Check { config } => setup::check(&config),
        Command::Init {
            dir,
            user,
            key,
            data_root,
            approver_user,
            gateway_user,
        } => {
            let context = format!("init {}", dir.display());
            init::init(init::InitOptions {
                dir,
                user,
                key,
                data_root,
                approver_user,
                gateway_user,
            })
            .with_context(|| context)
        }
    }
}

/// `portcullis audit …`: offline verification reads the store itself; everything else is a
/// command to the approver.
async fn audit(conn: &ClientOpts, command: AuditCli) -> anyhow::Result<ExitCode> {
    let command = match command {
        AuditCli::Verify {
            data_dir: Some(dir),
            signing_key,
        } => return Ok(verify::verify_offline(&dir, signing_key.as_deref())),
        AuditCli::Verify { data_dir: None, .. } => {
            let line = ControlLine {
                json: conn.json,
                command: ControlCommand::Audit(AuditCommand::Verify),
            };
            // Not reaching the approver is "could not verify" (2), never "tampered" (1).
            return match client_cmd::run(conn, &line).await {
                Ok(code) => Ok(code),
                Err(e) => {
                    eprintln!("portcullis: could not verify: {e:#}");
                    Ok(ExitCode::from(verify::VERIFY_UNVERIFIED))
                }
            };
        }
        AuditCli::Log {
            since,
            limit,
            filter,
        } => AuditCommand::Log {
            since,
            limit,
            filter,
        },
        AuditCli::Sessions {
            user,
            target,
            since,
            live,
            limit,
        } => AuditCommand::Sessions {
            user,
            target,
            since,
            live,
            limit,
        },
        AuditCli::Replay {
            session,
            speed,
            idle_limit,
        } => AuditCommand::Replay {
            session,
            speed,
            idle_limit,
        },
        AuditCli::Export { session } => AuditCommand::Export { session },
    };
    let line = ControlLine {
        json: conn.json,
        command: ControlCommand::Audit(command),
    };
    client_cmd::run(conn, &line).await
}

/// `portcullis keys [rotate --signing | known-hosts]`: all of them need the config.
fn keys(config: Option<PathBuf>, action: Option<KeysAction>) -> anyhow::Result<ExitCode> {
    let Some(config) = config else {
        anyhow::bail!("which config? pass --config FILE");
    };
    match action {
        None => setup::keys(&config),
        Some(KeysAction::Rotate { signing: true }) => setup::rotate_signing(&config),
        Some(KeysAction::Rotate { signing: false }) => {
            anyhow::bail!("rotate what? `portcullis keys rotate --signing --config FILE`")
        }
        Some(KeysAction::KnownHosts { host }) => setup::known_hosts(&config, host.as_deref()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        // Clap's own checks (unique flags per command, …) over every subcommand.
        Cli::command().debug_assert();
    }

    fn check_examples(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for sub in cmd.get_subcommands() {
            if sub.is_hide_set() || sub.get_name() == "help" {
                continue;
            }
            let here = format!("{path} {}", sub.get_name());
            let has_children = sub.get_subcommands().any(|s| s.get_name() != "help");
            let text = sub
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            if !has_children && !text.contains("Example") {
                missing.push(here.clone());
            }
            check_examples(sub, &here, missing);
        }
    }

    #[test]
    fn every_command_has_an_example_in_its_help() {
        let mut missing = Vec::new();
        check_examples(&Cli::command(), "portcullis", &mut missing);
        check_examples(
            &portcullis_core::command::ControlLine::command(),
            "ssh … ",
            &mut missing,
        );
        assert!(missing.is_empty(), "no example in the help of: {missing:?}");
    }

    #[test]
    fn the_help_states_the_default_ports() {
        use portcullis_core::config::{DEFAULT_APPROVER_LISTEN, DEFAULT_GATEWAY_LISTEN};
        let cli = Cli::command();
        for (sub, listen) in [
            ("approver", DEFAULT_APPROVER_LISTEN),
            ("gateway", DEFAULT_GATEWAY_LISTEN),
        ] {
            let port = listen.rsplit(':').next().unwrap_or_default();
            let about = cli
                .find_subcommand(sub)
                .and_then(|c| c.get_about())
                .map(|a| a.to_string())
                .unwrap_or_default();
            assert!(
                about.contains(&format!("port {port} by default")),
                "{about}"
            );
        }
    }

    #[test]
    fn the_thin_clients_help_states_the_default_approver() {
        let default = portcullis_core::config::DEFAULT_APPROVER_LISTEN;
        let mut cli = Cli::command();
        let admin = cli
            .find_subcommand_mut("admin")
            .map(|c| c.render_long_help());
        let text = admin.map(|h| h.to_string()).unwrap_or_default();
        assert!(text.contains(&format!("else {default})")), "{text}");
        assert!(text.contains(&format!("defaults: {default},")), "{text}");
    }

    #[test]
    fn login_and_filter_users_stay_apart() {
        let cli = Cli::try_parse_from([
            "portcullis",
            "admin",
            "-l",
            "alice",
            "grants",
            "--user",
            "bob",
        ])
        .unwrap();
        match cli.command {
            Command::Admin { conn, command } => {
                assert_eq!(conn.user.as_deref(), Some("alice"));
                assert!(
                    matches!(command, ControlCommand::Grants { user: Some(u), .. } if u == "bob")
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
