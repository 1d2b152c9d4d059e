//! The thin clients: send one control line to the approver over SSH and relay its output and
//! exit status.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use std::io::IsTerminal as _;

use portcullis_core::command::{ControlCommand, ControlLine};
use portcullis_ssh::{ClientConnection, ConnectOptions, HostKeyPolicy, Identity, SshError};

use crate::cli::ClientOpts;
use crate::profile::{self, Loaded, DEFAULT_APPROVER};

fn default_known_hosts() -> anyhow::Result<PathBuf> {
    profile::config_dir()
        .map(|d| d.join("known_hosts"))
        .context("HOME is not set: pass --known-hosts FILE or --approver-host-key KEY")
}

/// The connection settings, each from the first place that gives it: a flag, its
/// `PORTCULLIS_*` variable (clap merges those two), the profile, the built-in default.
pub struct Resolved {
    pub options: ConnectOptions,
    /// The key file named by a flag, the environment or the profile; `None` means ssh-agent,
    /// then ~/.ssh/id_ed25519.
    pub identity: Option<PathBuf>,
    pub profile: Option<Loaded>,
    /// The approver's address came from the profile.
    pub addr_from_profile: bool,
}

impl Resolved {
    /// "approver ADDR", and the profile when the address came from it: a stale profile is
    /// the first thing to suspect when that approver cannot be reached.
    pub fn what(&self) -> String {
        match &self.profile {
            Some(p) if self.addr_from_profile => format!(
                "approver {} (from profile {})",
                self.options.addr,
                p.path.display()
            ),
            _ => format!("approver {}", self.options.addr),
        }
    }
}

pub fn resolve(opts: &ClientOpts, profile: Option<Loaded>) -> anyhow::Result<Resolved> {
    let p = profile.as_ref().map(|l| &l.profile);
    let from_profile = p.and_then(|p| p.approver.clone());
    let addr_from_profile = opts.approver.is_none() && from_profile.is_some();
    let addr = opts
        .approver
        .clone()
        .or(from_profile)
        .unwrap_or_else(|| DEFAULT_APPROVER.to_string());
    let user = match opts.user.clone().or_else(|| p.and_then(|p| p.user.clone())) {
        Some(u) => u,
        None => std::env::var("USER").context(
            "no user name: pass -l NAME, set PORTCULLIS_USER, or save it with portcullis login",
        )?,
    };
    let identity = opts
        .identity
        .clone()
        .or_else(|| p.and_then(|p| p.identity.clone()));
    let key = match &identity {
        Some(path) => Identity::KeyFile(path.clone()),
        None => Identity::AgentThenFiles(
            std::env::var_os("HOME")
                .map(|h| vec![PathBuf::from(h).join(".ssh/id_ed25519")])
                .unwrap_or_default(),
        ),
    };
    // The profile's pin belongs to the profile's approver: pointed elsewhere by a flag or the
    // environment, the client checks that other approver against known_hosts instead.
    let pinned_by_profile = p
        .filter(|p| p.approver_or_default() == addr)
        .and_then(|p| p.host_key());
    let host_key = match (
        &opts.approver_host_key,
        &opts.known_hosts,
        pinned_by_profile,
    ) {
        (Some(k), _, _) => HostKeyPolicy::Pinned(
            portcullis_core::keys::parse_public_key(k)
                .map_err(|e| anyhow::anyhow!("--approver-host-key: {e}"))?,
        ),
        (None, Some(kh), _) => HostKeyPolicy::KnownHosts(kh.clone()),
        (None, None, Some(k)) => HostKeyPolicy::Pinned(k),
        (None, None, None) => HostKeyPolicy::KnownHosts(default_known_hosts()?),
    };
    Ok(Resolved {
        options: ConnectOptions {
            addr,
            user,
            identity: key,
            host_key,
            connect_timeout: Duration::from_secs(15),
        },
        identity,
        profile,
        addr_from_profile,
    })
}

/// Connect as `r` says. Without a profile, a failure to log in says how to save the settings
/// once instead of passing them every time.
pub async fn connect(r: &Resolved) -> anyhow::Result<ClientConnection> {
    match ClientConnection::connect(&r.options).await {
        Ok(conn) => {
            if let Some(note) = conn.learned_host_key() {
                eprintln!("portcullis: {note}");
            }
            Ok(conn)
        }
        Err(e @ (SshError::Identity(_) | SshError::Denied { .. })) if r.profile.is_none() => {
            Err(anyhow::anyhow!(
                "{}: {e}\n(no profile yet: `portcullis login --approver HOST:PORT -l NAME -i KEYFILE` checks these and saves them, then no flags are needed)",
                r.what()
            ))
        }
        Err(e) => Err(anyhow::Error::new(e).context(r.what())),
    }
}

/// Run `line` on the approver; exit with its status.
pub async fn run(opts: &ClientOpts, line: &ControlLine) -> anyhow::Result<ExitCode> {
    let loaded = profile::load(opts.profile.as_deref())?;
    let conn = connect(&resolve(opts, loaded)?).await?;
    let mut out = tokio::io::stdout();
    let mut err = tokio::io::stderr();
    // `wait` on a terminal shows a live countdown to the request's lapse; in a pipe it is quiet.
    let countdown = match &line.command {
        ControlCommand::Wait { id } if std::io::stderr().is_terminal() && !line.json => {
            lapse_time(&conn, *id)
                .await
                .map(|at| tokio::spawn(countdown(*id, at)))
        }
        _ => None,
    };
    let result = conn.run(&line.to_line(), &mut out, &mut err).await;
    if let Some(c) = countdown {
        c.abort();
        eprint!("\r\x1b[2K");
    }
    let result = result?;
    let goodbye = match result.exit_status {
        None => conn.goodbye().await,
        Some(_) => None,
    };
    conn.close().await;
    Ok(match result.exit_status {
        Some(0) => ExitCode::SUCCESS,
        Some(n) => ExitCode::from(u8::try_from(n).unwrap_or(1).max(1)),
        None => {
            match goodbye {
                // The approver said why (`portcullis: approver stopping`).
                Some(why) => eprintln!("{why}"),
                None => {
                    eprintln!("portcullis: the approver closed the channel without an exit status")
                }
            }
            ExitCode::from(1)
        }
    })
}

/// When request `id` lapses if undecided (ms since the epoch), from the approver. Only pending
/// requests are asked for (a decided one needs no countdown): the approver answers those from
/// memory, and the reply stays small however long the history.
async fn lapse_time(conn: &ClientConnection, id: u64) -> Option<u64> {
    // Bounded: the approver decides how long its answer is.
    let (_, out, _) = conn
        .run_with_input("requests --pending --json", &[][..])
        .await
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out).ok()?;
    let r = v["requests"].as_array()?.iter().find(|r| r["id"] == id)?;
    let secs = r["expires_in_secs"].as_u64()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_millis() as u64;
    Some(now + secs * 1000)
}

async fn countdown(id: u64, lapses_at_ms: u64) {
    loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let left = Duration::from_millis(lapses_at_ms.saturating_sub(now));
        eprint!(
            "\r\x1b[2Kwaiting for a decision on request {id}: lapses in {} (Ctrl-C stops waiting)",
            portcullis_core::time::format_duration(left)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
