//! The approver's state, and which part of it changes where.
//!
//! Every change to what the approver has decided goes through [`Approver::write`] (`write`):
//! one writer at a time, everything a decision produces (records, signed changes, audit
//! events) committed atomically and flushed before anyone is told. Readers read the store, or,
//! for what is open now, the `Live` mirror each commit brings up to date (`crate::live`). The
//! catalog in force, the writer and the commit feed are private to this module and its
//! children: `start` (opening, what a start records, reading the config), `write` (the write
//! path and its `Tx`), `keys` (host and signing keys, rotation at start) and `identity` (the
//! store's epoch, snapshots for gateways that start over).

mod identity;
mod keys;
mod start;
mod write;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use portcullis_core::config::ApproverSettings;
use portcullis_core::{Catalog, Clock, Timestamp};
use portcullis_store::Store;
use tokio::sync::watch;

use crate::live::{LiveMirror, Waiters};
use crate::locks;
use crate::scheduler::Deadlines;

pub use keys::ApproverKeys;
pub use start::read_config;
pub(crate) use write::Tx;
use write::WriterState;

/// The daemon's state: shared by every connection, command and background task.
pub struct Approver {
    pub(crate) store: Store,
    /// Session recordings, one file each, beside the store.
    pub(crate) recordings: portcullis_store::Recordings,
    /// The catalog in force: replaced only by a commit that streams the new one, under the
    /// writer lock (`Tx::replace_catalog`).
    catalog: RwLock<Arc<Catalog>>,
    pub(crate) settings: ApproverSettings,
    config_path: PathBuf,
    pub(crate) keys: ApproverKeys,
    pub(crate) clock: Arc<dyn Clock>,
    writer: tokio::sync::Mutex<WriterState>,
    /// Bumped after every commit; gateways' `watch` streams sleep on it (a `wait` sleeps on
    /// its own request in `waiters`).
    changed: watch::Sender<u64>,
    /// What the scheduler must act on, and when.
    pub(crate) deadlines: Deadlines,
    /// `wait`ers, woken only by a commit that decides their own request (`live` wakes them).
    pub(crate) waiters: Arc<Waiters>,
    /// Which refusals are recorded one by one and which only counted.
    pub(crate) refusals: crate::refusals::RefusalBudget,
    /// Commands running per user, over every connection.
    pub(crate) running: crate::limits::Running,
    /// What is open now, so that `status`, `requests` and `grants --active` cost what the
    /// caller has, not what the store has accumulated.
    pub(crate) live: LiveMirror,
    /// Counted at each commit; served at `[approver] metrics`.
    pub(crate) metrics: crate::metrics::Metrics,
}

impl Approver {
    pub fn catalog(&self) -> Arc<Catalog> {
        locks::read(&self.catalog).clone()
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// A receiver that sees every commit (the gateways' `watch` streams; a `wait` uses
    /// its own request's notification in `waiters` instead, so that a commit does not wake
    /// every waiter).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}
