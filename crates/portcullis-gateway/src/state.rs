//! The gateway's state: keys, pins, the replica and its in-memory view, live sessions.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use ed25519_dalek::VerifyingKey;
use portcullis_core::catalog::Catalog;
use portcullis_core::config::{self, GatewaySettings};
use portcullis_core::grant_index::GrantIndex;
use portcullis_core::model::{Grant, SessionReport};
use portcullis_core::{keys, locks, Clock, Timestamp};
use portcullis_ssh::keyfile::{self, names};
use portcullis_ssh::ClientConnection;
use portcullis_store::Replica;
use russh::keys::{PrivateKey, PublicKey};
use tokio::sync::{watch, Notify};

use crate::errors::GatewayError;
use crate::session::EndReason;

/// What the gateway enforces right now: the newest verified catalog and the grants in force.
#[derive(Default)]
pub(crate) struct View {
    pub catalog: Option<Arc<Catalog>>,
    pub grants: GrantIndex,
}

/// A live session: one channel, bound to one grant at a time.
pub(crate) struct LiveSession {
    pub user: String,
    /// The key the user logged in with (normalised), re-checked whenever the catalog changes.
    pub key: String,
    pub target: String,
    pub grant: u64,
    pub conn: u64,
    /// Set once to cut the session; the relay watches it.
    pub cut: watch::Sender<Option<EndReason>>,
}

#[derive(Default)]
pub(crate) struct Sessions {
    pub live: HashMap<String, LiveSession>,
}

impl Sessions {
    /// Take a session off the books. The table gives back its space once it is mostly empty,
    /// so that a burst of thousands of sessions does not leave a table sized for them.
    pub fn end(&mut self, id: &str) -> Option<LiveSession> {
        let ended = self.live.remove(id);
        if self.live.capacity() > 64 && self.live.len() * 4 < self.live.capacity() {
            self.live.shrink_to(self.live.len() * 2);
        }
        ended
    }
}

/// Everything the running gateway holds and its tasks share: its keys and settings, the replica
/// and the view of it in force, the live sessions, the approver link. (A gateway as the catalog
/// lists it, a name and the key it logs in to the approver with, is
/// `portcullis_core::catalog::Gateway`.)
pub(crate) struct GatewayState {
    pub(crate) name: String,
    /// This gateway's replica identity (see `Replica::instance`).
    pub(crate) instance: String,
    pub(crate) settings: GatewaySettings,
    pub(crate) host_key: PrivateKey,
    pub(crate) client_key: Arc<PrivateKey>,
    pub(crate) approver_host_key: PublicKey,
    /// The pinned grant-signing keys (more than one while a rotation rolls out).
    pub(crate) signing: Vec<VerifyingKey>,
    pub(crate) replica: Replica,
    pub(crate) clock: Arc<portcullis_core::HighWaterClock<Arc<dyn Clock>>>,
    view: RwLock<View>,
    pub(crate) sessions: Mutex<Sessions>,
    pub(crate) enforce_wake: Notify,
    pub(crate) spool_wake: Notify,
    /// The current approver connection (the watch stream's), `None` while the link is down.
    pub(crate) link: watch::Sender<Option<Arc<ClientConnection>>>,
    /// The connection session reports travel on (see `link`).
    pub(crate) reports: crate::link::Lane,
    /// The connection users' control commands travel on (see `link`).
    pub(crate) commands: crate::link::Lane,
    /// The highest report sequence number the approver has acknowledged.
    pub(crate) delivered: watch::Sender<u64>,
    /// Bumped whenever a grant arrives on the stream.
    pub(crate) grants_changed: watch::Sender<u64>,
    /// Set while `fail_mode = "closed"` holds the gateway shut (approver away too long).
    pub(crate) failed_closed: std::sync::atomic::AtomicBool,
    /// Set once a graceful stop has begun: no new sessions.
    pub(crate) stopping: std::sync::atomic::AtomicBool,
    /// The users' connections, for a graceful stop to close and wait for.
    pub(crate) connections: Arc<portcullis_ssh::server::ServerConnections>,
    /// Gives memory back to the system after a burst of session closes.
    pub(crate) trimmer: Arc<crate::memory::Trimmer>,
    /// Counted as things happen; served at `[gateway] metrics`.
    pub(crate) metrics: crate::metrics::Metrics,
}

