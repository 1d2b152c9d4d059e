//! `portcullis init`: a working single-host config with fresh keys, as a trial for oneself or
//! in the deployed layout (`--data-root`: a data directory and a system user per daemon).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use portcullis_ssh::keyfile;

use crate::profile::{self, Installed, Profile};
use crate::setup::{self, sh_quote, PublicKeys};

/// Where init's approver listens, and so where its gateway and its profile point.
const APPROVER_LISTEN: &str = "127.0.0.1:2223";

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

/// Where init puts things, resolved.
struct Layout {
    config_path: PathBuf,
    approver_dir: PathBuf,
    gateway_dir: PathBuf,
    /// `--data-root`: the daemons run as users of their own.
    deployed: bool,
}

/// The first admin's key as init found or made it.
struct AdminKey {
    /// The public key line that goes into the config.
    public: String,
    /// Where it came from, for the config's comment and the summary.
    note: String,
    /// Its private half, for the profile, where init made it or found it beside the public
    /// one, unencrypted and not already the clients' default (~/.ssh/id_ed25519).
    private: Option<PathBuf>,
}

const NEED_ADMIN_KEY: &str = "give the first admin's public key with --key FILE (their private key stays on their own machine: ssh-keygen -t ed25519 makes one)";

pub fn init(o: InitOptions) -> anyhow::Result<ExitCode> {
    check_options(&o)?;
    let home_key = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".ssh/id_ed25519.pub"));
    if o.data_root.is_some() && o.key.is_none() && !home_key.as_ref().is_some_and(|p| p.exists()) {
        // Before anything is written: a deployed layout never makes an admin's private key.
        anyhow::bail!("{NEED_ADMIN_KEY}");
    }
    let layout = make_layout(&o)?;
    let user = match &o.user {
        Some(u) => u.clone(),
        None => std::env::var("USER").unwrap_or_else(|_| "admin".into()),
    };
    let admin = admin_key(o.key.as_deref(), home_key, &layout)?;
    let k = setup::ensure_keys(Some(&layout.approver_dir), Some(&layout.gateway_dir))?;
    let client = Profile {
        approver: Some(APPROVER_LISTEN.to_string()),
        user: Some(user.clone()),
        identity: admin.private.clone(),
        approver_host_key: k.approver_host.clone(),
    };
    let text = render_config(&layout, &user, &admin, k);
    portcullis_core::config::parse(&text)
        .map_err(|e| anyhow::anyhow!("generated config is invalid (a bug): {e}"))?;
    keyfile::write_public(&layout.config_path, text.as_bytes())?;
    if layout.deployed {
        // Public keys, addresses and paths only: both daemons' users read it, as sshd_config.
        set_mode(&layout.config_path, 0o644)?;
    }
    println!("wrote {}", layout.config_path.display());
    println!("admin user {user}: key {}", admin.note);
    if layout.deployed {
        print_deployed_steps(&o, &layout, &client);
    } else {
        let local = layout.config_path.with_file_name("profile.toml");
        let installed = profile::install(&local, &client, "`portcullis init`")?;
        print_trial_steps(&layout, &local, &installed);
    }
    Ok(ExitCode::SUCCESS)
}

/// Everything that can be refused before anything is written.
fn check_options(o: &InitOptions) -> anyhow::Result<()> {
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
    Ok(())
}

/// Make the config's directory and, for a deployed layout, the data root; say where each
/// daemon's data goes.
fn make_layout(o: &InitOptions) -> anyhow::Result<Layout> {
    let deployed = o.data_root.is_some();
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
    Ok(Layout {
        config_path: dir.join("portcullis.toml"),
        approver_dir,
        gateway_dir,
        deployed,
    })
}

/// The first admin's key: their public key. A new private key is made only for a trial (no
/// --data-root), in the trial's own directory; a deployed layout never holds an admin's
/// private key, let alone where a daemon could read it.
fn admin_key(
    given: Option<&Path>,
    home_key: Option<PathBuf>,
    layout: &Layout,
) -> anyhow::Result<AdminKey> {
    let (public, note, private) = match given {
        Some(p) => (
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
            format!("from {}", p.display()),
            private_half(p),
        ),
        None => match home_key.filter(|p| p.exists()) {
            // Its private half is the thin clients' default already.
            Some(p) => (
                std::fs::read_to_string(&p)?,
                format!("from {}", p.display()),
                None,
            ),
            None if layout.deployed => anyhow::bail!("{NEED_ADMIN_KEY}"),
            None => {
                let dir = layout.config_path.parent().unwrap_or(Path::new("."));
                let path = dir.join("user_ed25519");
                let (k, _) = keyfile::load_or_create(&path)?;
                (
                    setup::public_line(&k),
                    format!("made for you in {}", path.display()),
                    Some(path),
                )
            }
        },
    };
    let public = public.trim().to_string();
    portcullis_core::keys::parse_public_key(&public).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(AdminKey {
        public,
        note,
        private,
    })
}

