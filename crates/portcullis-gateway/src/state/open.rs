//! Starting a gateway: its settings, its keys and the approver's it pins, its replica and the
//! view the replica verifies to, the clock floored where it last was; and, after a crash, the
//! end of every session that was open.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};

use ed25519_dalek::VerifyingKey;
use portcullis_core::catalog::Catalog;
use portcullis_core::config::{self, GatewaySettings};
use portcullis_core::model::SessionReport;
use portcullis_core::stream::ChangeBody;
use portcullis_core::{keys, Clock, HighWaterClock, Timestamp};
use portcullis_ssh::keyfile::{self, names};
use portcullis_store::Replica;
use russh::keys::PublicKey;
use tokio::sync::{watch, Notify};

use super::live::LiveTable;
use super::view::View;
use super::{FloorClock, GatewayState};
use crate::errors::GatewayError;

fn cfg_err(path: &Path, what: impl std::fmt::Display) -> GatewayError {
    GatewayError::Config(format!("{}: {what}", path.display()))
}

/// The `[gateway]` section of the config file, and which `[[gateways]]` entry this gateway is.
fn read_settings(path: &Path) -> Result<(String, GatewaySettings), GatewayError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| cfg_err(path, format!("cannot read: {e}")))?;
    let cfg = config::parse(&text).map_err(|e| {
        GatewayError::Config(
            e.problems
                .iter()
                .map(|p| format!("{}: {p}", path.display()))
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })?;
    let settings = cfg
        .gateway
        .ok_or_else(|| cfg_err(path, "has no [gateway] section"))?;
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
                path,
                "gateway.name is required: which [[gateways]] entry is this gateway?",
            ))
        }
    };
    Ok((name, settings))
}

/// The approver's keys this gateway trusts: its host key, and the grant-signing keys.
fn pinned_keys(
    path: &Path,
    settings: &GatewaySettings,
) -> Result<(PublicKey, Vec<VerifyingKey>), GatewayError> {
    let host = settings.approver_host_key.as_deref().ok_or_else(|| {
        cfg_err(
            path,
            "gateway.approver_host_key is required (`portcullis keys` prints it as approver-host)",
        )
    })?;
    let host = keys::parse_public_key(host)
        .map_err(|e| cfg_err(path, format!("gateway.approver_host_key: {e}")))?;
    if settings.grant_signing_keys.is_empty() {
        return Err(cfg_err(
            path,
            "gateway.grant_signing_key is required (`portcullis keys` prints it as grant-signing)",
        ));
    }
    // Every listed key is the approver's: a rotation rolls out with both pinned.
    let signing = settings
        .grant_signing_keys
        .iter()
        .map(|k| keys::parse_signing_key(k))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cfg_err(path, format!("gateway.grant_signing_key: {e}")))?;
    Ok((host, signing))
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
        Ok(ChangeBody::Catalog(catalog)) | Ok(ChangeBody::Snapshot { catalog, .. }) => {
            Ok(Some(catalog))
        }
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

/// Time never runs backwards, not even across a restart: no earlier than the clock was when
/// the gateway last recorded it (every second, at every heartbeat and every cut), nor than the
/// newest instant any grant in the replica mentions.
fn floored_clock(
    replica: &Replica,
    signing: &[VerifyingKey],
    clock: Arc<dyn Clock>,
) -> Result<FloorClock, GatewayError> {
    let newest = replica
        .grants()?
        .iter()
        .filter_map(|(_, g)| g.verify_any(signing).ok())
        .map(|g| g.revoked.as_ref().map(|r| r.at).unwrap_or(g.issued_at))
        .max()
        .unwrap_or(Timestamp(0))
        .max(Timestamp(replica.clock_floor()?));
    Ok(Arc::new(HighWaterClock::new(clock).not_before(newest)))
}

