//! Opening the approver and what it records when it starts: the data directory and its keys
//! checked, a log that does not end at its signed head refused, the clock floored, what is
//! open read back once; then the start, the config in force and (if it changed) the catalog
//! on the stream. Reading the config file, at start and at every reload, is here too.

use std::path::Path;
use std::sync::{Arc, RwLock};

use portcullis_core::audit_event::{AuditEvent, EventKind};
use portcullis_core::config;
use portcullis_core::stream::{Change, ChangeBody};
use portcullis_core::{Catalog, Clock, Timestamp};
use portcullis_store::Store;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::identity::{new_epoch, STORE_EPOCH};
use super::keys::ApproverKeys;
use super::write::WriterState;
use super::Approver;
use crate::errors::ApproverError;
use crate::live::{Live, LiveMirror, Waiters};
use crate::scheduler::{Deadline, Deadlines};

impl Approver {
    /// Open the store, load keys, and start from the config at `config_path`.
    pub fn open(config_path: &Path, clock: Arc<dyn Clock>) -> Result<Arc<Approver>, ApproverError> {
        let (_, cfg) = read_config(config_path)?;
        let settings = cfg.approver.ok_or_else(|| {
            ApproverError::Config(format!(
                "{}: has no [approver] section (it needs at least data_dir)",
                config_path.display()
            ))
        })?;
        private_data_dir(&settings.data_dir)?;
        let keys = ApproverKeys::load_or_create(&settings.data_dir)?;
        let store = Store::open(&settings.data_dir.join("store"))?;
        check_audit_end(&store, &keys.signing().verifying_key(), &settings.data_dir)?;
        let state = WriterState::from_store(&store)?;
        // Time never runs backwards here, not even across a restart: the clock starts no
        // earlier than the newest audit record.
        let last_at = store.last_audit()?.map(|r| r.at).unwrap_or(Timestamp(0));
        let clock: Arc<dyn Clock> =
            Arc::new(portcullis_core::HighWaterClock::new(clock).not_before(last_at));
        let recordings = portcullis_store::Recordings::new(&settings.data_dir.join("recordings"));
        let partial = recordings.remove_partial();
        if partial > 0 {
            tracing::info!("removed {partial} recordings cut short on their way in");
        }
        let (live, deadlines) = scan_open(&store, clock.now())?;
        let waiters = Arc::new(Waiters::default());
        let app = Arc::new(Approver {
            recordings,
            store,
            catalog: RwLock::new(Arc::new(cfg.catalog)),
            settings,
            config_path: config_path.to_path_buf(),
            keys,
            clock,
            writer: tokio::sync::Mutex::new(state),
            changed: watch::channel(0).0,
            deadlines: Deadlines::default(),
            live: LiveMirror::new(live, waiters.clone()),
            waiters,
            refusals: crate::refusals::RefusalBudget::default(),
            running: crate::limits::Running::default(),
            metrics: crate::metrics::Metrics::new(),
        });
        app.deadlines.add(deadlines);
        Ok(app)
    }

    /// Record the start: the version, listen address and process id, the config's digest (so
    /// auditors can tell which rules were in force), and the catalog on the stream if it
    /// changed.
    pub async fn record_start(&self) -> Result<(), ApproverError> {
        let rotated = self.rotate_signing_key().await?;
        let (text, _) = read_config(&self.config_path)?;
        let catalog = self.catalog();
        let path = self.config_path.display().to_string();
        // After a rotation the catalog goes out again, signed by the new key: a gateway that
        // later drops the old key from its pins still holds a catalog it can verify.
        let stream_catalog = rotated || self.streamed_catalog()? != Some((*catalog).clone());
        let needs_epoch = self.epoch()? == 0;
        self.write(|tx| {
            if needs_epoch {
                tx.set_counter(STORE_EPOCH.into(), new_epoch());
            }
            tx.audit(AuditEvent::new(
                "approver",
                EventKind::ApproverStartedOn {
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    listen: self.settings.listen.clone(),
                    pid: std::process::id(),
                },
            ));
            tx.audit(AuditEvent::new(
                "approver",
                EventKind::ConfigLoaded {
                    path,
                    sha256: hex::encode(Sha256::digest(text.as_bytes())),
                },
            ));
            if stream_catalog {
                tx.put_catalog(&catalog);
            }
            Ok(())
        })
        .await
    }

    /// The newest catalog on the stream, to avoid re-sending an unchanged one at start.
    fn streamed_catalog(&self) -> Result<Option<Catalog>, ApproverError> {
        let mut rev = self.store.last_rev()?;
        while rev > 0 {
            let batch = self.store.changes_after(rev - 1, 1)?;
            if let Some((_, c)) = batch.first() {
                if let Ok(Change {
                    body: ChangeBody::Catalog(cat),
                    ..
                }) = c.peek()
                {
                    return Ok(Some(cat));
                }
            }
            rev -= 1;
        }
        Ok(None)
    }

