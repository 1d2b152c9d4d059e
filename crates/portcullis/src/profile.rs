//! The thin clients' profile: which approver `portcullis admin|request|audit` talk to, as whom,
//! with which key, and the approver's host key pinned, so that the lines people type need no
//! flags (as `kubectl` has its kubeconfig and `tsh` its profile). `portcullis login`, `init` and
//! `quickstart` write it; flags and `PORTCULLIS_*` variables still win over it.
//!
//! The file is `$XDG_CONFIG_HOME/portcullis/profile.toml` (`~/.config/portcullis/profile.toml`),
//! or the one `--profile FILE` / `PORTCULLIS_PROFILE` names. It holds no secret (the identity
//! is a path), but whoever can change it can point the clients at another server and pin that
//! server's key, so, as `ssh` does with its config, one that others can write is refused.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;

/// The approver address when neither a flag, the environment nor a profile names one.
pub const DEFAULT_APPROVER: &str = portcullis_core::config::DEFAULT_APPROVER_LISTEN;

/// What a profile may say. Every field is optional: a profile that names only the user is
/// fine, and whatever it leaves out comes from the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The approver's control port, `HOST:PORT`.
    pub approver: Option<String>,
    /// The portcullis user to log in as.
    pub user: Option<String>,
    /// The private key to log in with (used as `-i` is). Relative paths are relative to the
    /// profile's directory; `~/` is the home directory.
    pub identity: Option<PathBuf>,
    /// The approver's host key, `ssh-ed25519 AAAA…`: pinned for `approver` only.
    pub approver_host_key: Option<String>,
}

impl Profile {
    /// The approver this profile is for (its pin applies to that address only).
    pub fn approver_or_default(&self) -> &str {
        self.approver.as_deref().unwrap_or(DEFAULT_APPROVER)
    }

    /// The pinned host key, parsed.
    pub fn host_key(&self) -> Option<russh::keys::PublicKey> {
        let k = self.approver_host_key.as_deref()?;
        portcullis_core::keys::parse_public_key(k).ok()
    }
}

/// A profile as read from its file.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub path: PathBuf,
    pub profile: Profile,
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// `$XDG_CONFIG_HOME/portcullis`, else `~/.config/portcullis`: where the profile and the
/// learned known_hosts live.
pub fn config_dir() -> Option<PathBuf> {
    match std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
        Some(x) => Some(PathBuf::from(x).join("portcullis")),
        None => home().map(|h| h.join(".config/portcullis")),
    }
}

/// The profile file the thin clients read when no `--profile` is given: `PORTCULLIS_PROFILE`,
/// else `profile.toml` in [`config_dir`].
pub fn default_path() -> Option<PathBuf> {
    match std::env::var_os("PORTCULLIS_PROFILE").filter(|p| !p.is_empty()) {
        Some(p) => Some(PathBuf::from(p)),
        None => config_dir().map(|d| d.join("profile.toml")),
    }
}

/// Read the profile: `named` (from `--profile` or `PORTCULLIS_PROFILE`) must exist; the
/// default one may be absent (`None`).
pub fn load(named: Option<&Path>) -> anyhow::Result<Option<Loaded>> {
    let path = match named {
        Some(p) => {
            if !p.exists() {
                anyhow::bail!(
                    "profile {} does not exist (`portcullis login --profile {} …` writes one)",
                    p.display(),
                    p.display()
                );
            }
            p.to_path_buf()
        }
        None => match config_dir().map(|d| d.join("profile.toml")) {
            Some(p) if p.symlink_metadata().is_ok() => p,
            _ => return Ok(None),
        },
    };
    read(&path).map(|profile| Some(Loaded { path, profile }))
}

/// Read and check one profile file.
pub fn read(path: &Path) -> anyhow::Result<Profile> {
    check_not_writable_by_others(path)?;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read profile {}", path.display()))?;
    let mut profile: Profile =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("profile {}: {e}", path.display()))?;
    if let Some(k) = &profile.approver_host_key {
        portcullis_core::keys::parse_public_key(k)
            .map_err(|e| anyhow::anyhow!("profile {}: approver_host_key: {e}", path.display()))?;
    }
    if let Some(id) = profile.identity.take() {
        profile.identity = Some(resolve_identity(path, &id));
    }
    Ok(profile)
}

/// `~/x` from the home directory, a relative path from the profile's directory (as
/// kubeconfig resolves its paths), an absolute one as it is.
fn resolve_identity(profile: &Path, id: &Path) -> PathBuf {
    if let (Ok(rest), Some(h)) = (id.strip_prefix("~"), home()) {
        return h.join(rest);
    }
    if id.is_relative() {
        if let Some(dir) = profile.parent() {
            return dir.join(id);
        }
    }
    id.to_path_buf()
}

/// As `ssh` refuses a config file that others could have edited.
fn check_not_writable_by_others(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path)
            .with_context(|| format!("cannot read profile {}", path.display()))?;
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me && meta.uid() != 0 {
            anyhow::bail!(
                "refusing profile {}: it is owned by uid {}, not by you (uid {me}), so someone else could point your client at another server",
                path.display(),
                meta.uid()
            );
        }
        if meta.mode() & 0o022 != 0 {
            anyhow::bail!(
                "refusing profile {}: group or others can write it (mode {:04o}), so they could point your client at another server: chmod 600 {}",
                path.display(),
                meta.mode() & 0o777,
                path.display()
            );
        }
    }
    Ok(())
}