/// What the replica holds that still verifies: its catalog, and the grants active at `now`.
fn view_from(
    replica: &Replica,
    signing: &[VerifyingKey],
    now: Timestamp,
) -> Result<View, GatewayError> {
    let mut view = View {
        catalog: verified_catalog(replica, signing)?.map(Arc::new),
        ..View::default()
    };
    for (id, signed) in replica.grants()? {
        match signed.verify_any(signing) {
            Ok(g) if g.is_active(now) => view.grants.upsert(g),
            Ok(_) => {}
            Err(e) => tracing::error!("replica grant {id} does not verify ({e}); ignored"),
        }
    }
    Ok(view)
}

impl GatewayState {
    pub async fn open(
        config_path: &Path,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<GatewayState>, GatewayError> {
        let (name, settings) = read_settings(config_path)?;
        let (approver_host_key, signing) = pinned_keys(config_path, &settings)?;
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
        let clock = floored_clock(&replica, &signing, clock)?;
        let view = view_from(&replica, &signing, clock.now())?;
        let channel_memory =
            crate::channel_memory::ChannelMemory::new(settings.max_channel_memory_per_user);
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
            metrics: crate::metrics::Metrics::new(),
            connections: portcullis_ssh::server::ServerConnections::new(),
            trimmer: Arc::default(),
            link: crate::link::ApproverLink::new(),
            delivery: crate::spool::Delivery::new(),
            refusals: Default::default(),
            channel_memory,
            view: RwLock::new(view),
            grants_changed: watch::channel(0).0,
            enforce_wake: Notify::new(),
            sessions: Mutex::new(LiveTable::default()),
            stopping: AtomicBool::new(false),
            failed_closed: AtomicBool::new(false),
        }))
    }

    /// After a crash, sessions that were open have ended: report them so. (Before the
    /// deliverer starts, which reads the spool first: nobody needs waking.)
    pub async fn recover(&self) -> Result<(), GatewayError> {
        let now = self.now();
        for open in self.replica.open_sessions()? {
            if let SessionReport::Started { session, at, .. } = open {
                tracing::info!(
                    "session {session} was open when the gateway stopped; reporting its end"
                );
                let recording = self.recover_recording(&session).await?;
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

    /// A crashed session's recording, as far as it got (flushed at least once a second), goes
    /// to the approver too. Its hash and size, for the end report.
    async fn recover_recording(
        &self,
        session: &str,
    ) -> Result<Option<(String, u64)>, GatewayError> {
        let dir = self.recordings_dir();
        let found = [
            ("cast", crate::recording::path(&dir, session)),
            ("data", crate::recording::data_path(&dir, session)),
        ]
        .into_iter()
        .find_map(|(format, p)| crate::recording::file_digest(&p).ok().map(|d| (format, d)));
        let Some((format, (size, sha))) = found else {
            return Ok(None);
        };
        self.replica
            .spool(&SessionReport::Recorded {
                session: session.to_string(),
                sha256: sha.clone(),
                size,
                format: format.to_string(),
            })
            .await?;
        Ok(Some((sha, size)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::EndReason;
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
        use portcullis_core::stream::{Change, SignedChange};
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

    /// A session admitted just before the gateway shut (a stop, or fail mode "closed") enters
    /// the table after the cut went round: it must enter already cut, not run on until its
    /// grant ends.
    #[tokio::test]
    async fn a_session_entering_after_the_gateway_shut_is_cut_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let config = gateway_dir(dir.path()).await;
        let clock = Arc::new(ManualClock::new(Timestamp(150_000)));
        let gw = GatewayState::open(&config, clock).await.unwrap();
        let who = crate::session::Holder {
            user: "alice".into(),
            key: String::new(),
            fingerprint: String::new(),
            client: "127.0.0.1:1".into(),
            reach: String::new(),
            conn: 1,
            handle: None,
        };
        let open = gw.enter_session("s-0".into(), &who, "db", 1);
        assert!(open.borrow().is_none(), "nothing shut yet");

        gw.fail_closed();
        let late = gw.enter_session("s-1".into(), &who, "db", 1);
        assert!(matches!(*late.borrow(), Some(EndReason::FailedClosed)));

        assert!(gw.reopen());
        gw.begin_stop();
        let later = gw.enter_session("s-2".into(), &who, "db", 1);
        assert!(matches!(*later.borrow(), Some(EndReason::GatewayStopping)));
    }
}
