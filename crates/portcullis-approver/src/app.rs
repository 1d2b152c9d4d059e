//! The approver's state and its one write path.
//!
//! Every change goes through [`Approver::write`]: one writer at a time, everything a decision
//! produces (records, signed changes, audit events) committed atomically and flushed before
//! anyone is told. Readers read the store directly.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use ed25519_dalek::SigningKey;
use portcullis_audit::{AuditRecord, Chain, SignedHead};
use portcullis_core::audit_event::{AuditEvent, EventKind};
use portcullis_core::config::{self, ApproverSettings};
use portcullis_core::grant_index::GrantIndex;
use portcullis_core::model::{Grant, GrantRecord, Request, SessionRecord};
use portcullis_core::stream::{Change, ChangeBody, SignedChange};
use portcullis_core::{Catalog, Clock, Timestamp};
use portcullis_store::{Batch, Store};
use russh::keys::PrivateKey;
use sha2::{Digest, Sha256};
use tokio::sync::{watch, Notify};

use crate::errors::ApproverError;
use portcullis_ssh::keyfile::names;

/// The approver's keys: its SSH host key and its grant-signing key.
pub struct ApproverKeys {
    pub host: PrivateKey,
    /// The grant-signing key: swapped once, at start, when a rotation is pending.
    signing: std::sync::RwLock<SigningKey>,
    /// A new signing key prepared by `portcullis keys rotate --signing`, put in force at start.
    next: Option<SigningKey>,
    data_dir: PathBuf,
}

impl ApproverKeys {
    /// Load the keys in `data_dir`, making any that are missing.
    pub fn load_or_create(data_dir: &Path) -> Result<ApproverKeys, ApproverError> {
        let cfg = ApproverError::Key;
        let (host, _) =
            portcullis_ssh::keyfile::load_or_create(&data_dir.join(names::APPROVER_HOST))
                .map_err(cfg)?;
        let (signing, _) =
            portcullis_ssh::keyfile::load_or_create_signing(&data_dir.join(names::GRANT_SIGNING))
                .map_err(cfg)?;
        let next_path = data_dir.join(names::GRANT_SIGNING_NEXT);
        let next = match next_path.symlink_metadata() {
            Ok(_) => {
                let key = portcullis_ssh::keyfile::load(&next_path).map_err(cfg)?;
                Some(portcullis_ssh::keyfile::signing_key(&key, &next_path).map_err(cfg)?)
            }
            Err(_) => None,
        };
        Ok(ApproverKeys {
            host,
            signing: std::sync::RwLock::new(signing),
            next,
            data_dir: data_dir.to_path_buf(),
        })
    }

