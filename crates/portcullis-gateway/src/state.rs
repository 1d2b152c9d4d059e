//! The gateway's process state, [`GatewayState`]: what it was started with (settings, keys,
//! the replica), and what changes while it runs: the view in force, the live sessions, whether
//! it is open. Its fields are private. Every change someone waits for is made by one method
//! that also wakes them, as mini-redis's `Db` pairs its state with its background task's
//! notification: a catalog or grant from the stream is written to the replica, put in force
//! and wakes the enforcer and the sessions waiting for a grant (`view`); a session entering the
//! table wakes the enforcer, and a cut is signalled and counted once (`live`); shutting the
//! gateway (a stop, failing closed) refuses new sessions before it cuts the live ones (here).
//! The approver link's state and the spool's are written only by the modules that run them
//! ([`crate::link::ApproverLink`], [`crate::spool::Delivery`]).
//!
//! Locks: one policy for a poisoned lock, `portcullis_core::locks` (taken over, never skipped).
//! The table is locked before the view when both are held (the enforcer's sweep), never the
//! other way round.

mod live;
mod open;
mod view;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use ed25519_dalek::VerifyingKey;
use portcullis_core::config::GatewaySettings;
use portcullis_core::{Clock, HighWaterClock, Timestamp};
use portcullis_ssh::server::ServerConnections;
use portcullis_store::Replica;
use russh::keys::{PrivateKey, PublicKey};
use tokio::sync::futures::Notified;
use tokio::sync::{watch, Notify};

use crate::channel_memory::ChannelMemory;
use crate::errors::GatewayError;
use crate::link::ApproverLink;
use crate::memory::Trimmer;
use crate::metrics::Metrics;
use crate::refusals::Budget as RefusalBudget;
use crate::session::EndReason;
use crate::spool::Delivery;

pub(crate) use live::{LiveEntry, LiveTable};
use view::View;

/// The gateway's clock: never earlier than it has been (see `open`).
type FloorClock = Arc<HighWaterClock<Arc<dyn Clock>>>;

/// Everything the running gateway holds and its tasks share: its keys and settings, the replica
/// and the view of it in force, the live sessions, the approver link. (A gateway as the catalog
/// lists it, a name and the key it logs in to the approver with, is
/// `portcullis_core::catalog::Gateway`.)
pub(crate) struct GatewayState {
    // Fixed at start (see `open`).
    name: String,
    /// This gateway's replica identity (see `Replica::instance`).
    instance: String,
    settings: GatewaySettings,
    host_key: PrivateKey,
    client_key: Arc<PrivateKey>,
    approver_host_key: PublicKey,
    /// The pinned grant-signing keys (more than one while a rotation rolls out).
    signing: Vec<VerifyingKey>,
    replica: Replica,
    clock: FloorClock,
    /// Counted as things happen; served at `[gateway] metrics`.
    metrics: Metrics,
    /// The users' connections, for a graceful stop to close and wait for.
    connections: Arc<ServerConnections>,
    /// Gives memory back to the system after a burst of session closes.
    trimmer: Arc<Trimmer>,
    /// The three connections to the approver; whether the stream is up.
    link: ApproverLink,
    /// The spool's deliverer: its wake-up, and what the approver acknowledged.
    delivery: Delivery,
    /// Refusals reported one by one so far, and those only counted (see `refusals`).
    refusals: RefusalBudget,
    /// What each user's open channels count for (`max_channel_memory_per_user`).
    channel_memory: ChannelMemory,

    // What is in force, and who is woken when it changes (see `view`).
    view: RwLock<View>,
    /// Bumped whenever a grant arrives on the stream: sessions waiting for one look again.
    grants_changed: watch::Sender<u64>,
    /// Wakes the enforcer: a grant's end may have moved, or a session needs its timer.
    enforce_wake: Notify,

    // Sessions on the books (see `live`).
    sessions: Mutex<LiveTable>,

    // Whether new sessions may open.
    /// Set once a graceful stop has begun.
    stopping: AtomicBool,
    /// Set while `fail_mode = "closed"` holds the gateway shut (approver away too long).
    failed_closed: AtomicBool,
}

impl GatewayState {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn instance(&self) -> &str {
        &self.instance
    }

    pub(crate) fn settings(&self) -> &GatewaySettings {
        &self.settings
    }

    pub(crate) fn host_key(&self) -> &PrivateKey {
        &self.host_key
    }

    pub(crate) fn client_key(&self) -> &Arc<PrivateKey> {
        &self.client_key
    }

