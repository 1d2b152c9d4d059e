//! A gateway's own store: the replica of the approver's catalog and signed grants (with the
//! revision it has reached), the spool of session reports not yet delivered, and the sessions
//! open right now (so that a restart after a crash can report their end). The spool's group
//! commit and the open-session tracking are in `replica/spool.rs`.

mod spool;

use std::path::Path;

use portcullis_core::codec;
use portcullis_core::model::SignedGrant;
use portcullis_core::stream::SignedChange;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use self::spool::Queued;
use crate::{decode, decode_all, key, open_db, Result, StoreError};

const REV: &[u8] = b"rev";
/// The catalog as the approver signed it (a whole-catalog change). The plain catalog that
/// earlier versions kept under `catalog` is no longer read: nothing unsigned is trusted.
const CATALOG: &[u8] = b"catalog_signed";
const SESSION_SEQ: &[u8] = b"session_seq";
const REPORT_SEQ: &[u8] = b"report_seq";
const INSTANCE: &[u8] = b"instance";
const CLOCK_FLOOR: &[u8] = b"clock_floor";
/// The identity of the approver's store this replica follows (u64, 0: none yet).
const EPOCH: &[u8] = b"epoch";
/// SHA-256 of the signed change applied at `rev`: shown to the approver on reconnecting, so
/// that a store restored from an older copy cannot pass for this replica's history.
const LAST_DIGEST: &[u8] = b"last_digest";

/// Writes are serialised and run on the blocking pool: concurrent sled transactions racing
/// with `flush_async` on the async workers were seen to stall every writer (the cut-latency
/// benchmark with 50 simultaneous session ends). One writer at a time costs nothing here, since
/// every write that is acknowledged ends in a flush, and keeping fsync off the async workers
/// keeps cuts prompt.
#[derive(Clone)]
pub struct Replica {
    write: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// Reports waiting for the next spool commit (see [`Replica::spool`]).
    queued: std::sync::Arc<std::sync::Mutex<Vec<Queued>>>,
    db: sled::Db,
    meta: sled::Tree,
    grants: sled::Tree,
    spool: sled::Tree,
    live: sled::Tree,
}

pub(crate) fn tx_err(e: TransactionError<()>) -> StoreError {
    match e {
        TransactionError::Storage(e) => StoreError::Sled(e),
        TransactionError::Abort(()) => {
            StoreError::Sled(sled::Error::Unsupported("transaction aborted".into()))
        }
    }
}

/// Run a write and its fsync off the async workers, so that a slow disk never delays a cut.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        StoreError::Sled(sled::Error::Unsupported(format!("store task failed: {e}")))
    })?
}

/// A random id from the clock and the process: unique enough to tell replicas apart.
fn rand_id() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish() as u32
}

fn read_u64(tree: &sled::Tree, k: &[u8]) -> Result<u64> {
    Ok(tree
        .get(k)?
        .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0))
}

impl Replica {
    pub fn open(dir: &Path) -> Result<Replica> {
        let db = open_db(dir)?;
        Ok(Replica {
            write: Default::default(),
            queued: Default::default(),
            meta: db.open_tree("meta")?,
            grants: db.open_tree("grants")?,
            spool: db.open_tree("spool")?,
            live: db.open_tree("live")?,
            db,
        })
    }

    /// This replica's identity, made when it was created: session ids and report numbers are
    /// unique per instance, so a gateway started on a fresh replica never repeats them.
    pub fn instance(&self) -> Result<String> {
        if let Some(v) = self.meta.get(INSTANCE)? {
            return Ok(String::from_utf8_lossy(&v).into_owned());
        }
        let id: u32 = rand_id();
        let text = format!("{id:08x}");
        self.meta
            .compare_and_swap(INSTANCE, None as Option<&[u8]>, Some(text.as_bytes()))?
            .ok();
        self.db.flush()?;
        Ok(self
            .meta
            .get(INSTANCE)?
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or(text))
    }

    /// The approver store identity this replica follows (0 before the first hello).
    pub fn epoch(&self) -> Result<u64> {
        read_u64(&self.meta, EPOCH)
    }

