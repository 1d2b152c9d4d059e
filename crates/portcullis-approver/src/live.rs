//! What is open now, mirrored in memory, and the `wait`ers it wakes.
//!
//! Pending requests and grants not yet ended are mirrored from the store after every commit,
//! so `status`, `requests` and `grants --active` cost what the caller has, not what the store
//! has accumulated. `wait` is cheap per waiter: each waiter sleeps on its own request's
//! notification, which only a commit deciding that request (approval, denial, refusal, expiry)
//! fires, and checks its request here rather than in the store. A commit used to wake every
//! waiter to re-read the store, so many waiters made every commit cost many reads.
//!
//! The mirror and the notifications change together, in [`LiveMirror::commit`], the only way
//! to change either: a waiter is woken only once the mirror says its request is decided.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};

use portcullis_core::grant_index::GrantIndex;
use portcullis_core::model::Request;
use portcullis_core::Timestamp;
use portcullis_store::Batch;
use tokio::sync::Notify;

use crate::locks;

/// Pending requests and grants not yet ended.
#[derive(Debug, Default)]
pub(crate) struct Live {
    pub pending: BTreeMap<u64, Request>,
    pub grants: GrantIndex,
}

impl Live {
    fn apply(&mut self, batch: &Batch, now: Timestamp) {
        for r in &batch.requests {
            if r.is_pending() {
                self.pending.insert(r.id, r.clone());
            } else {
                self.pending.remove(&r.id);
            }
        }
        for (_, rec) in &batch.grants {
            if let Ok(g) = rec.signed.grant() {
                self.grants.upsert(g);
            }
        }
        self.grants.prune(now);
    }
}

/// [`Live`] behind its lock, with the waiters its commits wake.
#[derive(Debug)]
pub(crate) struct LiveMirror {
    state: RwLock<Live>,
    waiters: Arc<Waiters>,
}

impl LiveMirror {
    /// The mirror as the start-up scan of the store found it.
    pub fn new(live: Live, waiters: Arc<Waiters>) -> LiveMirror {
        LiveMirror {
            state: RwLock::new(live),
            waiters,
        }
    }

    /// The mirror now (a poisoned lock is taken over, see [`crate::locks`]).
    pub fn get(&self) -> RwLockReadGuard<'_, Live> {
        locks::read(&self.state)
    }

    /// A batch was committed: mirror it, then wake the waiters of the requests it decided.
    pub fn commit(&self, batch: &Batch, now: Timestamp) {
        locks::write(&self.state).apply(batch, now);
        self.waiters.decided(
            batch
                .requests
                .iter()
                .filter(|r| !r.is_pending())
                .map(|r| r.id),
        );
    }

    /// How many requests `user` has pending.
    pub fn pending_of(&self, user: &str) -> usize {
        self.get()
            .pending
            .values()
            .filter(|r| r.user == user)
            .count()
    }
}

/// The requests someone is waiting on.
#[derive(Debug, Default)]
pub(crate) struct Waiters {
    /// Request id → its notification and how many waiters hold it.
    by_request: Mutex<HashMap<u64, (Arc<Notify>, usize)>>,
}

/// One waiter's place: gives it back when dropped (a waiter that ends or whose client goes).
pub(crate) struct Waiting<'a> {
    waiters: &'a Waiters,
    id: u64,
    pub notify: Arc<Notify>,
}

impl Waiters {
    fn map(&self) -> MutexGuard<'_, HashMap<u64, (Arc<Notify>, usize)>> {
        locks::lock(&self.by_request)
    }

    /// Start waiting on request `id`.
    pub fn register(&self, id: u64) -> Waiting<'_> {
        let mut map = self.map();
        let entry = map
            .entry(id)
            .or_insert_with(|| (Arc::new(Notify::new()), 0));
        entry.1 += 1;
        Waiting {
            waiters: self,
            id,
            notify: entry.0.clone(),
        }
    }

    /// Wake the waiters of these requests, and no one else. Only [`LiveMirror::commit`] calls
    /// it, once the mirror shows them decided.
    fn decided(&self, ids: impl Iterator<Item = u64>) {
        let map = self.map();
        if map.is_empty() {
            return;
        }
        for id in ids {
            if let Some((notify, _)) = map.get(&id) {
                notify.notify_waiters();
            }
        }
    }

    /// How many requests have waiters.
    #[cfg(test)]
    pub fn requests_waited_on(&self) -> usize {
        self.map().len()
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut map = self.waiters.map();
        if let Some(entry) = map.get_mut(&self.id) {
            entry.1 = entry.1.saturating_sub(1);
            if entry.1 == 0 {
                map.remove(&self.id);
            }
        }
    }
}

impl Waiting<'_> {
    /// Sleep until `still_pending` turns false, checking it after each wake of this request
    /// only. The notification is armed before each check, so a decision committed between the
    /// check and the sleep is not missed.
    pub async fn until(&self, mut still_pending: impl FnMut() -> bool) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !still_pending() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn a_decision_wakes_only_the_waiters_of_its_own_request() {
        let waiters = Arc::new(Waiters::default());
        let checks = Arc::new(AtomicUsize::new(0));
        let decided = Arc::new(Mutex::new(Vec::<u64>::new()));
        let mut tasks = Vec::new();
        for id in 0..50u64 {
            let (w, checks, decided) = (waiters.clone(), checks.clone(), decided.clone());
            tasks.push(tokio::spawn(async move {
                let waiting = w.register(id);
                waiting
                    .until(|| {
                        checks.fetch_add(1, Ordering::SeqCst);
                        !decided.lock().unwrap().contains(&id)
                    })
                    .await;
            }));
        }
        while waiters.requests_waited_on() < 50 || checks.load(Ordering::SeqCst) < 50 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Fifty commits that decide nothing anyone waits on: no waiter wakes.
        for other in 100..150 {
            waiters.decided(std::iter::once(other));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(checks.load(Ordering::SeqCst), 50);
        // Request 7 decided: its waiter checks once more and ends; the others sleep on.
        decided.lock().unwrap().push(7);
        waiters.decided(std::iter::once(7));
        tokio::time::timeout(Duration::from_secs(5), tasks.remove(7))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(checks.load(Ordering::SeqCst), 51);
        assert_eq!(waiters.requests_waited_on(), 49);
        for t in tasks {
            t.abort();
        }
    }

    #[tokio::test]
    async fn a_decision_just_before_the_sleep_is_not_missed() {
        let waiters = Waiters::default();
        let waiting = waiters.register(1);
        let mut first = true;
        let done = tokio::time::timeout(
            Duration::from_secs(5),
            waiting.until(|| {
                if std::mem::take(&mut first) {
                    // Decided between the check and the sleep.
                    waiters.decided(std::iter::once(1));
                    true
                } else {
                    false
                }
            }),
        )
        .await;
        assert!(done.is_ok(), "the waiter slept through its decision");
    }
}