    /// The key everything is signed with now.
    pub fn signing(&self) -> SigningKey {
        self.signing
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Put the prepared key in force: the files first (the current key kept as
    /// `grant_signing_key.retired-MS`, the new one in its place), then memory.
    fn swap_in_next(&self, now: Timestamp) -> Result<Option<SigningKey>, ApproverError> {
        let Some(next) = &self.next else {
            return Ok(None);
        };
        let io = |what: &str, e: std::io::Error| {
            ApproverError::Config(format!("rotating the signing key: {what}: {e}"))
        };
        let current = self.data_dir.join(names::GRANT_SIGNING);
        let staged = self.data_dir.join(names::GRANT_SIGNING_NEXT);
        let retired = self
            .data_dir
            .join(format!("{}.retired-{}", names::GRANT_SIGNING, now.0));
        std::fs::rename(&current, &retired).map_err(|e| io("retiring the old key", e))?;
        let _ = std::fs::rename(current.with_extension("pub"), retired.with_extension("pub"));
        std::fs::rename(&staged, &current).map_err(|e| io("putting the new key in place", e))?;
        let _ = std::fs::rename(staged.with_extension("pub"), current.with_extension("pub"));
        *self
            .signing
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = next.clone();
        Ok(Some(next.clone()))
    }
}

/// Something with a deadline the scheduler must act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Deadline {
    Request(u64),
    Grant(u64),
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct WriterState {
    chain: Chain,
    last_rev: u64,
    last_request: u64,
}

/// The store's identity: made when the store is first used, made anew when a gateway shows a
/// history the store does not have (see [`Approver::history_diverged`]).
pub(crate) const STORE_EPOCH: &str = "store_epoch";
/// Request (and so grant) ids start above this: raised past every id a gateway holds when the
/// store turns out to have been restored from an older copy, so that no id means two grants.
const REQUEST_ID_FLOOR: &str = "request_id_floor";

impl WriterState {
    fn from_store(store: &Store) -> Result<WriterState, ApproverError> {
        Ok(WriterState {
            chain: Chain::after(store.last_audit()?.as_ref()),
            last_rev: store.last_rev()?,
            last_request: store
                .last_request_id()?
                .max(store.counter(REQUEST_ID_FLOOR)?),
        })
    }
}

/// A fresh store identity (never 0, which means "none" on the wire).
fn new_epoch() -> u64 {
    rand::random::<u64>().max(1)
}

pub struct Approver {
    pub(crate) store: Store,
    /// Session recordings, one file each, beside the store.
    pub(crate) recordings: portcullis_store::Recordings,
    catalog: RwLock<Arc<Catalog>>,
    pub(crate) settings: ApproverSettings,
    config_path: PathBuf,
    pub(crate) keys: ApproverKeys,
    pub(crate) clock: Arc<dyn Clock>,
    writer: tokio::sync::Mutex<WriterState>,
    /// Bumped after every commit; `wait` and `watch` sleep on it.
    changed: watch::Sender<u64>,
    pub(crate) deadlines: Mutex<BTreeSet<(Timestamp, Deadline)>>,
    pub(crate) wake: Notify,
    /// `wait`ers, woken only by a commit that decides their own request.
    pub(crate) waiters: crate::waiters::Waiters,
    /// Which refusals are recorded one by one and which only counted.
    pub(crate) refusals: crate::refusals::RefusalBudget,
    /// Commands running per user, over every connection.
    pub(crate) running: crate::limits::Running,
    /// What is open now, so that `status`, `requests` and `grants --active` cost what the
    /// caller has, not what the store has accumulated.
    pub(crate) live: RwLock<Live>,
    /// Counted at each commit; served at `[approver] metrics`.
    pub(crate) metrics: crate::metrics::Metrics,
}

/// Pending requests and grants not yet ended, mirrored from the store after every commit.
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

/// One write in progress: what it will commit.
pub(crate) struct Tx<'a> {
    app: &'a Approver,
    state: WriterState,
    batch: Batch,
    deadlines: Vec<(Timestamp, Deadline)>,
    pub now: Timestamp,
    /// The catalog in force for this write, read under the writer lock: a reload swaps it only
    /// under that lock too, so no decision is taken under rules already replaced.
    pub catalog: Arc<Catalog>,
    /// A reload's new catalog, put in force as this write commits.
    new_catalog: Option<Arc<Catalog>>,
}

impl Tx<'_> {
    pub fn audit(&mut self, event: AuditEvent) {
        let rec: AuditRecord = self
            .state
            .chain
            .seal(&self.app.keys.signing(), self.now, event);
        self.batch.audit.push(rec);
    }

    /// New ids start above `id` from now on (and after a restart).
    pub fn raise_request_floor(&mut self, id: u64) {
        self.state.last_request = self.state.last_request.max(id);
        self.set_counter(REQUEST_ID_FLOOR.into(), self.state.last_request);
    }

    pub fn next_request_id(&mut self) -> u64 {
        self.state.last_request += 1;
        self.state.last_request
    }

    pub fn put_request(&mut self, r: Request) {
        if r.is_pending() {
            self.deadlines.push((r.expires_at, Deadline::Request(r.id)));
        }
        self.batch.requests.retain(|x| x.id != r.id);
        self.batch.requests.push(r);
    }

    /// Sign a grant, store it, and put it on the gateway stream.
    pub fn put_grant(&mut self, grant: &Grant, end_recorded: bool) {
        let signed = grant.sign(&self.app.keys.signing());
        if !end_recorded {
            self.deadlines
                .push((grant.expires_at, Deadline::Grant(grant.id)));
        }
        self.batch.grants.push((
            grant.id,
            GrantRecord {
                signed: signed.clone(),
                end_recorded,
            },
        ));
        self.push_change(ChangeBody::Grant(signed));
    }