    pub fn set_epoch(&self, epoch: u64) -> Result<()> {
        self.meta.insert(EPOCH, &epoch.to_be_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    /// SHA-256 of the change applied at [`Replica::rev`], if it is known.
    pub fn last_digest(&self) -> Result<Option<[u8; 32]>> {
        Ok(self
            .meta
            .get(LAST_DIGEST)?
            .and_then(|v| <[u8; 32]>::try_from(v.as_ref()).ok()))
    }

    /// The highest grant id held (0 if none).
    pub fn max_grant_id(&self) -> Result<u64> {
        match self.grants.last()? {
            Some((k, _)) => Ok(<[u8; 8]>::try_from(k.as_ref())
                .map(u64::from_be_bytes)
                .unwrap_or(0)),
            None => Ok(0),
        }
    }

    /// Start over from a snapshot of the approver's whole state at `rev`: the grants and
    /// catalog held are replaced by these, atomically and durably, and the replica follows
    /// store `epoch` from `rev` on. `snapshot` is kept as the signed catalog (it holds it).
    pub async fn replace_all(
        &self,
        rev: u64,
        epoch: u64,
        snapshot: &SignedChange,
        grants: &[(u64, SignedGrant)],
    ) -> Result<()> {
        let _w = self.write.lock().await;
        let cat = codec::encode(snapshot);
        let digest = snapshot.digest();
        let new: Vec<_> = grants
            .iter()
            .map(|(id, g)| (key(*id), codec::encode(g)))
            .collect();
        let old: Vec<_> = self
            .grants
            .iter()
            .keys()
            .collect::<std::result::Result<_, _>>()?;
        let (meta, grants, db) = (self.meta.clone(), self.grants.clone(), self.db.clone());
        blocking(move || {
            (&meta, &grants)
                .transaction(|(me, gt)| {
                    for k in &old {
                        gt.remove(k)?;
                    }
                    for (k, v) in &new {
                        gt.insert(k, v.as_slice())?;
                    }
                    me.insert(CATALOG, cat.as_slice())?;
                    me.insert(REV, &rev.to_be_bytes())?;
                    me.insert(EPOCH, &epoch.to_be_bytes())?;
                    me.insert(LAST_DIGEST, &digest[..])?;
                    Ok::<(), ConflictableTransactionError<()>>(())
                })
                .map_err(tx_err)?;
            db.flush()?;
            Ok(())
        })
        .await
    }

    /// The latest instant (ms since the epoch) this gateway's clock is known to have reached:
    /// after a restart its clock starts no earlier, so a wall clock stepped back while it was
    /// down revives no grant it had already seen end.
    pub fn clock_floor(&self) -> Result<u64> {
        read_u64(&self.meta, CLOCK_FLOOR)
    }

    /// Raise the clock floor to `ms` (never lower it). Not flushed on its own: sled writes it
    /// within its flush interval, and whatever the gateway acted on was flushed with it.
    pub fn raise_clock_floor(&self, ms: u64) -> Result<()> {
        self.meta.fetch_and_update(CLOCK_FLOOR, |old| {
            let old = old
                .and_then(|v| <[u8; 8]>::try_from(v).ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            Some(old.max(ms).to_be_bytes().to_vec())
        })?;
        Ok(())
    }

    /// The approver revision this replica has applied.
    pub fn rev(&self) -> Result<u64> {
        read_u64(&self.meta, REV)
    }

    /// The newest catalog, as signed: the caller verifies it before trusting it.
    pub fn catalog(&self) -> Result<Option<SignedChange>> {
        match self.meta.get(CATALOG)? {
            Some(v) => Ok(Some(decode("meta", 0, &v)?)),
            None => Ok(None),
        }
    }

    /// Every signed grant held, to be verified again by the caller before use.
    pub fn grants(&self) -> Result<Vec<(u64, SignedGrant)>> {
        decode_all(self.grants.iter(), "grants")
    }

    /// One signed grant, to be verified again by the caller before use: the enforcer asks for
    /// a grant it has already pruned from memory, to tell a revoked one from an expired one.
    pub fn grant(&self, id: u64) -> Result<Option<SignedGrant>> {
        match self.grants.get(key(id))? {
            Some(v) => Ok(Some(decode("grants", id, &v)?)),
            None => Ok(None),
        }
    }

    /// Apply one verified change (catalog and/or grant, possibly neither for a kill) and move
    /// to `rev`, atomically and durably. `digest` is the change's (see [`Replica::last_digest`]).
    pub async fn apply(
        &self,
        rev: u64,
        digest: Option<[u8; 32]>,
        catalog: Option<&SignedChange>,
        grant: Option<(u64, &SignedGrant)>,
    ) -> Result<()> {
        let _w = self.write.lock().await;
        let cat = catalog.map(codec::encode);
        let gr = grant.map(|(id, g)| (key(id), codec::encode(g)));
        let (meta, grants, db) = (self.meta.clone(), self.grants.clone(), self.db.clone());
        blocking(move || {
            (&meta, &grants)
                .transaction(|(me, gt)| {
                    if let Some(c) = &cat {
                        me.insert(CATALOG, c.as_slice())?;
                    }
                    if let Some((k, v)) = &gr {
                        gt.insert(k, v.as_slice())?;
                    }
                    me.insert(REV, &rev.to_be_bytes())?;
                    match &digest {
                        Some(d) => me.insert(LAST_DIGEST, &d[..])?,
                        None => me.remove(LAST_DIGEST)?,
                    };
                    Ok::<(), ConflictableTransactionError<()>>(())
                })
                .map_err(tx_err)?;
            db.flush()?;
            Ok(())
        })
        .await
    }

    /// A fresh session number, never reused across restarts once anything durable names it.
    ///
    /// Not flushed here: the first report that names the session is spooled with a flush,
    /// and sled's flush makes every earlier write durable with it, the counter included. A
    /// number lost to a crash before that was never written anywhere lasting, so handing it
    /// out again is harmless, and each session start saves an fsync.
    pub async fn next_session(&self) -> Result<u64> {
        let _w = self.write.lock().await;
        let meta = self.meta.clone();
        blocking(move || {
            let n = meta
                .update_and_fetch(SESSION_SEQ, |old| {
                    let v = old
                        .and_then(|v| <[u8; 8]>::try_from(v).ok())
                        .map(u64::from_be_bytes)
                        .unwrap_or(0);
                    Some((v + 1).to_be_bytes().to_vec())
                })?
                .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
                .map(u64::from_be_bytes)
                .unwrap_or(1);
            Ok(n)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::model::SessionReport;
    use portcullis_core::Timestamp;
    use std::time::Duration;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    /// Reopen after a drop: sled's background flusher may hold the lock for a moment longer.
    pub(super) fn reopen(dir: &std::path::Path) -> Replica {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            match Replica::open(dir) {
                Err(StoreError::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                r => return r.unwrap(),
            }
        }
    }

    pub(super) fn started(id: &str) -> SessionReport {
        SessionReport::Started {
            session: id.into(),
            user: "alice".into(),
            target: "db".into(),
            grant: 1,
            client: "127.0.0.1:1".into(),
            fingerprint: "SHA256:x".into(),
            channel: "direct-tcpip".into(),
            at: Timestamp(1),
        }
    }

    #[test]
    fn spool_survives_reopen_and_tracks_open_sessions() {
        let dir = tempfile::tempdir().unwrap();
        {
            let r = Replica::open(dir.path()).unwrap();
            rt().block_on(async {
                assert_eq!(r.next_session().await.unwrap(), 1);
                assert_eq!(r.next_session().await.unwrap(), 2);
                r.spool(&started("gw-1-1")).await.unwrap();
                r.spool(&started("gw-1-2")).await.unwrap();
                let end = SessionReport::Ended {
                    session: "gw-1-1".into(),
                    bytes_in: 1,
                    bytes_out: 2,
                    duration: Duration::from_secs(1),
                    reason: "closed".into(),
                    exit_status: None,
                    at: Timestamp(2),
                    recording: None,
                };
                assert_eq!(r.spool(&end).await.unwrap(), 3);
                r.delivered(1..=1).await.unwrap();
                let catalog = SignedChange::seal(
                    &ed25519_dalek::SigningKey::from_bytes(&[1; 32]),
                    &portcullis_core::stream::Change {
                        rev: 7,
                        at: Timestamp(3),
                        body: portcullis_core::stream::ChangeBody::Catalog(Default::default()),
                    },
                );
                r.apply(7, None, Some(&catalog), None).await.unwrap();
            });
        }
        let r = reopen(dir.path());
        assert_eq!(r.rev().unwrap(), 7);
        assert!(r.catalog().unwrap().is_some());
        let spooled: Vec<u64> = r.spooled().unwrap().into_iter().map(|(s, _)| s).collect();
        assert_eq!(spooled, vec![2, 3]);
        let open = r.open_sessions().unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].session(), Some("gw-1-2"));
        assert_eq!(rt().block_on(r.next_session()).unwrap(), 3);
    }
}
