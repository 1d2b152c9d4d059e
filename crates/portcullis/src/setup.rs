//! Local setup commands: `check`, the daemons' start-up checks, and `keys` (print, make,
//! rotate). `init` is in `init.rs`, offline `audit verify` in `verify.rs`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use portcullis_core::keys::format_signing_key;
use portcullis_ssh::keyfile::{self, names};

pub fn check(config: &Path) -> anyhow::Result<ExitCode> {
    match portcullis_approver::read_config(config) {
        Ok((_, cfg)) if nested_data_dirs(&cfg).is_some() => {
            eprintln!(
                "{}: {}",
                config.display(),
                nested_data_dirs(&cfg).unwrap_or_default()
            );
            Ok(ExitCode::from(1))
        }
        Ok((_, cfg)) => {
            // Warnings do not fail the check: the file loads as it is, and a unit's
            // ExecStartPre must not stop on an approver group still being filled.
            for w in cfg.warnings() {
                eprintln!("{}: warning: {w}", config.display());
            }
            let c = &cfg.catalog;
            println!(
                "{}: ok ({} users, {} groups, {} targets, {} policies, {} gateways{}{})",
                config.display(),
                c.users.len(),
                c.groups.len(),
                c.targets.len(),
                c.policies.len(),
                c.gateways.len(),
                if cfg.approver.is_some() {
                    ", [approver]"
                } else {
                    ""
                },
                if cfg.gateway.is_some() {
                    ", [gateway]"
                } else {
                    ""
                },
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Which daemon [`preflight`] is about to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Daemon {
    Approver,
    Gateway,
}

/// A data directory inside (or equal to) the other daemon's: whoever runs one could reach the
/// other's keys, whatever the modes say.
fn nested_data_dirs(cfg: &portcullis_core::config::Config) -> Option<String> {
    let (a, g) = (cfg.approver.as_ref()?, cfg.gateway.as_ref()?);
    let resolve = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let (ad, gd) = (resolve(&a.data_dir), resolve(&g.data_dir));
    (ad.starts_with(&gd) || gd.starts_with(&ad)).then(|| {
        format!(
            "approver.data_dir {} and gateway.data_dir {} overlap: give each daemon a directory of its own (and a user of its own)",
            a.data_dir.display(),
            g.data_dir.display()
        )
    })
}

/// The store (sled) must be this user's: one left behind by a run as root, or planted by
/// someone else, is refused with the fix. Its modes are not checked here: it lies inside the
/// data directory, which the daemon itself refuses unless it is private (0700, its own), and a
/// store copied back from a backup with a looser mode is still out of others' reach.
fn store_is_mine(store: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let Ok(meta) = store.symlink_metadata() else {
            return Ok(());
        };
        let me = rustix::process::geteuid().as_raw();
        if meta.file_type().is_symlink() {
            anyhow::bail!(
                "refusing {}: it is a symbolic link; portcullis keeps its stores in place",
                store.display()
            );
        }
        if meta.uid() != me {
            anyhow::bail!(
                "refusing {}: it is owned by uid {}, not by the user running portcullis (uid {me}): chown -R {me} {}",
                store.display(),
                meta.uid(),
                store.display()
            );
        }
    }
    let _ = store;
    Ok(())
}

/// Checks at a daemon's start that the daemon itself cannot make: its stores are its own and
/// private (the keys and the data directory are checked where they are loaded), and a gateway
/// cannot read the approver's grant-signing key. The gateway faces the internet; whoever takes
/// it over must not be able to sign grants, so a gateway that could read the key (the same
/// user as the approver, or root) refuses to start.
pub fn preflight(config: &Path, daemon: Daemon) -> anyhow::Result<()> {
    let (_, cfg) = portcullis_approver::read_config(config)?;
    if let Some(problem) = nested_data_dirs(&cfg) {
        anyhow::bail!("{}: {problem}", config.display());
    }
    let store = match daemon {
        Daemon::Approver => cfg.approver.as_ref().map(|a| a.data_dir.join("store")),
        Daemon::Gateway => cfg.gateway.as_ref().map(|g| g.data_dir.join("replica")),
    };
    if let Some(store) = store {
        store_is_mine(&store)?;
    }
    if daemon == Daemon::Gateway {
        if let Some(a) = &cfg.approver {
            let key = a.data_dir.join(names::GRANT_SIGNING);
            // Listing the directory is enough: the key is made there at the approver's first
            // start if it is not there yet.
            let reachable =
                std::fs::File::open(&key).is_ok() || std::fs::read_dir(&a.data_dir).is_ok();
            if reachable {
                anyhow::bail!(
                    "refusing to start the gateway: it can read the approver's grant-signing key {} \
                     (the same user as the approver, or root), so whoever takes over this gateway could sign any grant. \
                     Run the gateway as a user of its own (init --data-root prints the steps; see docs/operators.md, Install)",
                    key.display()
                );
            }
        }
    }
    Ok(())
}

/// `s` as one shell word.
pub fn sh_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:@+=,%".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

pub fn public_line(key: &russh::keys::PrivateKey) -> String {
    let mut p = key.public_key().clone();
    p.set_comment("");
    p.to_openssh().unwrap_or_default()
}

/// The public halves of every key a config's processes use, made where missing.
pub struct PublicKeys {
    pub gateway_host: Option<String>,
    pub gateway_client: Option<String>,
    pub approver_host: Option<String>,
    pub grant_signing: Option<String>,
}

pub fn ensure_keys(
    approver_dir: Option<&Path>,
    gateway_dir: Option<&Path>,
) -> anyhow::Result<PublicKeys> {
    let mut k = PublicKeys {
        gateway_host: None,
        gateway_client: None,
        approver_host: None,
        grant_signing: None,
    };
    if let Some(dir) = gateway_dir {
        k.gateway_host = Some(public_line(
            &keyfile::load_or_create(&dir.join(names::GATEWAY_HOST))?.0,
        ));
        k.gateway_client = Some(public_line(
            &keyfile::load_or_create(&dir.join(names::GATEWAY_CLIENT))?.0,
        ));
    }
    if let Some(dir) = approver_dir {
        k.approver_host = Some(public_line(
            &keyfile::load_or_create(&dir.join(names::APPROVER_HOST))?.0,
        ));
        let (signing, _) = keyfile::load_or_create_signing(&dir.join(names::GRANT_SIGNING))?;
        k.grant_signing = Some(format_signing_key(&signing.verifying_key()));
    }
    Ok(k)
}

pub fn keys(config: &Path) -> anyhow::Result<ExitCode> {
    let (_, cfg) = portcullis_approver::read_config(config)?;
    let approver_dir = cfg.approver.as_ref().map(|a| a.data_dir.clone());
    let gateway_dir = cfg.gateway.as_ref().map(|g| g.data_dir.clone());
    if approver_dir.is_none() && gateway_dir.is_none() {
        anyhow::bail!(
            "{} has neither [approver] nor [gateway]: there are no keys to make",
            config.display()
        );
    }
    let k = ensure_keys(approver_dir.as_deref(), gateway_dir.as_deref())?;
    for (label, v) in [
        ("gateway-host", k.gateway_host),
        ("gateway-client", k.gateway_client),
        ("approver-host", k.approver_host),
        ("grant-signing", k.grant_signing),
    ] {
        if let Some(v) = v {
            println!("{label} {v}");
        }
    }
    // What targets with auth = "certificate" trust (TrustedUserCAKeys).
    if let Some(dir) = &gateway_dir {
        println!(
            "target-ca {}",
            portcullis_gateway::target_ca::public_line(dir)?
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `keys rotate --signing`: a new grant-signing key beside the current one
/// (`grant_signing_key.next`), put in force at the approver's next start. Running it again
/// prints the key already prepared.
pub fn rotate_signing(config: &Path) -> anyhow::Result<ExitCode> {
    let (_, cfg) = portcullis_approver::read_config(config)?;
    let Some(approver) = cfg.approver else {
        anyhow::bail!(
            "{} has no [approver]: the signing key lives with the approver",
            config.display()
        );
    };
    let dir = &approver.data_dir;
    let (current, _) = keyfile::load_or_create_signing(&dir.join(names::GRANT_SIGNING))?;
    let (next, made) = keyfile::load_or_create_signing(&dir.join(names::GRANT_SIGNING_NEXT))?;
    let (old, new) = (
        format_signing_key(&current.verifying_key()),
        format_signing_key(&next.verifying_key()),
    );
    println!("grant-signing {old}");
    println!("grant-signing-next {new}");
    eprintln!(
        "{}
roll it out, and no session is cut:
  1. on every gateway: grant_signing_key = [\"{old}\", \"{new}\"], and restart it
  2. restart the approver: it signs with the new key from then on (audit event signing_key.rotated)
  3. once every grant signed by the old key has ended, drop it from the gateways' lists, restart them
  4. pin the new key from now on: portcullis audit verify --signing-key {new}",
        if made {
            "portcullis: a new grant-signing key is ready; the approver puts it in force at its next start"
        } else {
            "portcullis: a new grant-signing key was already prepared (shown above)"
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// One `known_hosts` line for a server on `host:port` with this public key, the way `ssh`
/// looks it up: the bare host on port 22, `[host]:port` on any other.
pub fn known_hosts_line(host: &str, port: u16, key: &str) -> String {
    if port == 22 {
        format!("{host} {key}")
    } else {
        format!("[{host}]:{port} {key}")
    }
}

/// A daemon's host key as its `.pub` file holds it (the private key is the daemon's user's
/// alone; the public half is all a known_hosts line needs).
fn host_key_pub(dir: &Path, name: &str, config: &Path) -> anyhow::Result<String> {
    let path = dir.join(name).with_extension("pub");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            // The key alone, without the comment a hand-made key may carry.
            let key: Vec<&str> = text.split_whitespace().take(2).collect();
            Ok(key.join(" "))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
            "no host key at {} yet: start the daemon once, or run portcullis keys --config {}",
            path.display(),
            config.display()
        ),
        Err(e) => anyhow::bail!(
            "cannot read {}: {e} (run this as the daemon's user, e.g. sudo runuser -u portcullis-gateway -- portcullis keys known-hosts …)",
            path.display()
        ),
    }
}

/// `HOST:PORT` of a listen address, with `host` in place of its IP when given; an unspecified
/// IP (0.0.0.0, ::) names no host users could reach, so then `host` is required.
fn reached_at(what: &str, listen: &str, host: Option<&str>) -> anyhow::Result<(String, u16)> {
    let addr: std::net::SocketAddr = listen
        .parse()
        .with_context(|| format!("{what} listens on {listen:?}, not an IP:PORT"))?;
    let name = match host {
        Some(h) => h.to_string(),
        None if addr.ip().is_unspecified() => anyhow::bail!(
            "{what} listens on {listen} (every interface): pass --host NAME, the name users reach it by"
        ),
        None => addr.ip().to_string(),
    };
    Ok((name, addr.port()))
}

/// `keys known-hosts`: a pasteable known_hosts line for the gateway (users' ~/.ssh/known_hosts)
/// and for the approver (the thin clients' known_hosts, or `ssh -p 2223`). The approver's key
/// is the one `[gateway]` pins where there is one: it is in the config, which every user may
/// read, so the gateway's user can print both lines.
pub fn known_hosts(config: &Path, host: Option<&str>) -> anyhow::Result<ExitCode> {
    let (_, cfg) = portcullis_approver::read_config(config)?;
    let mut lines = Vec::new();
    if let Some(g) = &cfg.gateway {
        let (name, port) = reached_at("the gateway", &g.listen, host)?;
        let key = host_key_pub(&g.data_dir, names::GATEWAY_HOST, config)?;
        lines.push(known_hosts_line(&name, port, &key));
    }
    let (name, port) = match (&cfg.approver, &cfg.gateway) {
        (Some(a), _) => reached_at("the approver", &a.listen, host)?,
        (None, Some(g)) => split_host_port(&g.approver, host)?,
        (None, None) => anyhow::bail!(
            "{} has neither [approver] nor [gateway]: there are no host keys to print",
            config.display()
        ),
    };
    let pinned = cfg
        .gateway
        .as_ref()
        .and_then(|g| g.approver_host_key.clone());
    let key = match (pinned, &cfg.approver) {
        (Some(k), _) => Some(k),
        (None, Some(a)) => Some(host_key_pub(&a.data_dir, names::APPROVER_HOST, config)?),
        (None, None) => None,
    };
    if let Some(key) = key {
        lines.push(known_hosts_line(&name, port, &key));
    }
    for l in lines {
        println!("{l}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `[gateway] approver`, which may be a host name (`approver:2223`).
fn split_host_port(addr: &str, host: Option<&str>) -> anyhow::Result<(String, u16)> {
    let (h, p) = addr
        .rsplit_once(':')
        .with_context(|| format!("approver {addr:?} is not HOST:PORT"))?;
    let port = p
        .parse()
        .with_context(|| format!("approver {addr:?}: bad port"))?;
    Ok((host.unwrap_or(h).to_string(), port))
}
