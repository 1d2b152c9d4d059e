//! Grants in force, indexed by user and target: the lookup a gateway makes on every channel
//! open and at every grant end, so it must not allocate or scan.

use std::collections::HashMap;

use crate::model::Grant;
use crate::time::Timestamp;

#[derive(Debug, Default, Clone)]
pub struct GrantIndex {
    by_user: HashMap<String, HashMap<String, Vec<Grant>>>,
    len: usize,
}

impl GrantIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a grant, or replace the one with the same id (a revocation arrives this way).
    pub fn upsert(&mut self, grant: Grant) {
        let list = self
            .by_user
            .entry(grant.user.clone())
            .or_default()
            .entry(grant.target.clone())
            .or_default();
        match list.iter_mut().find(|g| g.id == grant.id) {
            Some(slot) => *slot = grant,
            None => {
                list.push(grant);
                self.len += 1;
            }
        }
    }

    /// The active grant for `user` on `target` that lasts longest, if any.
    pub fn active(&self, user: &str, target: &str, now: Timestamp) -> Option<&Grant> {
        self.by_user
            .get(user)?
            .get(target)?
            .iter()
            .filter(|g| g.is_active(now))
            .max_by_key(|g| g.ends_at())
    }

    /// Every grant held by `user` (active or not yet pruned).
    pub fn for_user<'a>(&'a self, user: &str) -> impl Iterator<Item = &'a Grant> + 'a {
        self.by_user
            .get(user)
            .into_iter()
            .flat_map(|t| t.values().flatten())
    }

    /// Every grant in the index.
    pub fn iter(&self) -> impl Iterator<Item = &Grant> {
        self.by_user.values().flat_map(|t| t.values().flatten())
    }

    /// Forget grants that have ended by `now`.
    pub fn prune(&mut self, now: Timestamp) {
        let mut removed = 0;
        for targets in self.by_user.values_mut() {
            for list in targets.values_mut() {
                let before = list.len();
                list.retain(|g| g.is_active(now));
                removed += before - list.len();
            }
            targets.retain(|_, l| !l.is_empty());
        }
        self.by_user.retain(|_, t| !t.is_empty());
        self.len -= removed;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Revocation;

    fn grant(id: u64, user: &str, target: &str, end: u64) -> Grant {
        Grant {
            id,
            request: id,
            user: user.into(),
            target: target.into(),
            policy: "p".into(),
            issued_at: Timestamp(0),
            expires_at: Timestamp(end),
            approvers: vec![],
            revoked: None,
        }
    }

    #[test]
    fn finds_the_longest_active_grant_for_the_exact_pair() {
        let mut ix = GrantIndex::new();
        ix.upsert(grant(1, "alice", "db", 100));
        ix.upsert(grant(2, "alice", "db", 200));
        ix.upsert(grant(3, "bob", "db", 300));
        assert_eq!(ix.active("alice", "db", Timestamp(50)).unwrap().id, 2);
        assert_eq!(ix.active("alice", "db", Timestamp(150)).unwrap().id, 2);
        assert!(ix.active("alice", "db", Timestamp(200)).is_none());
        assert!(ix.active("alice", "web", Timestamp(0)).is_none());
        assert!(ix.active("carol", "db", Timestamp(0)).is_none());
    }

    #[test]
    fn a_revocation_replaces_the_grant() {
        let mut ix = GrantIndex::new();
        ix.upsert(grant(1, "alice", "db", 100));
        let mut revoked = grant(1, "alice", "db", 100);
        revoked.revoked = Some(Revocation {
            at: Timestamp(10),
            by: "ada".into(),
            reason: None,
        });
        ix.upsert(revoked);
        assert_eq!(ix.len(), 1);
        assert!(ix.active("alice", "db", Timestamp(20)).is_none());
        ix.prune(Timestamp(20));
        assert!(ix.is_empty());
    }
}