    /// Re-read the config file. A bad file is refused (and logged) and the old catalog kept.
    pub async fn reload(&self, actor: &str) -> Result<String, ApproverError> {
        let path = self.config_path.display().to_string();
        match read_config(&self.config_path) {
            Ok((text, cfg)) => {
                let catalog = cfg.catalog;
                let count = |n: usize, one, many| crate::render::words::count(n as u64, one, many);
                let summary = format!(
                    "reloaded {path}: {}, {}, {}, {}",
                    count(catalog.users.len(), "user", "users"),
                    count(catalog.targets.len(), "target", "targets"),
                    count(catalog.policies.len(), "policy", "policies"),
                    count(catalog.gateways.len(), "gateway", "gateways")
                );
                let sha = hex::encode(Sha256::digest(text.as_bytes()));
                self.write(|tx| {
                    tx.audit(AuditEvent::new(
                        actor,
                        EventKind::ConfigLoaded {
                            path: path.clone(),
                            sha256: sha,
                        },
                    ));
                    tx.replace_catalog(catalog);
                    Ok(())
                })
                .await?;
                tracing::info!("{summary}");
                Ok(summary)
            }
            Err(e) => {
                let error = e.to_string();
                tracing::warn!("reload refused, keeping the old config: {error}");
                self.write(|tx| {
                    tx.audit(AuditEvent::new(
                        actor,
                        EventKind::ConfigRefused {
                            path: path.clone(),
                            error: error.clone(),
                        },
                    ));
                    Ok(())
                })
                .await?;
                Err(ApproverError::Config(format!(
                    "reload refused, the old config stays in force:\n{error}"
                )))
            }
        }
    }
}

/// Make the data directory if it is missing, and refuse one that is not private: the store,
/// the signing key and the recordings are the approver's alone.
fn private_data_dir(dir: &Path) -> Result<(), ApproverError> {
    portcullis_ssh::keyfile::create_private_dir(dir).map_err(|e| {
        ApproverError::Config(format!("cannot create data_dir {}: {e}", dir.display()))
    })?;
    portcullis_ssh::keyfile::check_private(dir, portcullis_ssh::keyfile::Kind::Dir)
        .map_err(|e| ApproverError::Config(format!("data_dir: {e}")))
}

/// One scan of the store at start: what is open, and when it is due.
fn scan_open(
    store: &Store,
    now: Timestamp,
) -> Result<(Live, Vec<(Timestamp, Deadline)>), ApproverError> {
    let mut live = Live::default();
    let mut deadlines = Vec::new();
    for r in store.requests()? {
        if r.is_pending() {
            deadlines.push((r.expires_at, Deadline::Request(r.id)));
            live.pending.insert(r.id, r);
        }
    }
    for (id, g) in store.grants()? {
        let Ok(grant) = g.signed.grant() else {
            tracing::error!("grant {id} in the store does not decode; it is not enforced");
            continue;
        };
        if !g.end_recorded {
            deadlines.push((grant.expires_at, Deadline::Grant(id)));
        }
        if grant.is_active(now) {
            live.grants.upsert(grant);
        }
    }
    Ok((live, deadlines))
}

/// Refuse to start on a log that does not end at its signed head: the next commit would sign
/// a new head over the cut (or the forgery) and erase the evidence `audit verify` needs. A
/// store from before heads were signed gets one with the first commit.
fn check_audit_end(
    store: &Store,
    key: &ed25519_dalek::VerifyingKey,
    data_dir: &Path,
) -> Result<(), ApproverError> {
    let refuse = |what: String| {
        ApproverError::Config(format!(
            "refusing to start: {what}. Writing to this store would seal over it. Run \
             `portcullis audit verify --data-dir {dir} --signing-key KEY` for the details, then \
             move {dir}/store aside as evidence and restore it from a backup",
            dir = data_dir.display()
        ))
    };
    let Some(signed) = store.signed_audit_head()? else {
        if store.last_audit()?.is_some() {
            tracing::warn!(
                "the audit log has no signed head yet (written before heads were signed): the \
                 next commit signs one; until then records cut off its end go unnoticed"
            );
        }
        return Ok(());
    };
    let signed =
        signed.map_err(|e| refuse(format!("the audit log's signed head does not decode ({e})")))?;
    // Signed by the key of the record it names: right after a rotation, the old key.
    let schedule = portcullis_audit::KeySchedule::from_log(key, store.audit_records())
        .map_err(|e| refuse(e.to_string()))?;
    let head = signed.open(schedule.key_for_head(&signed)).map_err(|_| {
        refuse("the audit log's signed head is not signed by this approver's key".into())
    })?;
    let last = store.last_audit()?;
    let (seq, hash) = last.map(|r| (r.seq, r.hash)).unwrap_or((0, [0; 32]));
    if seq != head.seq || hash != head.hash {
        return Err(refuse(format!(
            "the audit log ends at record {seq} but its signed head is record {} (signed {})",
            head.seq,
            head.at.rfc3339()
        )));
    }
    Ok(())
}

/// Read and validate a config file; errors name the file.
pub fn read_config(path: &Path) -> Result<(String, config::Config), ApproverError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ApproverError::Config(format!("cannot read {}: {e}", path.display())))?;
    let cfg = config::parse(&text).map_err(|e| {
        ApproverError::Config(
            e.problems
                .iter()
                .map(|p| format!("{}: {p}", path.display()))
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })?;
    Ok((text, cfg))
}