    pub(crate) fn approver_host_key(&self) -> &PublicKey {
        &self.approver_host_key
    }

    pub(crate) fn signing(&self) -> &[VerifyingKey] {
        &self.signing
    }

    /// The replica, to read, and to write what nobody waits on (the epoch, the session
    /// counter). Changes from the stream go through the `apply_*` methods, reports through
    /// `spool::submit`, so that each wakes whoever acts on it.
    pub(crate) fn replica(&self) -> &Replica {
        &self.replica
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub(crate) fn refusals(&self) -> &RefusalBudget {
        &self.refusals
    }

    pub(crate) fn channel_memory(&self) -> &ChannelMemory {
        &self.channel_memory
    }

    pub(crate) fn connections(&self) -> &Arc<ServerConnections> {
        &self.connections
    }

    pub(crate) fn trimmer(&self) -> &Arc<Trimmer> {
        &self.trimmer
    }

    pub(crate) fn link(&self) -> &ApproverLink {
        &self.link
    }

    pub(crate) fn delivery(&self) -> &Delivery {
        &self.delivery
    }

    pub(crate) fn recordings_dir(&self) -> std::path::PathBuf {
        self.settings.data_dir.join("recordings")
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Record how far the clock has come, for the floor after a restart (see `open`); `at`
    /// (the approver's time in a heartbeat) raises it too. Failing to record it is logged, not
    /// fatal: the floor is a second line behind the grants' own times.
    pub(crate) fn keep_clock_floor(&self, at: Option<Timestamp>) {
        if let Some(at) = at {
            self.clock.raise(at);
        }
        if let Err(e) = self.replica.raise_clock_floor(self.now().0) {
            tracing::warn!("cannot record the clock floor: {e}");
        }
    }

    /// A new session id, unique across restarts and replicas: `gw-1-3fa2-17`.
    pub(crate) async fn new_session_id(&self) -> Result<String, GatewayError> {
        let n = self.replica.next_session().await?;
        Ok(format!(
            "{}-{}-{n}",
            self.name,
            &self.instance[..4.min(self.instance.len())]
        ))
    }

    /// Resolves when the enforcer is to look again (a permit is kept if it is busy).
    pub(crate) fn enforcer_woken(&self) -> Notified<'_> {
        self.enforce_wake.notified()
    }

    /// Changes whenever a grant arrives, for sessions waiting for one.
    pub(crate) fn watch_grants(&self) -> watch::Receiver<u64> {
        self.grants_changed.subscribe()
    }

    /// Why new sessions are refused outright, if they are (stopping, or fail mode "closed").
    pub(crate) fn closed_reason(&self) -> Option<String> {
        if self.stopping.load(Ordering::SeqCst) {
            return Some("portcullis: gateway stopping".into());
        }
        self.failed_closed
            .load(Ordering::SeqCst)
            .then(|| {
                format!(
                    "portcullis: the approver has been unreachable for over {} and this gateway fails closed; try again later",
                    portcullis_core::time::format_duration(self.settings.fail_after)
                )
            })
    }

    // Shutting the gateway sets its flag before it cuts, so that sessions admitted from then
    // on are refused, and a session admitted just before that enters the table already cut
    // (`enter_session` reads the flags under the table's lock, which the cut takes too).

    /// Why a session entering the table now must be cut at once, if it must.
    pub(super) fn shut_reason(&self) -> Option<EndReason> {
        if self.stopping.load(Ordering::SeqCst) {
            Some(EndReason::GatewayStopping)
        } else if self.failed_closed.load(Ordering::SeqCst) {
            Some(EndReason::FailedClosed)
        } else {
            None
        }
    }

    /// A graceful stop: no new sessions from here on, and every live one cut with
    /// `gateway-stopping`. Returns how many sessions were on the books.
    pub(crate) fn begin_stop(&self) -> usize {
        self.stopping.store(true, Ordering::SeqCst);
        self.cut_all(EndReason::GatewayStopping)
    }

    /// `fail_mode = "closed"` with the approver away too long: no new sessions until it is
    /// back, and every live one cut.
    pub(crate) fn fail_closed(&self) {
        self.failed_closed.store(true, Ordering::SeqCst);
        self.cut_all(EndReason::FailedClosed);
    }

    /// Whether the gateway has failed closed.
    pub(crate) fn has_failed_closed(&self) -> bool {
        self.failed_closed.load(Ordering::SeqCst)
    }

    /// The approver is back: open again. Whether the gateway had failed closed.
    pub(crate) fn reopen(&self) -> bool {
        self.failed_closed.swap(false, Ordering::SeqCst)
    }
}
