//! Key files: OpenSSH-format ed25519 private keys, created with mode 0600 on first use.
//! The grant-signing key is an ed25519 key too, kept in the same format so that one loader
//! and one set of file permissions cover every secret.

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
}

/// Load the key at `path`, or create a fresh ed25519 key there (and its directory).
/// Returns the key and whether it was created.
pub fn load_or_create(path: &Path) -> Result<(PrivateKey, bool), KeyFileError> {
    if path.exists() {
        return load(path).map(|k| (k, false));
    }
    let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
        .map_err(|e| KeyFileError::Generate(e.to_string()))?;
    write_private(path, &key)?;
    Ok((key, true))
}

/// Load an existing key (unencrypted; an encrypted one belongs in ssh-agent).
pub fn load(path: &Path) -> Result<PrivateKey, KeyFileError> {
    russh::keys::load_secret_key(path, None).map_err(|source| KeyFileError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn write_private(path: &Path, key: &PrivateKey) -> Result<(), KeyFileError> {
    let werr = |source| KeyFileError::Write {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(werr)?;
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
    std::fs::write(path.with_extension("pub"), format!("{public}\n")).map_err(werr)?;
    Ok(())
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

    #[test]
    fn garbage_key_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, "not a key").unwrap();
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
    /// A gateway's SSH host key.
    pub const GATEWAY_HOST: &str = "host_key";
    /// A gateway's client key: how it logs into the approver and into ssh targets.
    pub const GATEWAY_CLIENT: &str = "client_key";
}