/// The replica's catalog, if it verifies against the pinned signing key as a whole-catalog
/// change: one that does not (damaged, planted, or kept unsigned by an earlier version) is
/// dropped and the gateway waits for the approver's.
fn verified_catalog(
    replica: &Replica,
    signing: &[VerifyingKey],
) -> Result<Option<Catalog>, GatewayError> {
    let Some(signed) = replica.catalog()? else {
        return Ok(None);
    };
    match signed.verify_any(signing).map(|c| c.body) {
        Ok(portcullis_core::stream::ChangeBody::Catalog(catalog))
        | Ok(portcullis_core::stream::ChangeBody::Snapshot { catalog, .. }) => Ok(Some(catalog)),
        Ok(_) => {
            tracing::error!(
                "the replica's catalog is not a catalog change; waiting for the approver's"
            );
            Ok(None)
        }
        Err(e) => {
            tracing::error!(
                "the replica's catalog does not verify ({e}); waiting for the approver's"
            );
            Ok(None)
        }
    }
}

fn cfg_err(path: &Path, what: impl std::fmt::Display) -> GatewayError {
    GatewayError::Config(format!("{}: {what}", path.display()))
}

impl GatewayState {
    pub async fn open(
        config_path: &Path,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<GatewayState>, GatewayError> {
        let text = std::fs::read_to_string(config_path)
            .map_err(|e| cfg_err(config_path, format!("cannot read: {e}")))?;
        let cfg = config::parse(&text).map_err(|e| {
            GatewayError::Config(
                e.problems
                    .iter()
                    .map(|p| format!("{}: {p}", config_path.display()))
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
        })?;
        let settings = cfg
            .gateway
            .ok_or_else(|| cfg_err(config_path, "has no [gateway] section"))?;
        let name = match (&settings.name, cfg.catalog.gateways.len()) {
            (Some(n), _) => n.clone(),
            (None, 1) => cfg
                .catalog
                .gateways
                .keys()
                .next()
                .cloned()
                .unwrap_or_default(),
            (None, _) => {
                return Err(cfg_err(
                    config_path,
                    "gateway.name is required: which [[gateways]] entry is this gateway?",
                ))
            }
        };
        let approver_host_key = keys::parse_public_key(settings.approver_host_key.as_deref().ok_or_else(|| {
            cfg_err(config_path, "gateway.approver_host_key is required (`portcullis keys` prints it as approver-host)")
        })?)
        .map_err(|e| cfg_err(config_path, format!("gateway.approver_host_key: {e}")))?;
        if settings.grant_signing_keys.is_empty() {
            return Err(cfg_err(
                config_path,
                "gateway.grant_signing_key is required (`portcullis keys` prints it as grant-signing)",
            ));
        }
        // Every listed key is the approver's: a rotation rolls out with both pinned.
        let signing = settings
            .grant_signing_keys
            .iter()
            .map(|k| keys::parse_signing_key(k))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| cfg_err(config_path, format!("gateway.grant_signing_key: {e}")))?;
        keyfile::create_private_dir(&settings.data_dir)
            .map_err(|e| cfg_err(config_path, format!("cannot create data_dir: {e}")))?;
        // Its keys, replica and recordings are this gateway's alone.
        keyfile::check_private(&settings.data_dir, keyfile::Kind::Dir)
            .map_err(|e| cfg_err(config_path, format!("data_dir: {e}")))?;
        let (host_key, _) = keyfile::load_or_create(&settings.data_dir.join(names::GATEWAY_HOST))
            .map_err(|e| GatewayError::Config(e.to_string()))?;
        let (client_key, _) =
            keyfile::load_or_create(&settings.data_dir.join(names::GATEWAY_CLIENT))
                .map_err(|e| GatewayError::Config(e.to_string()))?;
        let replica = Replica::open(&settings.data_dir.join("replica"))?;
        let instance = replica.instance()?;

        // Time never runs backwards, not even across a restart: no earlier than the clock was
        // when the gateway last recorded it (every second, at every heartbeat and every cut),
        // nor than the newest instant any grant in the replica mentions.
        let newest = replica
            .grants()?
            .iter()
            .filter_map(|(_, g)| g.verify_any(&signing).ok())
            .map(|g| g.revoked.as_ref().map(|r| r.at).unwrap_or(g.issued_at))
            .max()
            .unwrap_or(portcullis_core::Timestamp(0))
            .max(portcullis_core::Timestamp(replica.clock_floor()?));
        let clock = Arc::new(portcullis_core::HighWaterClock::new(clock).not_before(newest));
        let mut view = View {
            catalog: verified_catalog(&replica, &signing)?.map(Arc::new),
            ..View::default()
        };
        let now = clock.now();
        for (id, signed) in replica.grants()? {
            match signed.verify_any(&signing) {
                Ok(g) if g.is_active(now) => view.grants.upsert(g),
                Ok(_) => {}
                Err(e) => tracing::error!("replica grant {id} does not verify ({e}); ignored"),
            }
        }
        Ok(Arc::new(GatewayState {
            name,
            instance,
            settings,
            host_key,
            client_key: Arc::new(client_key),
            approver_host_key,
            signing,
            replica,
            clock,
            view: RwLock::new(view),
            sessions: Mutex::new(Sessions::default()),
            enforce_wake: Notify::new(),
            spool_wake: Notify::new(),
            link: watch::channel(None).0,
            reports: crate::link::Lane::new("reports"),
            commands: crate::link::Lane::new("commands"),
            delivered: watch::channel(0).0,
            grants_changed: watch::channel(0).0,
            failed_closed: std::sync::atomic::AtomicBool::new(false),
            stopping: std::sync::atomic::AtomicBool::new(false),
            connections: portcullis_ssh::server::ServerConnections::new(),
            trimmer: Arc::default(),
            metrics: crate::metrics::Metrics::new(),
        }))
    }

    /// After a crash, sessions that were open have ended: report them so.
    pub async fn recover(&self) -> Result<(), GatewayError> {
        let now = self.clock.now();
        for open in self.replica.open_sessions()? {
            if let SessionReport::Started { session, at, .. } = open {
                tracing::info!(
                    "session {session} was open when the gateway stopped; reporting its end"
                );
                // Its recording, as far as it got (flushed at least once a second), goes too.
                let dir = self.recordings_dir();
                let found = [
                    ("cast", crate::recording::path(&dir, &session)),
                    ("data", crate::recording::data_path(&dir, &session)),
                ]
                .into_iter()
                .find_map(|(format, p)| {
                    crate::recording::file_digest(&p).ok().map(|d| (format, d))
                });
                let recording = match found {
                    Some((format, (size, sha))) => {
                        self.replica
                            .spool(&SessionReport::Recorded {
                                session: session.clone(),
                                sha256: sha.clone(),
                                size,
                                format: format.to_string(),
                            })
                            .await?;
                        Some((sha, size))
                    }
                    None => None,
                };
                self.replica
                    .spool(&SessionReport::Ended {
                        session,
                        bytes_in: 0,
                        bytes_out: 0,
                        duration: at.until(now),
                        reason: "gateway restart".into(),
                        exit_status: None,
                        at: now,
                        recording,
                    })
                    .await?;
            }
        }
        Ok(())
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

    // The view (catalog and grants in force) changes only through the methods below, each of
    // which wakes whoever must act on the change. A poisoned lock is taken over
    // (`portcullis_core::locks`): a view that stopped updating after a panic elsewhere would
    // keep enforcing a stale catalog or miss a revocation (failing open).
    fn read_view(&self) -> std::sync::RwLockReadGuard<'_, View> {
        locks::read(&self.view)
    }

    fn write_view(&self) -> std::sync::RwLockWriteGuard<'_, View> {
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

    /// A grant by id, as last received.
    pub(crate) fn grant(&self, user: &str, id: u64) -> Option<Grant> {
        self.read_view()
            .grants
            .for_user(user)
            .find(|g| g.id == id)
            .cloned()
    }

    /// A new catalog in force: the enforcer re-checks every live session (a user or key may
    /// have gone).
    pub(crate) fn set_catalog(&self, catalog: Catalog) {
        self.write_view().catalog = Some(Arc::new(catalog));
        self.enforce_wake.notify_one();
    }

    /// A grant arrived (issued, or revoked): sessions waiting for it may open, and the
    /// enforcer's timer must cover its end.
    pub(crate) fn apply_grant(&self, grant: Grant) {
        self.write_view().grants.upsert(grant);
        self.grants_changed.send_modify(|n| *n += 1);
        self.enforce_wake.notify_one();
    }

    /// Start over from a snapshot: this catalog and exactly these grants. Sessions on grants
    /// it does not hold end at the enforcer's next sweep, which this wakes.
    pub(crate) fn replace_view(&self, catalog: Catalog, grants: impl IntoIterator<Item = Grant>) {
        {
            let mut v = self.write_view();
            v.catalog = Some(Arc::new(catalog));
            v.grants = GrantIndex::default();
            for g in grants {
                v.grants.upsert(g);
            }
        }
        self.grants_changed.send_modify(|n| *n += 1);
        self.enforce_wake.notify_one();
    }

    /// Forget grants that have ended by `now`.
    pub(crate) fn prune_grants(&self, now: Timestamp) {
        self.write_view().grants.prune(now);
    }

    /// The live-session table. A panic elsewhere while holding it must not stop enforcement,
    /// so a poisoned lock is taken over rather than skipped (failing closed, not open).
    pub(crate) fn sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        locks::lock(&self.sessions)
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

    /// Why new sessions are refused outright, if they are (stopping, or fail mode "closed").
    pub(crate) fn closed_reason(&self) -> Option<String> {
        if self.stopping.load(std::sync::atomic::Ordering::SeqCst) {
            return Some("portcullis: gateway stopping".into());
        }
        self.failed_closed
            .load(std::sync::atomic::Ordering::SeqCst)
            .then(|| {
                format!(
                    "portcullis: the approver has been unreachable for over {} and this gateway fails closed; try again later",
                    portcullis_core::time::format_duration(self.settings.fail_after)
                )
            })
    }

    pub(crate) fn link(&self) -> Option<Arc<ClientConnection>> {
        self.link.borrow().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::model::Grant;
    use portcullis_core::time::ManualClock;

    /// A gateway-only config in `dir` trusting `signing`, and that key's grant for alice on db
    /// (issued at 100 s, ending at 200 s) already in the replica.
    async fn gateway_dir(dir: &Path) -> std::path::PathBuf {
        let signing = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let (host, _) = keyfile::load_or_create(&dir.join("approver_host")).unwrap();
        let config = dir.join("gateway.toml");
        std::fs::write(
            &config,
            format!(
                "[gateway]\nname = \"gw-t\"\ndata_dir = \"{}\"\napprover_host_key = \"{}\"\ngrant_signing_key = \"{}\"\n",
                dir.join("gw").display(),
                keys::normalize(host.public_key()),
                keys::format_signing_key(&signing.verifying_key()),
            ),
        )
        .unwrap();
        let grant = Grant {
            id: 1,
            request: 1,
            user: "alice".into(),
            target: "db".into(),
            policy: "p".into(),
            issued_at: Timestamp(100_000),
            expires_at: Timestamp(200_000),
            approvers: vec![],
            revoked: None,
        };
        keyfile::create_private_dir(&dir.join("gw")).unwrap();
        let replica = Replica::open(&dir.join("gw/replica")).unwrap();
        replica
            .apply(1, None, None, Some((1, &grant.sign(&signing))))
            .await
            .unwrap();
        config
    }

    #[tokio::test]
    async fn a_clock_stepped_back_across_a_restart_revives_no_grant() {
        let dir = tempfile::tempdir().unwrap();
        let config = gateway_dir(dir.path()).await;
        let clock = Arc::new(ManualClock::new(Timestamp(150_000)));
        let gw = GatewayState::open(&config, clock.clone()).await.unwrap();
        assert!(gw.active_grant("alice", "db").is_some());
        // The grant runs out while the gateway runs, which records how far its clock came.
        clock.set(Timestamp(250_000));
        assert!(gw.active_grant("alice", "db").is_none());
        gw.keep_clock_floor(None);
        drop(gw);
        // Restarted with the wall clock stepped back to before the grant's end.
        clock.set(Timestamp(150_000));
        let gw = GatewayState::open(&config, clock.clone()).await.unwrap();
        assert!(gw.now() >= Timestamp(250_000), "{:?}", gw.now());
        assert!(
            gw.active_grant("alice", "db").is_none(),
            "an expired grant came back to life"
        );
    }

    #[tokio::test]
    async fn the_approvers_heartbeat_time_is_a_floor_too() {
        let dir = tempfile::tempdir().unwrap();
        let config = gateway_dir(dir.path()).await;
        // This gateway's clock lags the approver's by 100 s.
        let clock = Arc::new(ManualClock::new(Timestamp(150_000)));
        let gw = GatewayState::open(&config, clock.clone()).await.unwrap();
        gw.keep_clock_floor(Some(Timestamp(250_000)));
        assert!(gw.active_grant("alice", "db").is_none());
        drop(gw);
        let gw = GatewayState::open(&config, clock.clone()).await.unwrap();
        assert!(gw.active_grant("alice", "db").is_none());
    }

    #[tokio::test]
    async fn the_replicas_catalog_is_trusted_only_if_it_verifies() {
        use portcullis_core::stream::{Change, ChangeBody, SignedChange};
        let dir = tempfile::tempdir().unwrap();
        let config = gateway_dir(dir.path()).await;
        let catalog = |key: [u8; 32], rev| {
            SignedChange::seal(
                &ed25519_dalek::SigningKey::from_bytes(&key),
                &Change {
                    rev,
                    at: Timestamp(1),
                    body: ChangeBody::Catalog(Catalog::default()),
                },
            )
        };
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(Timestamp(150_000)));
        // Planted: signed by some other key.
        let replica = Replica::open(&dir.path().join("gw/replica")).unwrap();
        replica
            .apply(2, None, Some(&catalog([8; 32], 2)), None)
            .await
            .unwrap();
        drop(replica);
        let gw = GatewayState::open(&config, clock.clone()).await.unwrap();
        assert!(
            gw.catalog().is_none(),
            "a catalog signed by another key was trusted"
        );
        drop(gw);
        // The approver's own.
        let replica = Replica::open(&dir.path().join("gw/replica")).unwrap();
        replica
            .apply(3, None, Some(&catalog([7; 32], 3)), None)
            .await
            .unwrap();
        drop(replica);
        let gw = GatewayState::open(&config, clock).await.unwrap();
        assert!(gw.catalog().is_some());
    }
}
