//! The approver link: follow the signed `watch` stream into the replica, reconnecting with
//! backoff and resuming after the last revision applied. Each verified change is handed to the
//! gateway's state (`GatewayState::apply_*`), which writes it to the replica, puts it in force
//! and wakes whoever acts on it. [`ApproverLink`] says whether the stream is up, and only this
//! module changes that.
//!
//! The stream has a connection of its own. Session reports and relayed user commands each go
//! over another ([`Lane`]): in russh a channel whose reader falls behind holds up every channel
//! of its connection, so a user who stops reading a command's output, or a slow report, must
//! never be able to delay a revocation on its way down the stream.

use std::sync::Arc;
use std::time::Duration;

use portcullis_core::codec::FrameReader;
use portcullis_core::locks;
use portcullis_core::stream::{Follower, Verified};
use portcullis_core::Timestamp;
use portcullis_ssh::{ClientConnection, ConnectOptions, HostKeyPolicy, Identity};
use russh::ChannelMsg;
use tokio::sync::watch;

use crate::state::GatewayState;

/// Heartbeats come every 5 s; this much silence means the link is dead.
const SILENCE: Duration = Duration::from_secs(20);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub(crate) async fn run(gw: Arc<GatewayState>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let began = tokio::time::Instant::now();
        if let Err(e) = follow(&gw).await {
            // A link that stayed up a while earns a quick retry; a flapping one backs off.
            if began.elapsed() > Duration::from_secs(10) {
                backoff = Duration::from_millis(100);
            }
            tracing::warn!("approver link: {e}; retrying in {backoff:?}");
        }
        gw.link().set_up(false, gw.now());
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The gateway's link to the approver: whether the watch stream is up (the one sign that the
/// approver is reachable), and the lanes for reports and for users' commands. Only [`run`]
/// says whether the stream is up.
pub(crate) struct ApproverLink {
    up: watch::Sender<bool>,
    /// When the stream last went up or down; `None` until the first attempt ends either way.
    since: std::sync::Mutex<Option<Timestamp>>,
    reports: Lane,
    commands: Lane,
}

impl ApproverLink {
    pub fn new() -> ApproverLink {
        ApproverLink {
            up: watch::channel(false).0,
            since: std::sync::Mutex::new(None),
            reports: Lane::new("reports"),
            commands: Lane::new("commands"),
        }
    }

    /// Whether the stream is up.
    pub fn is_up(&self) -> bool {
        *self.up.borrow()
    }

    /// Changes whenever the stream goes up or down.
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.up.subscribe()
    }

    /// Since when the stream has been down (`None` while it is up, and while the first attempt
    /// to reach the approver is still under way).
    pub fn down_since(&self) -> Option<Timestamp> {
        if self.is_up() {
            return None;
        }
        *locks::lock(&self.since)
    }

    fn set_up(&self, up: bool, at: Timestamp) {
        let mut since = locks::lock(&self.since);
        if self.up.send_replace(up) != up || since.is_none() {
            *since = Some(at);
        }
    }

    /// The connection session reports travel on.
    pub fn reports(&self) -> &Lane {
        &self.reports
    }

    /// The connection users' control commands travel on.
    pub fn commands(&self) -> &Lane {
        &self.commands
    }
}

/// A connection to the approver for one kind of traffic, made on first use and again after it
/// ends or is dropped. Its users must always drain their channels (see the module comment).
pub(crate) struct Lane {
    name: &'static str,
    current: tokio::sync::Mutex<Option<Arc<ClientConnection>>>,
}

impl Lane {
    fn new(name: &'static str) -> Lane {
        Lane {
            name,
            current: tokio::sync::Mutex::new(None),
        }
    }

    /// The lane's connection, connecting if it has none that is still open.
    pub async fn get(&self, gw: &GatewayState) -> Result<Arc<ClientConnection>, String> {
        let mut current = self.current.lock().await;
        if let Some(conn) = current.as_ref().filter(|c| !c.is_closed()) {
            return Ok(conn.clone());
        }
        let conn = tokio::time::timeout(CONNECT, ClientConnection::connect(&options(gw)))
            .await
            .map_err(|_| format!("no answer from the approver within {CONNECT:?}"))?
            .map_err(|e| e.to_string())?;
        tracing::debug!("approver {} connection up", self.name);
        let conn = Arc::new(conn);
        *current = Some(conn.clone());
        Ok(conn)
    }

    /// Give up on `conn` (it timed out): the next [`Lane::get`] connects afresh.
    pub async fn drop_conn(&self, conn: &Arc<ClientConnection>) {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
            *current = None;
        }
    }
}

/// How long connecting to the approver may take, handshake and authentication included.
const CONNECT: Duration = Duration::from_secs(15);

