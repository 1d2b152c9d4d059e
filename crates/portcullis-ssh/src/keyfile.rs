//! Key files: OpenSSH-format ed25519 private keys, created with mode 0600 (in directories of
//! mode 0700) on first use, whatever the umask. The grant-signing key is an ed25519 key too,
//! kept in the same format so that one loader and one set of file permissions cover every
//! secret.
//!
//! A key is trusted only if it is private: a regular file (not a symbolic link), owned by the
//! user running portcullis, and neither readable nor writable by group or others. A key someone
//! else could have planted or read is refused with the command that fixes it, as OpenSSH
//! refuses an unprotected private key. Nothing is written through a symbolic link.

use std::io::Write as _;
use std::path::Path;

use russh::keys::ssh_key::LineEnding;
use russh::keys::{Algorithm, PrivateKey};

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read key {path}: {source}")]
    Read {
        path: String,
        source: russh::keys::Error,
    },
    #[error("cannot write key {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot make a key: {0}")]
    Generate(String),
    #[error("key {path} is not an ed25519 key")]
    NotEd25519 { path: String },
    #[error("key {path} is an RSA key: portcullis's own keys are ed25519 or ECDSA (it never signs with RSA)")]
    Rsa { path: String },
    #[error("refusing {path}: {why}")]
    NotPrivate { path: String, why: String },
}

/// Load the key at `path`, or create a fresh ed25519 key there (and its directory).
/// Returns the key and whether it was created.
pub fn load_or_create(path: &Path) -> Result<(PrivateKey, bool), KeyFileError> {
    if path.symlink_metadata().is_ok() {
        return load(path).map(|k| (k, false));
    }
    let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
        .map_err(|e| KeyFileError::Generate(e.to_string()))?;
    write_private(path, &key)?;
    Ok((key, true))
}

/// Load an existing key (unencrypted; an encrypted one belongs in ssh-agent), if it is private
/// (see the module comment).
pub fn load(path: &Path) -> Result<PrivateKey, KeyFileError> {
    check_private(path, Kind::File)?;
    let key = russh::keys::load_secret_key(path, None).map_err(|source| KeyFileError::Read {
        path: path.display().to_string(),
        source,
    })?;
    // portcullis never signs with RSA (RUSTSEC-2023-0071, see deny.toml): its own keys are
    // made ed25519, and an RSA key put in their place is refused rather than used.
    if key.algorithm().is_rsa() {
        return Err(KeyFileError::Rsa {
            path: path.display().to_string(),
        });
    }
    Ok(key)
}

fn write_private(path: &Path, key: &PrivateKey) -> Result<(), KeyFileError> {
    let werr = |source| KeyFileError::Write {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        create_private_dir(dir).map_err(werr)?;
    }
    let text = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| KeyFileError::Generate(e.to_string()))?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(werr)?;
    f.write_all(text.as_bytes()).map_err(werr)?;
    f.sync_all().map_err(werr)?;
    let public = key.public_key().to_openssh().unwrap_or_default();
    write_public(
        &path.with_extension("pub"),
        format!("{public}\n").as_bytes(),
    )
    .map_err(werr)?;
    Ok(())
}

/// Write a public file (a `.pub` key) without following a symbolic link planted where it
/// goes: written to a new file beside it, then renamed over it (a rename replaces a link, it
/// does not write through it).
pub fn write_public(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// What [`check_private`] looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
}

