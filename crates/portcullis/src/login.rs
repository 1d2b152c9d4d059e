//! `portcullis login`: check that the approver answers, that its host key is the one expected
//! (or learn it, as `ssh` does on first use), and that the key logs in as the user; only then
//! save all of it as the profile the thin clients read.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use portcullis_ssh::{ClientConnection, HostKeyPolicy};
use russh::keys::PublicKey;

use crate::cli::ClientOpts;
use crate::client_cmd::{self, Resolved};
use crate::profile::{self, Loaded, Profile};

pub async fn login(opts: &ClientOpts) -> anyhow::Result<ExitCode> {
    let path = match &opts.profile {
        Some(p) => p.clone(),
        None => profile::default_path()
            .context("HOME is not set: say where the profile goes with --profile FILE")?,
    };
    // What the profile said so far fills in what this login leaves out (`login -l bob` keeps
    // the approver); one that cannot be read is replaced, not obeyed.
    let existing = match path.symlink_metadata() {
        Err(_) => None,
        Ok(_) => match profile::read(&path) {
            Ok(p) => Some(Loaded {
                path: path.clone(),
                profile: p,
            }),
            Err(e) => {
                eprintln!("portcullis: {e:#}: login replaces it");
                None
            }
        },
    };
    let r = client_cmd::resolve(opts, existing)?;
    let conn = client_cmd::connect(&r).await?;
    let first_use = conn.learned_host_key().is_some();
    let who = whoami(&conn).await.with_context(|| r.what())?;
    let key = match &r.options.host_key {
        HostKeyPolicy::Pinned(k) => k.clone(),
        HostKeyPolicy::KnownHosts(file) => presented_key(&r, file).await?,
    };
    conn.close().await;

    let mut public = key.clone();
    public.set_comment("");
    let saved = Profile {
        approver: Some(r.options.addr.clone()),
        user: Some(r.options.user.clone()),
        identity: r.identity.as_deref().map(absolute),
        approver_host_key: Some(public.to_openssh()?),
    };
    profile::write(&path, &saved, "`portcullis login`")?;

    let fingerprint = key.fingerprint(Default::default()).to_string();
    if opts.json {
        let doc = serde_json::json!({
            "profile": path.display().to_string(),
            "approver": r.options.addr,
            "user": r.options.user,
            "groups": who.groups,
            "identity": saved.identity.as_ref().map(|p| p.display().to_string()),
            "approver_host_key": saved.approver_host_key,
            "fingerprint": fingerprint,
        });
        println!("{doc}");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "logged in to approver {} as {} (groups: {})",
        r.options.addr,
        r.options.user,
        if who.groups.is_empty() {
            "none".to_string()
        } else {
            who.groups.join(", ")
        }
    );
    println!("approver host key {fingerprint}, pinned");
    if first_use {
        println!(
            "(first contact with this approver: check that fingerprint against its approver-host key, \
             e.g. ssh-keygen -lf on the host_key.pub in its data_dir)"
        );
    }
    println!("wrote {}", path.display());
    let flag = match &opts.profile {
        Some(p) if Some(p) != profile::default_path().as_ref() => {
            format!(" --profile {}", p.display())
        }
        _ => String::new(),
    };
    println!("now try: portcullis admin{flag} status");
    Ok(ExitCode::SUCCESS)
}

struct Who {
    groups: Vec<String>,
}

/// Logging in is not enough: the approver must know the user (a key of another user is
/// refused at login, but say who we are as the approver sees it).
async fn whoami(conn: &ClientConnection) -> anyhow::Result<Who> {
    let (status, out, err) = conn.run_with_input("whoami --json", &[][..]).await?;
    if status.exit_status != Some(0) {
        anyhow::bail!(
            "whoami failed: {}",
            String::from_utf8_lossy(&err)
                .trim()
                .trim_start_matches("portcullis: ")
        );
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out).context("the approver's whoami is not JSON")?;
    let groups = v["groups"]
        .as_array()
        .map(|g| {
            g.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Ok(Who { groups })
}

/// The host key the approver showed, checked against `known_hosts` (learned into it if the
/// host was new). With one key recorded for the host it is that one; with several (of several
/// types), each is tried as a pin until one connects.
async fn presented_key(r: &Resolved, known_hosts: &Path) -> anyhow::Result<PublicKey> {
    let (host, port) = split_addr(&r.options.addr);
    let recorded = russh::keys::known_hosts::known_host_keys_path(&host, port, known_hosts)
        .with_context(|| format!("cannot read {}", known_hosts.display()))?;
    match recorded.as_slice() {
        [(_, only)] => Ok(only.clone()),
        [] => anyhow::bail!(
            "{} has no key for [{host}]:{port} after connecting to it: pass --approver-host-key",
            known_hosts.display()
        ),
        several => {
            for (_, k) in several {
                let mut options = r.options.clone();
                options.host_key = HostKeyPolicy::Pinned(k.clone());
                if let Ok(conn) = ClientConnection::connect(&options).await {
                    conn.close().await;
                    return Ok(k.clone());
                }
            }
            anyhow::bail!(
                "none of the keys {} holds for [{host}]:{port} is the one it offers: pass --approver-host-key",
                known_hosts.display()
            )
        }
    }
}

/// `HOST:PORT` (or `[V6]:PORT`) as the known_hosts lookup wants it; as the SSH client splits it.
fn split_addr(addr: &str) -> (String, u16) {
    match addr.rsplit_once(':') {
        Some((h, p)) => (
            h.trim_start_matches('[').trim_end_matches(']').to_string(),
            p.parse().unwrap_or(22),
        ),
        None => (addr.to_string(), 22),
    }
}

/// A key path that still means the same file when used from another directory.
fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}