/// `s` as a TOML string.
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The file's text: the fields set, and comments that say what the file is.
pub fn render(p: &Profile, written_by: &str) -> String {
    let mut t = format!(
        "# portcullis client profile, written by {written_by}.\n\
         # `portcullis admin|request|audit` use these unless a flag or PORTCULLIS_* variable\n\
         # says otherwise; `portcullis login` rewrites this file.\n"
    );
    if let Some(a) = &p.approver {
        t.push_str(&format!("approver = {}\n", toml_string(a)));
    }
    if let Some(u) = &p.user {
        t.push_str(&format!("user = {}\n", toml_string(u)));
    }
    if let Some(i) = &p.identity {
        t.push_str(&format!(
            "identity = {}\n",
            toml_string(&i.display().to_string())
        ));
    }
    if let Some(k) = &p.approver_host_key {
        t.push_str(&format!(
            "approver_host_key = {}   # pinned for this approver only\n",
            toml_string(k)
        ));
    }
    t
}

/// Write `p` to `path`, mode 0600, in a directory made 0700 if missing; replaced by a rename,
/// so a reader never sees half a file and a symbolic link planted there is not written through.
pub fn write(path: &Path, p: &Profile, written_by: &str) -> anyhow::Result<()> {
    let text = render(p, written_by);
    // What we write must read back (a path or a name TOML cannot hold would be a bug here).
    toml::from_str::<Profile>(&text)
        .map_err(|e| anyhow::anyhow!("the profile to write is invalid (a bug): {e}"))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        portcullis_ssh::keyfile::create_private_dir(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let werr = || format!("cannot write profile {}", path.display());
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).with_context(werr)?;
    f.write_all(text.as_bytes()).with_context(werr)?;
    f.sync_all().with_context(werr)?;
    drop(f);
    std::fs::rename(&tmp, path).with_context(werr)?;
    Ok(())
}

/// What [`install`] did with the default profile.
#[derive(Debug)]
pub enum Installed {
    /// Written (or rewritten: it was for the same approver, by its host key).
    Default(PathBuf),
    /// An existing profile for another approver was left alone; `why` says whose it is.
    KeptOther { path: PathBuf, why: String },
    /// No HOME or XDG_CONFIG_HOME to put it in.
    NoPlace,
}

/// `init` and `quickstart`: write `p` to `local` (beside the config they wrote), and make it
/// the default profile unless that would replace a profile for another approver. The same
/// approver is recognised by its host key, not its address: two trials on 127.0.0.1:2223 are
/// different approvers, and an approver that moved to another port is still the same.
pub fn install(local: &Path, p: &Profile, written_by: &str) -> anyhow::Result<Installed> {
    write(local, p, written_by)?;
    let Some(default) = default_path() else {
        return Ok(Installed::NoPlace);
    };
    if default.symlink_metadata().is_ok() {
        let why = match read(&default) {
            Ok(old) if old.host_key().is_some() && same_key(&old, p) => None,
            Ok(old) => Some(describe(&old)),
            Err(e) => Some(format!("it cannot be used ({e:#})")),
        };
        if let Some(why) = why {
            return Ok(Installed::KeptOther { path: default, why });
        }
    }
    write(&default, p, written_by)?;
    Ok(Installed::Default(default))
}

fn same_key(a: &Profile, b: &Profile) -> bool {
    match (a.host_key(), b.host_key()) {
        (Some(x), Some(y)) => x.key_data() == y.key_data(),
        _ => false,
    }
}

/// "it is for approver HOST:PORT (host key SHA256:…)", for messages.
pub fn describe(p: &Profile) -> String {
    let key = p
        .host_key()
        .map(|k| format!("host key {}", k.fingerprint(Default::default())))
        .unwrap_or_else(|| "no pinned host key".into());
    format!(
        "it is for approver {} as {} ({key})",
        p.approver_or_default(),
        p.user.as_deref().unwrap_or("$USER")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/profile.toml");
        let (key, _) =
            portcullis_ssh::keyfile::load_or_create(&dir.path().join("keys/host")).unwrap();
        let p = Profile {
            approver: Some("[::1]:2223".into()),
            user: Some("o'brien \"x\"".into()),
            identity: Some(dir.path().join("key with space")),
            approver_host_key: Some(key.public_key().to_openssh().unwrap()),
        };
        write(&path, &p, "a test").unwrap();
        assert_eq!(read(&path).unwrap(), p);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn a_typo_or_a_profile_others_can_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("profile.toml");
        std::fs::write(&path, "approver = \"h:1\"\nusr = \"a\"\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let e = read(&path).unwrap_err().to_string();
        assert!(e.contains("usr"), "{e}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::write(&path, "approver = \"h:1\"\n").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
            let e = read(&path).unwrap_err().to_string();
            assert!(e.contains("chmod 600"), "{e}");
        }
    }

    #[test]
    fn relative_identities_are_relative_to_the_profile() {
        let p = Path::new("/etc/x/profile.toml");
        assert_eq!(
            resolve_identity(p, Path::new("keys/id")),
            Path::new("/etc/x/keys/id")
        );
        assert_eq!(resolve_identity(p, Path::new("/k")), Path::new("/k"));
    }
}
