//! The approver's keys: its SSH host key and its grant-signing key, and the rotation of the
//! signing key that `portcullis keys rotate --signing` prepares and the next start puts in
//! force.

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use ed25519_dalek::SigningKey;
use portcullis_core::audit_event::{AuditEvent, EventKind};
use portcullis_core::Timestamp;
use portcullis_ssh::keyfile::names;
use russh::keys::PrivateKey;

use super::Approver;
use crate::errors::ApproverError;
use crate::locks;

/// The approver's keys: its SSH host key and its grant-signing key.
pub struct ApproverKeys {
    pub host: PrivateKey,
    /// The grant-signing key: swapped once, at start, when a rotation is pending.
    signing: RwLock<SigningKey>,
    /// A new signing key prepared by `portcullis keys rotate --signing`, put in force at start.
    next: Option<SigningKey>,
    data_dir: PathBuf,
}

impl ApproverKeys {
    /// Load the keys in `data_dir`, making any that are missing.
    pub fn load_or_create(data_dir: &Path) -> Result<ApproverKeys, ApproverError> {
        let cfg = ApproverError::Key;
        let (host, _) =
            portcullis_ssh::keyfile::load_or_create(&data_dir.join(names::APPROVER_HOST))
                .map_err(cfg)?;
        let (signing, _) =
            portcullis_ssh::keyfile::load_or_create_signing(&data_dir.join(names::GRANT_SIGNING))
                .map_err(cfg)?;
        let next_path = data_dir.join(names::GRANT_SIGNING_NEXT);
        let next = match next_path.symlink_metadata() {
            Ok(_) => {
                let key = portcullis_ssh::keyfile::load(&next_path).map_err(cfg)?;
                Some(portcullis_ssh::keyfile::signing_key(&key, &next_path).map_err(cfg)?)
            }
            Err(_) => None,
        };
        Ok(ApproverKeys {
            host,
            signing: RwLock::new(signing),
            next,
            data_dir: data_dir.to_path_buf(),
        })
    }

    /// The key everything is signed with now.
    pub fn signing(&self) -> SigningKey {
        locks::read(&self.signing).clone()
    }

    /// Put the prepared key in force: the files first (the current key kept as
    /// `grant_signing_key.retired-MS`, the new one in its place), then memory.
    fn swap_in_next(&self, now: Timestamp) -> Result<Option<SigningKey>, ApproverError> {
        let Some(next) = &self.next else {
            return Ok(None);
        };
        let io = |what: &str, e: std::io::Error| {
            ApproverError::Config(format!("rotating the signing key: {what}: {e}"))
        };
        let current = self.data_dir.join(names::GRANT_SIGNING);
        let staged = self.data_dir.join(names::GRANT_SIGNING_NEXT);
        let retired = self
            .data_dir
            .join(format!("{}.retired-{}", names::GRANT_SIGNING, now.0));
        std::fs::rename(&current, &retired).map_err(|e| io("retiring the old key", e))?;
        let _ = std::fs::rename(current.with_extension("pub"), retired.with_extension("pub"));
        std::fs::rename(&staged, &current).map_err(|e| io("putting the new key in place", e))?;
        let _ = std::fs::rename(staged.with_extension("pub"), current.with_extension("pub"));
        *locks::write(&self.signing) = next.clone();
        Ok(Some(next.clone()))
    }
}

impl Approver {
    /// A new signing key prepared by `portcullis keys rotate --signing` is put in force: the
    /// last record the old key signs says so (`signing_key.rotated`, naming both), so that
    /// `audit verify` with the new key pinned follows the chain back through it; then the new
    /// key signs everything. A start that crashed between the two finds the rotation already
    /// in the log and only swaps the files. Whether it rotated.
    pub(super) async fn rotate_signing_key(&self) -> Result<bool, ApproverError> {
        let Some(next) = &self.keys.next else {
            return Ok(false);
        };
        let old = portcullis_core::keys::format_signing_key(&self.keys.signing().verifying_key());
        let new = portcullis_core::keys::format_signing_key(&next.verifying_key());
        let logged = self.store.audit_records().any(|(_, r)| {
            r.is_ok_and(|r| {
                matches!(&r.event.kind, EventKind::SigningKeyRotated { new: n, .. } if *n == new)
            })
        });
        if old != new && !logged {
            let event = AuditEvent::new(
                "approver",
                EventKind::SigningKeyRotated {
                    old: old.clone(),
                    new: new.clone(),
                },
            );
            // Nothing else writes yet (this runs before the approver serves): the next record
            // after this one is the first the new key signs.
            self.write(|tx| {
                tx.audit(event);
                Ok(())
            })
            .await?;
        }
        self.keys.swap_in_next(self.now())?;
        tracing::warn!("grant-signing key rotated: {old} -> {new}");
        Ok(true)
    }
}