    /// Note that a grant's end is in the audit log; the grant itself (and the stream) is
    /// unchanged.
    pub fn mark_end_recorded(&mut self, id: u64, mut record: GrantRecord) {
        record.end_recorded = true;
        self.batch.grants.push((id, record));
    }

    /// A session as this write leaves it: what it has put so far, else what the store holds.
    pub fn session(&self, id: &str) -> Result<Option<SessionRecord>, ApproverError> {
        if let Some(s) = self.batch.sessions.iter().find(|s| s.id == id) {
            return Ok(Some(s.clone()));
        }
        Ok(self.app.store.session(id)?)
    }

    pub fn put_session(&mut self, record: SessionRecord) {
        self.batch.sessions.retain(|s| s.id != record.id);
        self.batch.sessions.push(record);
    }

    pub fn set_counter(&mut self, name: String, value: u64) {
        self.batch.counters.push((name, value));
    }

    /// Tell the gateways to cut a session.
    pub fn kill_session(&mut self, session: &str) {
        self.push_change(ChangeBody::KillSession {
            session: session.to_string(),
        });
    }

    pub fn put_catalog(&mut self, catalog: &Catalog) {
        self.push_change(ChangeBody::Catalog(catalog.clone()));
    }

    /// Stream `catalog` and put it in force once this write commits (and only if it does).
    pub fn replace_catalog(&mut self, catalog: Catalog) {
        self.put_catalog(&catalog);
        self.new_catalog = Some(Arc::new(catalog));
    }

