//! Key files given to the thin clients (`-i`, `PORTCULLIS_IDENTITY`, `~/.ssh/id_*`) that
//! portcullis does not sign itself, signed by OpenSSH's own `ssh-agent`, started privately for
//! the one login and stopped after it:
//! - RSA: portcullis does no RSA private-key operation anywhere. The `rsa` crate's advisory
//!   RUSTSEC-2023-0071 (a timing side channel, "Marvin") concerns exactly those, and portcullis
//!   uses the crate only to verify (see deny.toml, docs/threat-model.md).
//! - FIDO (`sk-*`): the file holds only a handle; the security key signs, reached through
//!   OpenSSH's `ssh-sk-helper` and its provider (`SSH_SK_PROVIDER`, else the built-in one),
//!   asking for the touch as `ssh` does.
//!
//! A key already in the user's ssh-agent is signed there too, so nothing changes for it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use russh::client::Handle;
use russh::keys::agent::client::AgentClient;
use russh::keys::{Algorithm, HashAlg, PublicKey};

use crate::client::SshError;

/// An `ssh-agent -D` holding one key, in a private directory; stopped when dropped.
pub(crate) struct PrivateAgent {
    child: tokio::process::Child,
    dir: PathBuf,
    sock: PathBuf,
}

/// Whether a key file of this kind is signed by a private agent rather than in process.
pub(crate) fn signs(key: &russh::keys::PrivateKey) -> bool {
    key.algorithm().is_rsa()
        || matches!(
            key.algorithm(),
            Algorithm::SkEd25519 | Algorithm::SkEcdsaSha2NistP256
        )
}

fn missing(what: &str, e: impl std::fmt::Display) -> SshError {
    SshError::Identity(format!(
        "RSA and FIDO key files are signed by OpenSSH's ssh-agent (portcullis itself never \
         signs with RSA, and only the security key signs for a FIDO key), and {what} failed: \
         {e}; load the key with `ssh-add` and leave out -i"
    ))
}

impl PrivateAgent {
    /// Start an agent and add the key at `path` to it.
    pub(crate) async fn holding(path: &Path) -> Result<PrivateAgent, SshError> {
        let dir = std::env::temp_dir().join(format!(
            "portcullis-agent-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        crate::keyfile::create_private_dir(&dir).map_err(|e| missing("a private directory", e))?;
        let sock = dir.join("agent.sock");
        let mut command = tokio::process::Command::new("ssh-agent");
        command.arg("-D").arg("-a").arg(&sock);
        // ssh-agent loads only providers under the system's library directories unless told;
        // a provider the user chose (ssh-add reads the same variable) is allowed by its path.
        if let Some(provider) = std::env::var_os("SSH_SK_PROVIDER").filter(|p| !p.is_empty()) {
            command.arg("-P").arg(provider);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(missing("starting ssh-agent", e));
            }
        };
        let agent = PrivateAgent { child, dir, sock };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !agent.sock.exists() {
            if Instant::now() > deadline {
                return Err(missing("ssh-agent", "its socket did not appear within 5 s"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let added = tokio::process::Command::new("ssh-add")
            .arg("-q")
            .arg(path)
            .env("SSH_AUTH_SOCK", &agent.sock)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| missing("running ssh-add", e))?;
        if !added.status.success() {
            let why = String::from_utf8_lossy(&added.stderr).trim().to_string();
            return Err(missing("ssh-add", why));
        }
        Ok(agent)
    }

    /// Log in as `user` with `key`, signed by this agent.
    pub(crate) async fn authenticate<H: russh::client::Handler>(
        &self,
        handle: &mut Handle<H>,
        user: &str,
        key: &PublicKey,
        hash: Option<HashAlg>,
    ) -> Result<bool, SshError> {
        let mut agent = AgentClient::connect_uds(&self.sock)
            .await
            .map_err(|e| missing("reaching ssh-agent", e))?;
        let res = handle
            .authenticate_publickey_with(user, key.clone(), hash, &mut agent)
            .await
            .map_err(|e| missing("signing through ssh-agent", e))?;
        Ok(res.success())
    }
}

impl PrivateAgent {
    /// Log in as `user` with the certificate `cert`, signed by this agent.
    pub(crate) async fn authenticate_certificate<H: russh::client::Handler>(
        &self,
        handle: &mut Handle<H>,
        user: &str,
        cert: russh::keys::Certificate,
        hash: Option<HashAlg>,
    ) -> Result<bool, SshError> {
        let mut agent = AgentClient::connect_uds(&self.sock)
            .await
            .map_err(|e| missing("reaching ssh-agent", e))?;
        let res = handle
            .authenticate_certificate_with(user, cert, hash, &mut agent)
            .await
            .map_err(|e| missing("signing through ssh-agent", e))?;
        Ok(res.success())
    }
}

impl Drop for PrivateAgent {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
