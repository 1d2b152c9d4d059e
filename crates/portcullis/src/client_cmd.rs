//! The thin clients: send one control line to the approver over SSH and relay its output and
//! exit status.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use std::io::IsTerminal as _;

use portcullis_core::command::{ControlCommand, ControlLine};
use portcullis_ssh::{ClientConnection, ConnectOptions, HostKeyPolicy, Identity};

use crate::cli::ClientOpts;

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

fn default_known_hosts() -> anyhow::Result<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME") {
        return Ok(PathBuf::from(x).join("portcullis/known_hosts"));
    }
    home()
        .map(|h| h.join(".config/portcullis/known_hosts"))
        .context("HOME is not set: pass --known-hosts FILE or --approver-host-key KEY")
}

pub fn connect_options(opts: &ClientOpts) -> anyhow::Result<ConnectOptions> {
    let user = match &opts.user {
        Some(u) => u.clone(),
        None => {
            std::env::var("USER").context("no user name: pass -l NAME or set PORTCULLIS_USER")?
        }
    };
    let identity = match &opts.identity {
        Some(path) => Identity::KeyFile(path.clone()),
        None => Identity::AgentThenFiles(
            home()
                .map(|h| vec![h.join(".ssh/id_ed25519")])
                .unwrap_or_default(),
        ),
    };
    let host_key = match &opts.approver_host_key {
        Some(k) => HostKeyPolicy::Pinned(
            portcullis_core::keys::parse_public_key(k)
                .map_err(|e| anyhow::anyhow!("--approver-host-key: {e}"))?,
        ),
        None => HostKeyPolicy::KnownHosts(match &opts.known_hosts {
            Some(p) => p.clone(),
            None => default_known_hosts()?,
        }),
    };
    Ok(ConnectOptions {
        addr: opts.approver.clone(),
        user,
        identity,
        host_key,
        connect_timeout: Duration::from_secs(15),
    })
}

/// Run `line` on the approver; exit with its status.
pub async fn run(opts: &ClientOpts, line: &ControlLine) -> anyhow::Result<ExitCode> {
    let options = connect_options(opts)?;
    let conn = ClientConnection::connect(&options)
        .await
        .with_context(|| format!("approver {}", options.addr))?;
    if let Some(note) = conn.learned_host_key() {
        eprintln!("portcullis: {note}");
    }
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