    fn push_change(&mut self, body: ChangeBody) {
        self.state.last_rev += 1;
        let change = Change {
            rev: self.state.last_rev,
            at: self.now,
            body,
        };
        let signed = SignedChange::seal(&self.app.keys.signing(), &change);
        self.batch.changes.push((change.rev, signed));
    }
}

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
        portcullis_ssh::keyfile::create_private_dir(&settings.data_dir).map_err(|e| {
            ApproverError::Config(format!(
                "cannot create data_dir {}: {e}",
                settings.data_dir.display()
            ))
        })?;
        // The store, the signing key and the recordings are the approver's alone.
        portcullis_ssh::keyfile::check_private(
            &settings.data_dir,
            portcullis_ssh::keyfile::Kind::Dir,
        )
        .map_err(|e| ApproverError::Config(format!("data_dir: {e}")))?;
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
            deadlines: Mutex::new(BTreeSet::new()),
            wake: Notify::new(),
            waiters: crate::waiters::Waiters::default(),
            refusals: crate::refusals::RefusalBudget::default(),
            running: crate::limits::Running::default(),
            live: RwLock::new(Live::default()),
            metrics: crate::metrics::Metrics::new(),
        });
        app.load_deadlines()?;
        Ok(app)
    }

    /// Where the store says the log ends, read under the writer lock so that it belongs to
    /// a whole commit: `audit verify` online checks the records up to it, and records
    /// committed while it runs are past it.
    /// Blocks: call it off the async workers.
    pub(crate) fn audit_end(&self) -> Result<portcullis_audit::End, ApproverError> {
        let _writer = self.writer.blocking_lock();
        Ok(portcullis_audit::End {
            signed: self.store.signed_audit_head()?,
            counter: self.store.audit_head()?,
        })
    }

    /// Record the start: the version, the config's digest (so auditors can tell which rules
    /// were in force), and the catalog on the stream if it changed.
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
                EventKind::ApproverStarted {
                    version: env!("CARGO_PKG_VERSION").to_string(),
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

    /// A new signing key prepared by `portcullis keys rotate --signing` is put in force: the
    /// last record the old key signs says so (`signing_key.rotated`, naming both), so that
    /// `audit verify` with the new key pinned follows the chain back through it; then the new
    /// key signs everything. A start that crashed between the two finds the rotation already
    /// in the log and only swaps the files. Whether it rotated.
    async fn rotate_signing_key(&self) -> Result<bool, ApproverError> {
        let Some(next) = &self.keys.next else {
            return Ok(false);
        };
        let old = portcullis_core::keys::format_signing_key(&self.keys.signing().verifying_key());
        let new = portcullis_core::keys::format_signing_key(&next.verifying_key());
        let logged = self.store.audit_records().any(|(_, r)| {
            r.is_ok_and(|r| {
                matches!(&r.event.kind, EventKind::SigningKeyRotated { new: n, .. } if *n == new)
            })
        });
        if old != new && !logged {
            let event = AuditEvent::new(
                "approver",
                EventKind::SigningKeyRotated {
                    old: old.clone(),
                    new: new.clone(),
                },
            );
            // Nothing else writes yet (this runs before the approver serves): the next record
            // after this one is the first the new key signs.
            self.write(|tx| {
                tx.audit(event);
                Ok(())
            })
            .await?;
        }
        self.keys.swap_in_next(self.now())?;
        tracing::warn!("grant-signing key rotated: {old} -> {new}");
        Ok(true)
    }

    /// This store's identity (0 before the first start has made one).
    pub fn epoch(&self) -> Result<u64, ApproverError> {
        Ok(self.store.counter(STORE_EPOCH)?)
    }

    /// `gateway` resumed from a history this store does not have: its revision is past this
    /// store's newest, or its change at that revision is another. The store was restored from
    /// an older copy (or replaced). Take a new identity, so that every gateway re-reads the
    /// whole state instead of resuming, and start new ids above every one that gateway holds.
    /// Returns the new identity.
    pub async fn history_diverged(
        &self,
        gateway: &str,
        gateway_rev: u64,
        max_grant: u64,
    ) -> Result<u64, ApproverError> {
        let old_epoch = self.epoch()?;
        let store_rev = self.store.last_rev()?;
        let new = new_epoch();
        let ids_from = self
            .write(|tx| {
                tx.set_counter(STORE_EPOCH.into(), new);
                tx.raise_request_floor(max_grant);
                let ids_from = tx.state.last_request + 1;
                tx.audit(AuditEvent::new(
                    "approver",
                    EventKind::StoreHistoryDiverged {
                        gateway: gateway.to_string(),
                        gateway_rev,
                        store_rev,
                        old_epoch,
                        new_epoch: new,
                        ids_from,
                    },
                ));
                Ok(ids_from)
            })
            .await?;
        tracing::warn!(
            "gateway {gateway} is at revision {gateway_rev}, a history this store (at {store_rev}) does not have: \
             the store was restored or replaced. Store identity {old_epoch:016x} -> {new:016x}; new ids from {ids_from}; gateways re-read the whole state"
        );
        Ok(new)
    }

    /// The whole state as of `rev` (and perhaps a little after: later changes are applied on
    /// top of it, and applying one twice is harmless), for a gateway that must start over.
    pub fn snapshot(&self, rev: u64, epoch: u64) -> Result<SignedChange, ApproverError> {
        let now = self.now();
        let grants = self
            .store
            .grants()?
            .into_iter()
            .filter(|(_, r)| r.signed.grant().is_ok_and(|g| g.is_active(now)))
            .map(|(_, r)| r.signed)
            .collect();
        Ok(SignedChange::seal(
            &self.keys.signing(),
            &Change {
                rev,
                at: now,
                body: ChangeBody::Snapshot {
                    epoch,
                    catalog: (*self.catalog()).clone(),
                    grants,
                },
            },
        ))
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

    /// One scan of the store at start: what is open, and when it is due.
    fn load_deadlines(&self) -> Result<(), ApproverError> {
        let poisoned = || ApproverError::Config("approver state poisoned".into());
        let mut d = self.deadlines.lock().map_err(|_| poisoned())?;
        let mut live = self.live.write().map_err(|_| poisoned())?;
        let now = self.clock.now();
        for r in self.store.requests()? {
            if r.is_pending() {
                d.insert((r.expires_at, Deadline::Request(r.id)));
                live.pending.insert(r.id, r);
            }
        }
        for (id, g) in self.store.grants()? {
            let Ok(grant) = g.signed.grant() else {
                tracing::error!("grant {id} in the store does not decode; it is not enforced");
                continue;
            };
            if !g.end_recorded {
                d.insert((grant.expires_at, Deadline::Grant(id)));
            }
            if grant.is_active(now) {
                live.grants.upsert(grant);
            }
        }
        Ok(())
    }

    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog
            .read()
            .map(|c| c.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// A receiver that sees every commit (the gateways' `watch` streams; a `wait` uses
    /// [`Approver::waiters`] instead, so that a commit does not wake every waiter).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Wait for the write in flight, if any, and hold the writer: no write starts while the
    /// guard lives (a graceful stop keeps it until the process exits).
    pub(crate) async fn stop_writing(&self) -> tokio::sync::MutexGuard<'_, WriterState> {
        self.writer.lock().await
    }

    /// Run `f` as the only writer, then commit what it produced and flush. Nothing `f` did is
    /// visible or acknowledged unless the commit succeeds.
    pub(crate) async fn write<T>(
        &self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, ApproverError>,
    ) -> Result<T, ApproverError> {
        let mut guard = self.writer.lock().await;
        let mut tx = Tx {
            app: self,
            state: *guard,
            batch: Batch::default(),
            deadlines: Vec::new(),
            now: self.clock.now(),
            catalog: self.catalog(),
            new_catalog: None,
        };
        let out = f(&mut tx)?;
        if tx.batch.is_empty() {
            return Ok(out);
        }
        // Sign where the log now ends, committed with the records: without the key nobody
        // can cut records off the end and make the head agree.
        if !tx.batch.audit.is_empty() {
            tx.batch.audit_head = tx
                .state
                .chain
                .head(tx.now)
                .map(|head| SignedHead::seal(&self.keys.signing(), &head));
        }
        if let Err(e) = self.store.commit(&tx.batch).await {
            // The store may hold part of it (applied but not flushed): continue from what it
            // holds, so no revision, sequence number or id is ever handed out twice.
            if let Ok(state) = WriterState::from_store(&self.store) {
                *guard = state;
            }
            return Err(e.into());
        }
        *guard = tx.state;
        if let Some(catalog) = tx.new_catalog.take() {
            // Still under the writer lock: the next write sees the catalog this one recorded.
            match self.catalog.write() {
                Ok(mut c) => *c = catalog,
                Err(p) => *p.into_inner() = catalog,
            }
        }
        // A poisoned lock is taken over (one policy everywhere): skipping would leave the
        // mirror, or the scheduler's deadlines, behind what was committed.
        self.live
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .apply(&tx.batch, tx.now);
        self.metrics.committed(&tx.batch);
        self.waiters.decided(
            tx.batch
                .requests
                .iter()
                .filter(|r| !r.is_pending())
                .map(|r| r.id),
        );
        drop(guard);
        if !tx.deadlines.is_empty() {
            self.deadlines
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend(tx.deadlines);
            self.wake.notify_one();
        }
        self.changed.send_modify(|n| *n += 1);
        Ok(out)
    }

    /// Record a refusal for lack of permission: on its own while `actor` is within its budget,
    /// else only counted (see [`crate::refusals`]).
    pub(crate) async fn record_refusal(&self, actor: &str, command: String, error: String) {
        if !self
            .refusals
            .admit(actor, self.now(), std::time::Instant::now())
        {
            return;
        }
        let event = AuditEvent::new(actor, EventKind::Refused { command, error });
        let recorded = self
            .write(|tx| {
                tx.audit(event);
                Ok(())
            })
            .await;
        if let Err(e) = recorded {
            tracing::error!("could not record a refusal: {e}");
        }
    }

    /// Write the refusals counted since the last call, one event per actor, in one commit.
    pub(crate) async fn record_counted_refusals(&self) {
        let counted = self.refusals.take_counted();
        if counted.is_empty() {
            return;
        }
        let events: Vec<AuditEvent> = counted
            .iter()
            .map(|(actor, count, first, last)| {
                AuditEvent::new(
                    actor.as_str(),
                    EventKind::RefusedRepeatedly {
                        count: *count,
                        first: *first,
                        last: *last,
                    },
                )
            })
            .collect();
        let recorded = self
            .write(|tx| {
                for e in events {
                    tx.audit(e);
                }
                Ok(())
            })
            .await;
        if let Err(e) = recorded {
            tracing::error!("could not record counted refusals, kept for the next try: {e}");
            self.refusals.restore(counted);
        }
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
