//! Local setup commands: `check`, `keys`, `init`, and offline `audit verify`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
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

/// The data directories' names under `init --data-root`: the shipped units'
/// `StateDirectory=` (deploy/portcullis-*.service).
pub const APPROVER_STATE: &str = "portcullis-approver";
pub const GATEWAY_STATE: &str = "portcullis-gateway";

pub struct InitOptions {
    pub dir: PathBuf,
    pub user: Option<String>,
    pub key: Option<PathBuf>,
    /// Data directories under this one, one per daemon (the deployed layout), instead of
    /// inside `dir` (a trial as oneself).
    pub data_root: Option<PathBuf>,
    pub approver_user: String,
    pub gateway_user: String,
}

/// A system user name `useradd` takes, so that the printed steps are safe to paste.
fn valid_system_user(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 32
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// `s` as one shell word.
fn sh_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:@+=,%".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Create `dir` and any missing parent with mode 0755 whatever the umask: directories that
/// hold no secret and that both daemons' users must pass through (the config's directory, the
/// data root), like /etc and /var/lib themselves. Existing ones are left as they are.
fn create_shared_dir(dir: &Path) -> anyhow::Result<()> {
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(d) = at {
        if d.as_os_str().is_empty() || d.symlink_metadata().is_ok() {
            break;
        }
        missing.push(d);
        at = d.parent();
    }
    for d in missing.into_iter().rev() {
        std::fs::create_dir(d).with_context(|| format!("cannot create {}", d.display()))?;
        set_mode(d, 0o755)?;
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot chmod {}", path.display()))?;
    }
    let _ = (path, mode);
    Ok(())
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

pub fn init(o: InitOptions) -> anyhow::Result<ExitCode> {
    let config_path = o.dir.join("portcullis.toml");
    if config_path.exists() {
        anyhow::bail!(
            "{} already exists: refusing to overwrite it",
            config_path.display()
        );
    }
    for (what, name) in [
        ("--approver-user", &o.approver_user),
        ("--gateway-user", &o.gateway_user),
    ] {
        if !valid_system_user(name) {
            anyhow::bail!("{what} {name:?}: a system user name is 1-32 of a-z 0-9 _ - (starting with a letter or _)");
        }
    }
    if o.approver_user == o.gateway_user {
        anyhow::bail!(
            "the approver and the gateway need users of their own (both are {:?}): the gateway must not be able to read the grant-signing key",
            o.approver_user
        );
    }
    let deployed = o.data_root.is_some();
    let home_key = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".ssh/id_ed25519.pub"));
    if deployed && o.key.is_none() && !home_key.as_ref().is_some_and(|p| p.exists()) {
        // Before anything is written: a deployed layout never makes an admin's private key.
        anyhow::bail!(
            "give the first admin's public key with --key FILE (their private key stays on their own machine: ssh-keygen -t ed25519 makes one)"
        );
    }
    if deployed {
        create_shared_dir(&o.dir)?;
    } else {
        keyfile::create_private_dir(&o.dir)?;
    }
    let dir = o
        .dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", o.dir.display()))?;
    let (approver_dir, gateway_dir) = match &o.data_root {
        None => (dir.join("approver"), dir.join("gateway")),
        Some(root) => {
            create_shared_dir(root)?;
            let root = root
                .canonicalize()
                .with_context(|| format!("cannot resolve {}", root.display()))?;
            if dir.starts_with(root.join(APPROVER_STATE))
                || dir.starts_with(root.join(GATEWAY_STATE))
            {
                anyhow::bail!(
                    "{} is inside a daemon's data directory: keep the config apart",
                    dir.display()
                );
            }
            (root.join(APPROVER_STATE), root.join(GATEWAY_STATE))
        }
    };
    let user = match o.user {
        Some(u) => u,
        None => std::env::var("USER").unwrap_or_else(|_| "admin".into()),
    };

    // The first admin's key: their public key. A new private key is made only for a trial
    // (no --data-root), in the trial's own directory; a deployed layout never holds an admin's
    // private key, let alone where a daemon could read it.
    let (user_key, key_note) = match o.key {
        Some(p) => (
            std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?,
            format!("from {}", p.display()),
        ),
        None => match home_key.filter(|p| p.exists()) {
            Some(p) => (
                std::fs::read_to_string(&p)?,
                format!("from {}", p.display()),
            ),
            None if deployed => anyhow::bail!(
                "give the first admin's public key with --key FILE (their private key stays on their own machine: ssh-keygen -t ed25519 makes one)"
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
    let k = ensure_keys(Some(&approver_dir), Some(&gateway_dir))?;

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
    if deployed {
        // Public keys, addresses and paths only: both daemons' users read it, as sshd_config.
        keyfile::write_public(&config_path, t.as_bytes())?;
        set_mode(&config_path, 0o644)?;
    } else {
        keyfile::write_public(&config_path, t.as_bytes())?;
    }
    println!("wrote {}", config_path.display());
    println!("admin user {user}: key {key_note}");
    let config_arg = sh_quote(&config_path.display().to_string());
    if !deployed {
        println!("start the approver:  portcullis approver --config {config_arg}");
        println!("then try:            portcullis admin -l {user} status");
        println!(
            "(a trial: the gateway refuses to run as the user who can read the approver's keys; \
             for a real install use --data-root, see docs/operators.md)"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let (au, gu) = (&o.approver_user, &o.gateway_user);
    let (ad, gd) = (
        sh_quote(&approver_dir.display().to_string()),
        sh_quote(&gateway_dir.display().to_string()),
    );
    println!(
        "approver data: {} (store, host_key, grant_signing_key: {au} alone may read it)",
        approver_dir.display()
    );
    println!(
        "gateway data:  {} (replica, recordings, host_key, client_key: {gu} alone may read it)",
        gateway_dir.display()
    );
    println!();
    println!("Next, as root, give each daemon its own user and its own data directory:");
    for (name, home) in [(au, &ad), (gu, &gd)] {
        println!(
            "  id -u {name} >/dev/null 2>&1 || useradd --system --user-group --no-create-home --home-dir {home} --shell /usr/sbin/nologin {name}"
        );
    }
    println!("  chown -R {au}:{au} {ad} && chmod 700 {ad}");
    println!("  chown -R {gu}:{gu} {gd} && chmod 700 {gd}");
    println!();
    println!("Then start them (deploy/portcullis-approver.service and portcullis-gateway.service run these):");
    println!("  systemctl enable --now portcullis-approver portcullis-gateway");
    let shipped = Path::new("/etc/portcullis/portcullis.toml");
    let shipped_root = Path::new("/var/lib");
    if config_path != shipped
        || approver_dir.parent() != Some(shipped_root)
        || au != "portcullis-approver"
        || gu != "portcullis-gateway"
    {
        println!(
            "  (the shipped units use /etc/portcullis, /var/lib and the users portcullis-approver and \
             portcullis-gateway: change ExecStart, StateDirectory, User and Group to match)"
        );
    }
    println!("or by hand:");
    println!("  runuser -u {au} -- portcullis approver --config {config_arg}");
    println!("  runuser -u {gu} -- portcullis gateway --config {config_arg}");
    println!("then try:  portcullis admin -l {user} status");
    Ok(ExitCode::SUCCESS)
}

/// `audit verify`'s exit status: the log is intact.
pub const VERIFY_INTACT: u8 = 0;
/// It was tampered with: the message names what.
pub const VERIFY_TAMPERED: u8 = 1;
/// It could not be verified (a store in use, a file that cannot be read, a bad pin): nothing
/// was found wrong, nothing was proven either.
pub const VERIFY_UNVERIFIED: u8 = 2;

/// Why an offline verify ended without a verdict on the log, or with one.
enum Failed {
    Tampered(String),
    Unverified(anyhow::Error),
}

impl From<anyhow::Error> for Failed {
    fn from(e: anyhow::Error) -> Failed {
        Failed::Unverified(e)
    }
}

/// `audit verify --data-dir DIR [--signing-key KEY]`: verify a stopped approver's store.
pub fn verify_offline(data_dir: &Path, pinned: Option<&str>) -> ExitCode {
    match verify_offline_inner(data_dir, pinned) {
        Ok(()) => ExitCode::from(VERIFY_INTACT),
        Err(Failed::Tampered(what)) => {
            eprintln!("portcullis: audit log verification FAILED: {what}");
            ExitCode::from(VERIFY_TAMPERED)
        }
        Err(Failed::Unverified(e)) => {
            eprintln!("portcullis: could not verify: {e:#}");
            ExitCode::from(VERIFY_UNVERIFIED)
        }
    }
}

fn verify_offline_inner(data_dir: &Path, pinned: Option<&str>) -> Result<(), Failed> {
    let signing_path = data_dir.join(names::GRANT_SIGNING);
    let key = match pinned {
        Some(text) => {
            let pin = portcullis_core::keys::parse_signing_key(text)
                .map_err(|e| anyhow::anyhow!("--signing-key: {e}"))?;
            if let Some(found) = key_in_dir(&signing_path) {
                if found != pin {
                    return Err(Failed::Tampered(format!(
                        "the signing key in {} ({}) is not the pinned key ({}): it was replaced \
                         (and the log can have been re-signed with it), or the pin is another \
                         approver's key",
                        signing_path.display(),
                        format_signing_key(&found),
                        format_signing_key(&pin)
                    )));
                }
            }
            pin
        }
        None => {
            let key = keyfile::load(&signing_path).map_err(anyhow::Error::from)?;
            let found = keyfile::signing_key(&key, &signing_path)
                .map_err(anyhow::Error::from)?
                .verifying_key();
            eprintln!(
                "portcullis: warning: verifying against the signing key found in {dir} ({key}): \
                 anyone able to replace files in {dir} could have re-signed the whole log with a \
                 key of their own. Pin the approver's public key, from the `grant-signing` line \
                 of `portcullis keys` or the gateways' grant_signing_key, kept apart from it: \
                 portcullis audit verify --data-dir {dir} --signing-key ed25519:…",
                dir = data_dir.display(),
                key = format_signing_key(&found)
            );
            found
        }
    };
    let store_dir = data_dir.join("store");
    // sled would make a new, empty store where there is none, and that would "verify".
    if !store_dir.join("db").is_file() {
        return Err(Failed::Unverified(anyhow::anyhow!(
            "there is no store at {}: is {} the approver's data_dir?",
            store_dir.display(),
            data_dir.display()
        )));
    }
    let store = match portcullis_store::Store::open(&store_dir) {
        Ok(s) => s,
        Err(portcullis_store::StoreError::Locked { .. }) => {
            return Err(Failed::Unverified(anyhow::anyhow!(
                "the store at {} is in use by a running approver (sled takes an exclusive \
                 lock): stop the approver or verify online (`portcullis audit verify`)",
                store_dir.display()
            )))
        }
        Err(e) => return Err(Failed::Unverified(e.into())),
    };
    let files = portcullis_store::Recordings::new(&data_dir.join("recordings"));
    let end = portcullis_audit::End {
        signed: store.signed_audit_head().map_err(anyhow::Error::from)?,
        counter: store.audit_head().map_err(anyhow::Error::from)?,
    };
    // The pinned key signed the newest records; each rotation in the log names the key
    // before it, and the hash chain ties the older records to the newer.
    let v = portcullis_audit::KeySchedule::from_log(&key, store.audit_records())
        .and_then(|schedule| {
            portcullis_audit::verify_scheduled(&schedule, store.audit_records(), &end)
        })
        .map_err(|b| Failed::Tampered(b.to_string()))?;
    // Recordings are checked against the hashes in the signed end events.
    let expected = portcullis_audit::expected_recordings(store.audit_records());
    let hashes = expected.present;
    for (session, sha) in &hashes {
        let found = files.sha256(session).map_err(anyhow::Error::from)?;
        portcullis_audit::verify_recording_hash(session, sha, found)
            .map_err(|b| Failed::Tampered(b.to_string()))?;
    }
    if v.signed_head.is_none() && v.records > 0 {
        eprintln!("portcullis: warning: {}", portcullis_audit::UNSIGNED_HEAD);
    }
    let ends = match v.signed_head {
        Some(h) => format!("signed head of {}", h.at.rfc3339()),
        None => "unsigned head".to_string(),
    };
    let removed = match expected.removed.len() {
        0 => String::new(),
        n => format!("; {n} removed by retention (removals in the log)"),
    };
    println!(
        "audit log verified: {} records, chain intact, every signature valid, ends at its {ends} (head {}); {} recordings match their hashes{removed}",
        v.records,
        hex_head(&v.head),
        hashes.len()
    );
    Ok(())
}

/// The public half of the signing key kept in the data directory, to hold against a pin:
/// the private key where this user may read it, else its `.pub` beside it. `None` when
/// neither can be read (an auditor's copy without the secret key needs only the pin).
fn key_in_dir(path: &Path) -> Option<ed25519_dalek::VerifyingKey> {
    if let Ok(key) = russh::keys::load_secret_key(path, None) {
        if let Ok(k) = keyfile::signing_key(&key, path) {
            return Some(k.verifying_key());
        }
    }
    let line = std::fs::read_to_string(path.with_extension("pub")).ok()?;
    let public = russh::keys::PublicKey::from_openssh(line.trim()).ok()?;
    let bytes = public.key_data().ed25519()?.0;
    ed25519_dalek::VerifyingKey::from_bytes(&bytes).ok()
}

fn hex_head(h: &[u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}
