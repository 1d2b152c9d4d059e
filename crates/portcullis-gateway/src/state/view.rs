//! What the gateway enforces right now: the newest verified catalog and the grants in force,
//! and the changes the approver's stream makes to them. A change is durable in the replica
//! first, then in force, then whoever must act on it is woken (the enforcer, sessions waiting
//! for a grant), all by one method, so that no caller can apply one without the others.

use std::sync::{Arc, RwLockReadGuard, RwLockWriteGuard};

use portcullis_core::catalog::Catalog;
use portcullis_core::grant_index::GrantIndex;
use portcullis_core::locks;
use portcullis_core::model::{Grant, SignedGrant};
use portcullis_core::stream::SignedChange;
use portcullis_core::Timestamp;
use portcullis_store::StoreError;

use super::GatewayState;
use crate::session::EndReason;

/// The catalog and grants in force.
#[derive(Default)]
pub(crate) struct View {
    pub catalog: Option<Arc<Catalog>>,
    pub grants: GrantIndex,
}

impl GatewayState {
    // A poisoned view is taken over (`portcullis_core::locks`): a view that stopped updating
    // after a panic elsewhere would keep enforcing a stale catalog or miss a revocation.
    fn read_view(&self) -> RwLockReadGuard<'_, View> {
        locks::read(&self.view)
    }

    fn write_view(&self) -> RwLockWriteGuard<'_, View> {
        locks::write(&self.view)
    }

    pub(crate) fn catalog(&self) -> Option<Arc<Catalog>> {
        self.read_view().catalog.clone()
    }

    /// The longest-lasting active grant for (user, target).
    pub(crate) fn active_grant(&self, user: &str, target: &str) -> Option<Grant> {
        let now = self.now();
        self.read_view().grants.active(user, target, now).cloned()
    }

    /// `user`'s active grants, by id.
    pub(crate) fn active_grants(&self, user: &str) -> Vec<Grant> {
        let now = self.now();
        let mut active: Vec<Grant> = self
            .read_view()
            .grants
            .for_user(user)
            .filter(|g| g.is_active(now))
            .cloned()
            .collect();
        active.sort_by_key(|g| g.id);
        active
    }

    /// A grant by id, as last received.
    pub(crate) fn grant(&self, user: &str, id: u64) -> Option<Grant> {
        self.read_view()
            .grants
            .for_user(user)
            .find(|g| g.id == id)
            .cloned()
    }

    /// Forget grants that have ended by `now`.
    pub(crate) fn prune_grants(&self, now: Timestamp) {
        self.write_view().grants.prune(now);
    }

    /// A new catalog at revision `rev`: the enforcer re-checks every live session (a user or
    /// key may have gone).
    pub(crate) async fn apply_catalog(
        &self,
        rev: u64,
        digest: Option<[u8; 32]>,
        signed: &SignedChange,
        catalog: Catalog,
    ) -> Result<(), StoreError> {
        self.replica.apply(rev, digest, Some(signed), None).await?;
        self.write_view().catalog = Some(Arc::new(catalog));
        self.enforce_wake.notify_one();
        Ok(())
    }

    /// A grant at revision `rev` (issued, or revoked): sessions waiting for it may open, and
    /// the enforcer's timer must cover its end.
    pub(crate) async fn apply_grant(
        &self,
        rev: u64,
        digest: Option<[u8; 32]>,
        signed: &SignedGrant,
        grant: Grant,
    ) -> Result<(), StoreError> {
        self.replica
            .apply(rev, digest, None, Some((grant.id, signed)))
            .await?;
        self.write_view().grants.upsert(grant);
        self.grants_changed.send_modify(|n| *n += 1);
        self.enforce_wake.notify_one();
        Ok(())
    }

    /// Start over from a snapshot at revision `rev` of store `epoch`: this catalog and exactly
    /// these grants. Sessions on grants it does not hold end at the enforcer's next sweep,
    /// which this wakes.
    pub(crate) async fn apply_snapshot(
        &self,
        rev: u64,
        epoch: u64,
        signed: &SignedChange,
        catalog: Catalog,
        grants: Vec<(Grant, SignedGrant)>,
    ) -> Result<(), StoreError> {
        let held: Vec<(u64, SignedGrant)> = grants.iter().map(|(g, s)| (g.id, s.clone())).collect();
        self.replica.replace_all(rev, epoch, signed, &held).await?;
        {
            let mut v = self.write_view();
            v.catalog = Some(Arc::new(catalog));
            v.grants = GrantIndex::default();
            for (g, _) in grants {
                v.grants.upsert(g);
            }
        }
        self.grants_changed.send_modify(|n| *n += 1);
        self.enforce_wake.notify_one();
        Ok(())
    }

    /// An admin's kill at revision `rev`: the session is cut if it is here.
    pub(crate) async fn apply_kill(
        &self,
        rev: u64,
        digest: Option<[u8; 32]>,
        session: &str,
    ) -> Result<(), StoreError> {
        self.replica.apply(rev, digest, None, None).await?;
        if self.cut_session(session, EndReason::Killed) {
            tracing::info!("session {session}: killed by an admin");
        }
        Ok(())
    }
}
