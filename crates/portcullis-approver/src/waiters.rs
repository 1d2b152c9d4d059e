//! `wait` made cheap per waiter: each waiter sleeps on its own request's notification, which
//! only a commit deciding that request (approval, denial, refusal, expiry) fires, and checks its
//! request in the in-memory [`crate::app::Live`] mirror rather than the store. A commit used to
//! wake every waiter to re-read the store, so many waiters made every commit cost many reads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

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
        // Nothing can be left half-done under this lock: a poisoned one is taken over.
        self.by_request.lock().unwrap_or_else(|p| p.into_inner())
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

    /// Wake the waiters of these requests, and no one else.
    pub fn decided(&self, ids: impl Iterator<Item = u64>) {
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