/// `KEY` beside `KEY.pub`, if it is there and usable without a passphrase (an encrypted key
/// belongs in ssh-agent, which the clients try when the profile names no key).
fn private_half(public: &Path) -> Option<PathBuf> {
    if public.extension()? != "pub" {
        return None;
    }
    let private = std::path::absolute(public.with_extension("")).ok()?;
    let default = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".ssh/id_ed25519"));
    if Some(&private) == default.as_ref() {
        return None;
    }
    russh::keys::load_secret_key(&private, None).ok()?;
    Some(private)
}

fn render_config(layout: &Layout, user: &str, admin: &AdminKey, k: PublicKeys) -> String {
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
listen = "{approver_listen}"          # control plane: ssh -p 2223 NAME@host COMMAND, portcullis admin …
data_dir = "{approver_dir}"        # sled store and keys (made on first start)
request_ttl = "24h"                # undecided requests lapse after this

[gateway]
listen = "127.0.0.1:2222"          # what developers ssh to
data_dir = "{gateway_dir}"         # replica, recordings, host and client keys
approver = "{approver_listen}"
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
        config = layout.config_path.display(),
        approver_dir = layout.approver_dir.display(),
        gateway_dir = layout.gateway_dir.display(),
        key_note = admin.note,
        user_key = admin.public,
        approver_listen = APPROVER_LISTEN,
    );
    t
}

fn print_trial_steps(layout: &Layout, local: &Path, installed: &Installed) {
    let config_arg = sh_quote(&layout.config_path.display().to_string());
    let flag = match installed {
        Installed::Default(path) => {
            println!(
                "wrote profile {}: admin, request and audit need no flags",
                path.display()
            );
            String::new()
        }
        Installed::KeptOther { path, why } => {
            println!(
                "kept profile {}: {why}. This approver's profile is {} (to make it the default: cp {} {})",
                path.display(),
                local.display(),
                sh_quote(&local.display().to_string()),
                sh_quote(&path.display().to_string())
            );
            format!(" --profile {}", sh_quote(&local.display().to_string()))
        }
        Installed::NoPlace => {
            println!(
                "wrote profile {} (no HOME for a default one)",
                local.display()
            );
            format!(" --profile {}", sh_quote(&local.display().to_string()))
        }
    };
    println!("start the approver:  portcullis approver --config {config_arg}");
    println!(
        "(a trial: the gateway refuses to run as the user who can read the approver's keys; \
         for a real install use --data-root, see docs/operators.md)"
    );
    println!("then try:            portcullis admin{flag} status");
}

fn print_deployed_steps(o: &InitOptions, layout: &Layout, client: &Profile) {
    let config_arg = sh_quote(&layout.config_path.display().to_string());
    let (au, gu) = (&o.approver_user, &o.gateway_user);
    let (ad, gd) = (
        sh_quote(&layout.approver_dir.display().to_string()),
        sh_quote(&layout.gateway_dir.display().to_string()),
    );
    println!(
        "approver data: {} (store, host_key, grant_signing_key: {au} alone may read it)",
        layout.approver_dir.display()
    );
    println!(
        "gateway data:  {} (replica, recordings, host_key, client_key: {gu} alone may read it)",
        layout.gateway_dir.display()
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
    if layout.config_path != shipped
        || layout.approver_dir.parent() != Some(shipped_root)
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
    // The admin's profile belongs in their own account, which is not the one running init
    // (root, usually): print the login that writes it rather than writing it here.
    let mut login = format!(
        "portcullis login --approver {} -l {}",
        client.approver_or_default(),
        sh_quote(client.user.as_deref().unwrap_or_default())
    );
    if let Some(id) = &client.identity {
        login.push_str(&format!(" -i {}", sh_quote(&id.display().to_string())));
    }
    if let Some(k) = &client.approver_host_key {
        login.push_str(&format!(" --approver-host-key {}", sh_quote(k)));
    }
    println!("then, as the admin (not root), save a profile for the thin clients and try one:");
    println!("  {login}");
    println!("  portcullis admin status");
}
