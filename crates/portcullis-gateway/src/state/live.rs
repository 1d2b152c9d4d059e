//! The live-session table: every session on the books, bound to one grant at a time, with the
//! signal that cuts it. A session entering wakes the enforcer (its timer must cover the new
//! grant's end); a cut is signalled once, counted once, and kept as the session's reason; a
//! session leaving gives the allocator a hint that memory may go back.

use std::collections::HashMap;
use std::sync::MutexGuard;

use portcullis_core::locks;
use tokio::sync::watch;

use super::GatewayState;
use crate::session::{EndReason, Holder, Left};

/// A live session: one channel, bound to one grant at a time.
pub(crate) struct LiveEntry {
    user: String,
    /// The key the user logged in with (normalised), re-checked whenever the catalog changes.
    key: String,
    target: String,
    grant: u64,
    /// Which connection of this gateway it is on.
    conn: u64,
    /// Set once to cut the session; whoever runs it watches the other end.
    cut: watch::Sender<Option<EndReason>>,
}

impl LiveEntry {
    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    /// The grant it rests on now.
    pub fn grant(&self) -> u64 {
        self.grant
    }

    pub fn is_cut(&self) -> bool {
        self.cut.borrow().is_some()
    }

    /// Go on under another grant (the enforcer's move when this one ends and another covers
    /// the same user and target).
    pub fn rebind(&mut self, grant: u64) {
        self.grant = grant;
    }

    /// Cut the session for `reason`: whoever runs it sees the reason. Whether it was not cut
    /// already (a cut is counted once).
    pub fn cut(&self, reason: EndReason) -> bool {
        self.cut.send_replace(Some(reason)).is_none()
    }
}

/// Every session on the books, by id.
#[derive(Default)]
pub(crate) struct LiveTable {
    live: HashMap<String, LiveEntry>,
}

impl LiveTable {
    pub fn iter(&self) -> impl Iterator<Item = (&String, &LiveEntry)> {
        self.live.iter()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&String, &mut LiveEntry)> {
        self.live.iter_mut()
    }

    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// Take a session off the books. The table gives back its space once it is mostly empty,
    /// so that a burst of thousands of sessions does not leave a table sized for them.
    fn end(&mut self, id: &str) -> Option<LiveEntry> {
        let ended = self.live.remove(id);
        if self.live.capacity() > 64 && self.live.len() * 4 < self.live.capacity() {
            self.live.shrink_to(self.live.len() * 2);
        }
        ended
    }

    /// Cut every session for `reason`; those not cut already are counted in `metrics`.
    /// Returns how many sessions are on the books.
    fn cut_all(&self, reason: &EndReason, metrics: &crate::metrics::Metrics) -> usize {
        for s in self.live.values() {
            if s.cut(reason.clone()) {
                metrics.cut(reason);
            }
        }
        self.live.len()
    }
}

impl GatewayState {
    /// The live-session table, for the enforcer's sweep. A panic elsewhere while holding it
    /// must not stop enforcement, so a poisoned lock is taken over (`portcullis_core::locks`).
    pub(crate) fn live_sessions(&self) -> MutexGuard<'_, LiveTable> {
        locks::lock(&self.sessions)
    }

    /// How many sessions are on the books.
    pub(crate) fn live_count(&self) -> usize {
        self.live_sessions().len()
    }

    /// Put session `id` of `who` on `target` on the books under `grant`, and wake the enforcer
    /// so that its timer covers this grant's end. Returns the receiving end of its cut.
    pub(crate) fn enter_session(
        &self,
        id: String,
        who: &Holder,
        target: &str,
        grant: u64,
    ) -> watch::Receiver<Option<EndReason>> {
        let (cut, cut_rx) = watch::channel(None);
        let entry = LiveEntry {
            user: who.user.clone(),
            key: who.key.clone(),
            target: target.to_string(),
            grant,
            conn: who.conn,
            cut,
        };
        let mut table = self.live_sessions();
        // Admitted before a stop or a fail-closed set its flag, but entering after that
        // cut everyone: the flag is read under the table's lock, which the cut takes too, so
        // either the cut sees this entry or this sees the flag. Without it a session could
        // outlive fail mode "closed" until its grant ended.
        if let Some(reason) = self.shut_reason() {
            if entry.cut(reason.clone()) {
                self.metrics.cut(&reason);
            }
        }
        table.live.insert(id, entry);
        drop(table);
        self.enforce_wake.notify_one();
        cut_rx
    }

    /// The grant session `id` rests on now, if it is on the books.
    pub(crate) fn session_grant(&self, id: &str) -> Option<u64> {
        self.live_sessions().live.get(id).map(|s| s.grant)
    }

    /// Take session `id` off the books. Returns the grant it ended under, and whether other
    /// sessions of connection `conn` are still live (if none, a cut takes the connection).
    pub(crate) fn leave_session(&self, id: &str, conn: u64) -> Left {
        let mut sessions = self.live_sessions();
        let grant = sessions.end(id).map(|s| s.grant);
        let others = sessions.live.values().any(|s| s.conn == conn);
        Left { grant, others }
    }

    /// Session `id` is over, whatever path it left by: off the books if it is still there,
    /// and memory may go back to the system.
    pub(crate) fn end_session(&self, id: &str) {
        self.live_sessions().end(id);
        self.trimmer.session_closed();
    }

    /// Cut session `id` for `reason` (counted if it was not cut already). Whether it is here.
    pub(crate) fn cut_session(&self, id: &str, reason: EndReason) -> bool {
        let sessions = self.live_sessions();
        let Some(s) = sessions.live.get(id) else {
            return false;
        };
        if s.cut(reason.clone()) {
            self.metrics.cut(&reason);
        }
        true
    }

    /// Cut every live session for `reason`. Returns how many are on the books.
    pub(super) fn cut_all(&self, reason: EndReason) -> usize {
        self.live_sessions().cut_all(&reason, &self.metrics)
    }
}
