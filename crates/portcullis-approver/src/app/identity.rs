//! The store's identity: an epoch made at the first start and made anew when a gateway shows
//! a history this store does not have (the store was restored from an older copy or
//! replaced), and the signed snapshot of the whole state such a gateway starts over from.

use portcullis_core::audit_event::{AuditEvent, EventKind};
use portcullis_core::stream::{Change, ChangeBody, SignedChange};

use super::Approver;
use crate::errors::ApproverError;

/// The store's identity: made when the store is first used, made anew when a gateway shows a
/// history the store does not have (see [`Approver::history_diverged`]).
pub(super) const STORE_EPOCH: &str = "store_epoch";

/// A fresh store identity (never 0, which means "none" on the wire).
pub(super) fn new_epoch() -> u64 {
    rand::random::<u64>().max(1)
}

impl Approver {
    /// This store's identity (0 before the first start has made one).
    pub fn epoch(&self) -> Result<u64, ApproverError> {
        Ok(self.store.counter(STORE_EPOCH)?)
    }

    /// `gateway` resumed from a history this store does not have: its revision is past this
    /// store's newest, or its change at that revision is another. The store was restored from
    /// an older copy (or replaced). Take a new identity, so that every gateway re-reads the
    /// whole state instead of resuming, and start new ids above every one that gateway holds.
    /// Returns the new identity.
    pub async fn history_diverged(
        &self,
        gateway: &str,
        gateway_rev: u64,
        max_grant: u64,
    ) -> Result<u64, ApproverError> {
        let old_epoch = self.epoch()?;
        let store_rev = self.store.last_rev()?;
        let new = new_epoch();
        let ids_from = self
            .write(|tx| {
                tx.set_counter(STORE_EPOCH.into(), new);
                let ids_from = tx.raise_request_floor(max_grant);
                tx.audit(AuditEvent::new(
                    "approver",
                    EventKind::StoreHistoryDiverged {
                        gateway: gateway.to_string(),
                        gateway_rev,
                        store_rev,
                        old_epoch,
                        new_epoch: new,
                        ids_from,
                    },
                ));
                Ok(ids_from)
            })
            .await?;
        tracing::warn!(
            "gateway {gateway} is at revision {gateway_rev}, a history this store (at {store_rev}) does not have: \
             the store was restored or replaced. Store identity {old_epoch:016x} -> {new:016x}; new ids from {ids_from}; gateways re-read the whole state"
        );
        Ok(new)
    }

    /// Remember, before it is sent, the snapshot `gateway` is about to start over from at
    /// `rev`: its replica then shows that snapshot's digest at `rev`, which no stored change
    /// has, and must be taken for this store's history when it reconnects (a gateway's very
    /// first stream opens with a snapshot, so every first restart would otherwise look like a
    /// restored store). A store restored from a copy older than this note does not have it,
    /// and so still catches the divergence. One note per gateway, the newest.
    pub(crate) async fn note_snapshot(
        &self,
        gateway: &str,
        rev: u64,
        digest: [u8; 32],
    ) -> Result<(), ApproverError> {
        let (rev_name, digest_name) = snapshot_counters(gateway);
        self.write(|tx| {
            tx.set_counter(rev_name, rev);
            tx.set_counter(digest_name, digest_prefix(&digest));
            Ok(())
        })
        .await
    }

    /// Whether `after` (hex) is the digest of the snapshot this store sent `gateway` at `rev`.
    pub(crate) fn sent_snapshot(
        &self,
        gateway: &str,
        rev: u64,
        after: &str,
    ) -> Result<bool, ApproverError> {
        let (rev_name, digest_name) = snapshot_counters(gateway);
        let Some(after) = hex::decode(after)
            .ok()
            .and_then(|d| <[u8; 32]>::try_from(d).ok())
        else {
            return Ok(false);
        };
        Ok(rev != 0
            && self.store.counter(&rev_name)? == rev
            && self.store.counter(&digest_name)? == digest_prefix(&after))
    }

    /// The whole state as of `rev` (and perhaps a little after: later changes are applied on
    /// top of it, and applying one twice is harmless), for a gateway that must start over.
    pub fn snapshot(&self, rev: u64, epoch: u64) -> Result<SignedChange, ApproverError> {
        let now = self.now();
        let grants = self
            .store
            .grants()?
            .into_iter()
            .filter(|(_, r)| r.signed.grant().is_ok_and(|g| g.is_active(now)))
            .map(|(_, r)| r.signed)
            .collect();
        Ok(SignedChange::seal(
            &self.keys.signing(),
            &Change {
                rev,
                at: now,
                body: ChangeBody::Snapshot {
                    epoch,
                    catalog: (*self.catalog()).clone(),
                    grants,
                },
            },
        ))
    }
}

/// The counters that hold a gateway's last snapshot: its revision, and its digest's first
/// eight bytes (counters are u64; the note tells a restored store's history from this one's,
/// it is not a defence against a gateway that lies, which could show any digest it was sent).
fn snapshot_counters(gateway: &str) -> (String, String) {
    (
        format!("snapshot/{gateway}/rev"),
        format!("snapshot/{gateway}/digest"),
    )
}

fn digest_prefix(digest: &[u8; 32]) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}