fn options(gw: &GatewayState) -> ConnectOptions {
    ConnectOptions {
        addr: gw.settings().approver.clone(),
        user: gw.name().to_string(),
        identity: Identity::Key(gw.client_key().clone()),
        host_key: HostKeyPolicy::Pinned(gw.approver_host_key().clone()),
        connect_timeout: Duration::from_secs(10),
    }
}

async fn follow(gw: &Arc<GatewayState>) -> Result<(), String> {
    let conn = Arc::new(
        ClientConnection::connect(&options(gw))
            .await
            .map_err(|e| e.to_string())?,
    );
    let store = |e: portcullis_store::StoreError| format!("replica: {e}");
    let since = gw.replica().rev().map_err(store)?;
    // Which store this replica follows and what it last applied: a store restored from an
    // older copy (or another store) cannot pass for its history, and answers with a snapshot.
    let mut watch = format!(
        "watch --since {since} --epoch {} --max-grant {}",
        gw.replica().epoch().map_err(store)?,
        gw.replica().max_grant_id().map_err(store)?
    );
    if let Some(d) = gw.replica().last_digest().map_err(store)? {
        watch.push_str(&format!(" --after {}", hex::encode(d)));
    }
    let mut channel = conn.exec(&watch).await.map_err(|e| e.to_string())?;
    tracing::info!(
        "approver link up at {} (resuming after revision {since})",
        gw.settings().approver
    );
    gw.link().set_up(true, gw.now());
    let mut follower = Follower::pinned(gw.signing().to_vec(), since);
    let mut reader = FrameReader::new();
    loop {
        let msg = tokio::time::timeout(SILENCE, channel.wait())
            .await
            .map_err(|_| format!("no word from the approver for {SILENCE:?}"))?;
        match msg {
            Some(ChannelMsg::Data { data }) => {
                reader.push(&data);
                while let Some(record) = reader.next_frame().map_err(|e| e.to_string())? {
                    apply(gw, &mut follower, &record).await?;
                }
            }
            Some(ChannelMsg::ExtendedData { data, .. }) => {
                return Err(String::from_utf8_lossy(&data).trim().to_string());
            }
            Some(ChannelMsg::Close) | None => return Err("the approver closed the stream".into()),
            Some(_) => {}
        }
    }
}

async fn apply(gw: &GatewayState, follower: &mut Follower, record: &[u8]) -> Result<(), String> {
    let verified = follower.accept(record).map_err(|e| {
        tracing::error!("dropped a frame from the approver: {e}");
        format!("bad frame: {e}")
    })?;
    let store = |e: portcullis_store::StoreError| format!("replica: {e}");
    let digest = follower.last_digest();
    gw.metrics().heard(verified.rev());
    if let Verified::Grant { grant, .. } = &verified {
        if grant.revoked.is_some() {
            // Its sessions' cut delay counts from its arrival, before the replica's write.
            gw.metrics().revocation_arrived(grant.id);
        }
    }
    match verified {
        // The approver's time: the gateway's clock goes no earlier, now or after a restart.
        Verified::Heartbeat { at, .. } => gw.keep_clock_floor(Some(at)),
        Verified::Hello(hello) => {
            let ours = gw.replica().epoch().map_err(store)?;
            if ours == 0 {
                gw.replica().set_epoch(hello.epoch).map_err(store)?;
            } else if ours != hello.epoch {
                tracing::warn!(
                    "the approver's store identity changed ({ours:016x} -> {:016x}): it was restored or replaced; re-reading the whole state",
                    hello.epoch
                );
            }
        }
        Verified::Snapshot {
            rev,
            epoch,
            catalog,
            grants,
            signed,
        } => {
            let what = format!(
                "{} users, {} targets, {} grants in force",
                catalog.users.len(),
                catalog.targets.len(),
                grants.len()
            );
            // Sessions on grants the snapshot no longer holds end now.
            gw.apply_snapshot(rev, epoch, &signed, catalog, grants)
                .await
                .map_err(store)?;
            tracing::warn!(
                "re-read the whole state from a signed snapshot at revision {rev} (store {epoch:016x}): {what}"
            );
        }
        Verified::Catalog {
            rev,
            catalog,
            signed,
        } => {
            let (users, targets) = (catalog.users.len(), catalog.targets.len());
            gw.apply_catalog(rev, digest, &signed, catalog)
                .await
                .map_err(store)?;
            tracing::info!("catalog at revision {rev}: {users} users, {targets} targets");
        }
        Verified::Grant { rev, grant, signed } => {
            tracing::debug!(
                "grant {} for {} on {} at revision {rev}",
                grant.id,
                grant.user,
                grant.target
            );
            gw.apply_grant(rev, digest, &signed, grant)
                .await
                .map_err(store)?;
        }
        Verified::Kill { rev, session } => {
            gw.apply_kill(rev, digest, &session).await.map_err(store)?;
        }
    }
    Ok(())
}
