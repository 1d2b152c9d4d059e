//! Local setup commands: `check`, `keys`, `init`, and offline `audit verify`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use portcullis_core::keys::format_signing_key;
use portcullis_ssh::keyfile::{self, names};

pub fn check(config: &Path) -> anyhow::Result<ExitCode> {
    match portcullis_approver::read_config(config) {
        Ok((_, cfg)) => {
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

fn public_line(key: &russh::keys::PrivateKey) -> String {
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
    Ok(ExitCode::SUCCESS)
}

pub fn init(dir: &Path, user: Option<String>, key: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let config_path = dir.join("portcullis.toml");
    if config_path.exists() {
        anyhow::bail!(
            "{} already exists: refusing to overwrite it",
            config_path.display()
        );
    }
    keyfile::create_private_dir(dir)?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))?;
    let user = match user {
        Some(u) => u,
        None => std::env::var("USER").unwrap_or_else(|_| "admin".into()),
    };
    let approver_dir = dir.join("approver");
    let gateway_dir = dir.join("gateway");
    let k = ensure_keys(Some(&approver_dir), Some(&gateway_dir))?;

    let home_key = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".ssh/id_ed25519.pub"));
    let (user_key, key_note) = match key {
        Some(p) => (
            std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?,
            format!("from {}", p.display()),
        ),
        None => match home_key.filter(|p| p.exists()) {
            Some(p) => (
                std::fs::read_to_string(&p)?,
                format!("from {}", p.display()),
            ),
            None => {
                let path = dir.join("user_ed25519");
                let (k, _) = keyfile::load_or_create(&path)?;
                (
                    public_line(&k),
                    format!("made for you in {} (use it with -i)", path.display()),
                )
            }
        },
    };
    let user_key = user_key.trim().to_string();
    portcullis_core::keys::parse_public_key(&user_key).map_err(|e| anyhow::anyhow!("{e}"))?;

    let mut t = String::new();
    let approver_host = k.approver_host.unwrap_or_default();
    let grant_signing = k.grant_signing.unwrap_or_default();
    let gateway_client = k.gateway_client.unwrap_or_default();
    let _ = write!(
        t,
        r#"# portcullis configuration, written by `portcullis init`.
# Validate after editing: portcullis check --config {config}
# Reload a running approver: kill -HUP <pid>, or portcullis admin reload

[approver]
listen = "127.0.0.1:2223"          # control plane: ssh -p 2223 NAME@host COMMAND, portcullis admin …
data_dir = "{approver_dir}"        # sled store and keys (made on first start)
request_ttl = "24h"                # undecided requests lapse after this

[gateway]
listen = "127.0.0.1:2222"          # what developers ssh to
data_dir = "{gateway_dir}"         # replica, recordings, host and client keys
approver = "127.0.0.1:2223"
approver_host_key = "{approver_host}"   # pinned: `portcullis keys` prints it as approver-host
grant_signing_key = "{grant_signing}"   # pinned: grant-signing
expiry_warning = "5m"

[[gateways]]                       # gateways the approver streams grants to
name = "gw-1"
key = "{gateway_client}"           # gateway-client

[[users]]
name = "{user}"                    # key {key_note}
keys = ["{user_key}"]
groups = ["admins", "dev"]

# A target reachable only by port forwarding. Add kind = "ssh" targets with
# login and host_key (ssh-keyscan -t ed25519 HOST) for recorded sessions.
[[targets]]
name = "demo-db"
kind = "tcp"
address = "127.0.0.1:5432"
labels = {{ env = "dev" }}

# Developers get dev targets on their own, in office hours.
[[policies]]
name = "dev-self-service"
match = {{ env = "dev" }}
auto_approve = {{ groups = ["dev"], windows = ["Mon-Sun 00:00-24:00 UTC"] }}
max_duration = "8h"
default_duration = "1h"

# Production needs two people. Uncomment and add a prod target and approver groups:
# [[policies]]
# name = "prod"
# match = {{ env = "prod" }}
# approvers = ["admins"]
# approvals = 2
# max_duration = "4h"
# default_duration = "1h"
# require_reason = true
"#,
        config = config_path.display(),
        approver_dir = approver_dir.display(),
        gateway_dir = gateway_dir.display(),
    );
    portcullis_core::config::parse(&t)
        .map_err(|e| anyhow::anyhow!("generated config is invalid (a bug): {e}"))?;
    std::fs::write(&config_path, t)?;
    println!("wrote {}", config_path.display());
    println!("admin user {user}: key {key_note}");
    println!(
        "start the approver:  portcullis approver --config {}",
        config_path.display()
    );
    println!("then try:            portcullis admin -l {user} status");
    Ok(ExitCode::SUCCESS)
}

pub fn verify_offline(data_dir: &Path) -> anyhow::Result<ExitCode> {
    let signing_path = data_dir.join(names::GRANT_SIGNING);
    let key = keyfile::load(&signing_path)?;
    let signing = keyfile::signing_key(&key, &signing_path)?;
    let store = portcullis_store::Store::open(&data_dir.join("store"))?;
    let files = portcullis_store::Recordings::new(&data_dir.join("recordings"));
    let head = store.audit_head()?;
    match portcullis_audit::verify(&signing.verifying_key(), store.audit_records(), head) {
        Ok(v) => {
            // Recordings are checked against the hashes in the signed end events.
            let hashes = portcullis_audit::recording_hashes(store.audit_records());
            for (session, sha) in &hashes {
                let found = files.sha256(session)?;
                if let Err(b) = portcullis_audit::verify_recording_hash(session, sha, found) {
                    eprintln!("portcullis: audit log verification FAILED: {b}");
                    return Ok(ExitCode::from(1));
                }
            }
            let recordings = hashes.len();
            println!(
                "audit log verified: {} records, chain intact, every signature valid (head {}); {recordings} recordings match their hashes",
                v.records,
                hex_head(&v.head)
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(b) => {
            eprintln!("portcullis: audit log verification FAILED: {b}");
            Ok(ExitCode::from(1))
        }
    }
}

fn hex_head(h: &[u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}