/// Refuse `path` unless it is a `kind` (not a symbolic link), owned by the user running this
/// process, and has no permission bits for group or others. The error says how to fix it.
pub fn check_private(path: &Path, kind: Kind) -> Result<(), KeyFileError> {
    let refuse = |why: String| KeyFileError::NotPrivate {
        path: path.display().to_string(),
        why,
    };
    let meta = path.symlink_metadata().map_err(|e| refuse(e.to_string()))?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        return Err(refuse(
            "it is a symbolic link; portcullis keeps its keys and stores in place".into(),
        ));
    }
    match kind {
        Kind::File if !ft.is_file() => return Err(refuse("it is not a regular file".into())),
        Kind::Dir if !ft.is_dir() => return Err(refuse("it is not a directory".into())),
        _ => {}
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            return Err(refuse(format!(
                "it is owned by uid {}, not by the user running portcullis (uid {me}): someone else may have put it there",
                meta.uid()
            )));
        }
        let mode = meta.mode() & 0o777;
        if mode & 0o077 != 0 {
            let want = if kind == Kind::Dir { "700" } else { "600" };
            return Err(refuse(format!(
                "its mode is {mode:04o}, so group or others can reach it: chmod {want} {}",
                path.display()
            )));
        }
    }
    Ok(())
}

/// Create `dir` (and missing parents) with mode 0700, whatever the umask; an existing one is
/// left as it is (see [`check_private`] for refusing it).
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

/// Make this process create files 0600 and directories 0700 (umask 077): stores, spools and
/// recordings are as private as keys, whatever umask the process was started with.
pub fn private_umask() {
    #[cfg(unix)]
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// The ed25519-dalek signing key inside an ed25519 OpenSSH key.
pub fn signing_key(
    key: &PrivateKey,
    path: &Path,
) -> Result<ed25519_dalek::SigningKey, KeyFileError> {
    let kp = key
        .key_data()
        .ed25519()
        .ok_or_else(|| KeyFileError::NotEd25519 {
            path: path.display().to_string(),
        })?;
    Ok(ed25519_dalek::SigningKey::from_bytes(
        &kp.private.to_bytes(),
    ))
}

/// Load or create the grant-signing key.
pub fn load_or_create_signing(
    path: &Path,
) -> Result<(ed25519_dalek::SigningKey, bool), KeyFileError> {
    let (key, created) = load_or_create(path)?;
    Ok((signing_key(&key, path)?, created))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/host_key");
        let (a, created) = load_or_create(&p).unwrap();
        assert!(created);
        let (b, created) = load_or_create(&p).unwrap();
        assert!(!created);
        assert_eq!(a.public_key(), b.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let s1 = load_or_create_signing(&p).unwrap().0;
        assert_eq!(s1.to_bytes(), signing_key(&a, &p).unwrap().to_bytes());
    }

    #[cfg(unix)]
    #[test]
    fn keys_others_can_reach_or_planted_as_links_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        load_or_create(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("mode is 0640") && e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        load(&p).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        let e = load_or_create(&link).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn a_public_file_is_never_written_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "untouched").unwrap();
        let pubfile = dir.path().join("k.pub");
        std::os::unix::fs::symlink(&victim, &pubfile).unwrap();
        load_or_create(&dir.path().join("k")).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
        assert!(!pubfile.symlink_metadata().unwrap().file_type().is_symlink());
    }

    #[cfg(unix)]
    #[test]
    fn directories_are_made_private_whatever_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b/key");
        load_or_create(&p).unwrap();
        for d in [dir.path().join("a"), dir.path().join("a/b")] {
            let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", d.display());
        }
        check_private(&dir.path().join("a/b"), Kind::Dir).unwrap();
    }

    #[test]
    fn garbage_key_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, "not a key").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let e = load_or_create(&p).unwrap_err();
        assert!(e.to_string().contains("cannot read key"), "{e}");
    }
}

/// Where each process keeps its keys, relative to its `data_dir`.
pub mod names {
    /// The approver's SSH host key.
    pub const APPROVER_HOST: &str = "host_key";
    /// The approver's grant-signing key.
    pub const GRANT_SIGNING: &str = "grant_signing_key";
    /// A new grant-signing key prepared by `portcullis keys rotate --signing`, put in force
    /// at the approver's next start.
    pub const GRANT_SIGNING_NEXT: &str = "grant_signing_key.next";
    /// A gateway's SSH host key.
    pub const GATEWAY_HOST: &str = "host_key";
    /// A gateway's client key: how it logs into the approver and into ssh targets.
    pub const GATEWAY_CLIENT: &str = "client_key";
}
