//! The durable stores, on sled. The approver's [`Store`]: requests, grants, the signed change feed and the
//! audit log, each in its own tree, every record in the versioned codec of
//! [`portcullis_core::codec`]. A gateway's [`Replica`]: the signed catalog and grants it
//! follows, and the spool of session reports not yet delivered.
//!
//! This crate owns bytes at rest: keys, trees, atomic multi-tree commits and the flush that
//! must happen before anything is acknowledged. It must not decide anything: policy, signing
//! and chaining belong to the core, the approver and the audit crate, which hand it finished
//! records. One process owns a store (sled takes an exclusive lock); everyone else asks it.

use std::path::Path;

pub mod recordings;
pub mod replica;
pub use recordings::{Incoming, Recordings};
pub use replica::Replica;

use portcullis_audit::{AuditRecord, SignedHead};
use portcullis_core::codec::{self, CodecError};
use portcullis_core::model::{GrantRecord, Request, SessionRecord};
use portcullis_core::stream::SignedChange;
use sled::transaction::ConflictableTransactionError;
use sled::Transactional;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "store at {path} is in use by another process (sled takes an exclusive lock): {source}"
    )]
    Locked { path: String, source: sled::Error },
    #[error("store error: {0}")]
    Sled(#[from] sled::Error),
    #[error("corrupt record {key} in tree {tree}: {error}")]
    Corrupt {
        tree: &'static str,
        key: u64,
        error: CodecError,
    },
    #[error("corrupt key in tree {tree}: not 8 bytes")]
    BadKey { tree: &'static str },
    /// A write path bug, refused before anything is written: a log whose head does not name
    /// its last record would fail `audit verify` from then on.
    #[error("audit records up to {seq} come without the signed head of record {seq}; nothing was written")]
    HeadMissing { seq: u64 },
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Everything one decision writes, committed atomically and flushed before it returns.
#[derive(Debug, Default)]
pub struct Batch {
    pub requests: Vec<Request>,
    pub grants: Vec<(u64, GrantRecord)>,
    pub changes: Vec<(u64, SignedChange)>,
    pub audit: Vec<AuditRecord>,
    pub sessions: Vec<SessionRecord>,
    /// Small named counters (per-gateway report sequence numbers).
    pub counters: Vec<(String, u64)>,
    /// The head of the log after `audit`, signed by the approver (the store never signs): it
    /// must name the last record of `audit`, and is written in the same transaction.
    pub audit_head: Option<SignedHead>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
            && self.grants.is_empty()
            && self.changes.is_empty()
            && self.audit.is_empty()
            && self.sessions.is_empty()
            && self.counters.is_empty()
    }
}

/// The unsigned `seq` of the last record (all that stores kept before heads were signed; still
/// written, so an older binary's verify keeps working).
const META_AUDIT_HEAD: &[u8] = b"audit_head";
/// The signed head: `[version] ++ bincode(SignedHead)`.
const META_AUDIT_HEAD_SIGNED: &[u8] = b"audit_head_signed";

/// The approver's store.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    requests: sled::Tree,
    grants: sled::Tree,
    changes: sled::Tree,
    audit: sled::Tree,
    meta: sled::Tree,
    sessions: sled::Tree,
}

fn key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

fn parse_key(tree: &'static str, k: &[u8]) -> Result<u64> {
    let arr: [u8; 8] = k.try_into().map_err(|_| StoreError::BadKey { tree })?;
    Ok(u64::from_be_bytes(arr))
}

/// Decode every `(u64 key, record)` pair an iterator over a tree yields, in key order; the first
/// bad key or record is an error that names the tree and the key.
fn decode_all<T, I>(entries: I, tree: &'static str) -> Result<Vec<(u64, T)>>
where
    T: serde::de::DeserializeOwned,
    I: Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
{
    entries
        .map(|kv| {
            let (k, v) = kv?;
            let id = parse_key(tree, &k)?;
            Ok((id, decode(tree, id, &v)?))
        })
        .collect()
}

fn decode<T: serde::de::DeserializeOwned>(tree: &'static str, k: u64, v: &[u8]) -> Result<T> {
    codec::decode(v).map_err(|error| StoreError::Corrupt {
        tree,
        key: k,
        error,
    })
}

impl Store {
    /// Open (or create) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Store> {
        let db = open_db(dir)?;
        Ok(Store {
            requests: db.open_tree("requests")?,
            grants: db.open_tree("grants")?,
            changes: db.open_tree("changes")?,
            audit: db.open_tree("audit")?,
            meta: db.open_tree("meta")?,
            sessions: db.open_tree("sessions")?,
            db,
        })
    }

    /// Write a batch atomically across trees, then flush to disk. Only after this returns may
    /// the caller acknowledge what the batch records.
    pub async fn commit(&self, batch: &Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let requests: Vec<_> = batch
            .requests
            .iter()
            .map(|r| (key(r.id), codec::encode(r)))
            .collect();
        let grants: Vec<_> = batch
            .grants
            .iter()
            .map(|(id, g)| (key(*id), codec::encode(g)))
            .collect();
        let changes: Vec<_> = batch
            .changes
            .iter()
            .map(|(rev, c)| (key(*rev), codec::encode(c)))
            .collect();
        let audit: Vec<_> = batch
            .audit
            .iter()
            .map(|r| (key(r.seq), codec::encode(r)))
            .collect();
        let head = batch.audit.last().map(|r| key(r.seq));
        let signed_head = match batch.audit.last() {
            None => None,
            Some(last) => {
                let named = batch
                    .audit_head
                    .as_ref()
                    .and_then(|h| h.peek().ok())
                    .is_some_and(|h| h.seq == last.seq && h.hash == last.hash);
                match (&batch.audit_head, named) {
                    (Some(h), true) => Some(codec::encode(h)),
                    _ => return Err(StoreError::HeadMissing { seq: last.seq }),
                }
            }
        };
        let sessions: Vec<_> = batch
            .sessions
            .iter()
            .map(|r| (r.id.as_bytes().to_vec(), codec::encode(r)))
            .collect();
        let counters: Vec<_> = batch
            .counters
            .iter()
            .map(|(name, v)| (counter_key(name), v.to_be_bytes()))
            .collect();
        let trees = (
            self.requests.clone(),
            self.grants.clone(),
            self.changes.clone(),
            self.audit.clone(),
            self.meta.clone(),
            self.sessions.clone(),
        );
        let db = self.db.clone();
        // The transaction and its fsync run on the blocking pool, never on an async worker.
        replica::blocking(move || {
            let (rq, gr, ch, au, me, se) = &trees;
            (rq, gr, ch, au, me, se)
                .transaction(|(rq, gr, ch, au, me, se)| {
                    for (k, v) in &sessions {
                        se.insert(k.as_slice(), v.as_slice())?;
                    }
                    for (k, v) in &counters {
                        me.insert(k.as_slice(), &v[..])?;
                    }
                    for (k, v) in &requests {
                        rq.insert(k, v.as_slice())?;
                    }
                    for (k, v) in &grants {
                        gr.insert(k, v.as_slice())?;
                    }
                    for (k, v) in &changes {
                        ch.insert(k, v.as_slice())?;
                    }
                    for (k, v) in &audit {
                        au.insert(k, v.as_slice())?;
                    }
                    if let Some(h) = head {
                        me.insert(META_AUDIT_HEAD, &h)?;
                    }
                    if let Some(h) = &signed_head {
                        me.insert(META_AUDIT_HEAD_SIGNED, h.as_slice())?;
                    }
                    Ok::<(), ConflictableTransactionError<()>>(())
                })
                .map_err(replica::tx_err)?;
            db.flush()?;
            Ok(())
        })
        .await
    }

    pub fn request(&self, id: u64) -> Result<Option<Request>> {
        match self.requests.get(key(id))? {
            Some(v) => Ok(Some(decode("requests", id, &v)?)),
            None => Ok(None),
        }
    }

    /// All requests, oldest first.
    pub fn requests(&self) -> Result<Vec<Request>> {
        Ok(decode_all(self.requests.iter(), "requests")?
            .into_iter()
            .map(|(_, r)| r)
            .collect())
    }

    pub fn last_request_id(&self) -> Result<u64> {
        last_key(&self.requests, "requests")
    }

    pub fn grant(&self, id: u64) -> Result<Option<GrantRecord>> {
        match self.grants.get(key(id))? {
            Some(v) => Ok(Some(decode("grants", id, &v)?)),
            None => Ok(None),
        }
    }

    /// All grants, oldest first, with their ids.
    pub fn grants(&self) -> Result<Vec<(u64, GrantRecord)>> {
        decode_all(self.grants.iter(), "grants")
    }

    /// The newest revision of the change feed (0 when empty).
    pub fn last_rev(&self) -> Result<u64> {
        last_key(&self.changes, "changes")
    }

    /// Changes after `rev`, in order, at most `limit` of them.
    pub fn changes_after(&self, rev: u64, limit: usize) -> Result<Vec<(u64, SignedChange)>> {
        let start = rev.saturating_add(1);
        decode_all(self.changes.range(key(start)..).take(limit), "changes")
    }

    /// The newest audit record, if any.
    pub fn last_audit(&self) -> Result<Option<AuditRecord>> {
        match self.audit.last()? {
            Some((k, v)) => {
                let seq = parse_key("audit", &k)?;
                Ok(Some(decode("audit", seq, &v)?))
            }
            None => Ok(None),
        }
    }

    /// The last audit sequence number the approver acknowledged.
    pub fn audit_head(&self) -> Result<Option<u64>> {
        Ok(self
            .meta
            .get(META_AUDIT_HEAD)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(u64::from_be_bytes))
    }

    /// The signed head of the log, decoded on its own so that damage to it is reported as what
    /// it is (`None`: a store written before heads were signed, or an empty one).
    pub fn signed_audit_head(&self) -> Result<Option<std::result::Result<SignedHead, CodecError>>> {
        Ok(self
            .meta
            .get(META_AUDIT_HEAD_SIGNED)?
            .map(|v| codec::decode::<SignedHead>(&v)))
    }

    /// A named counter (0 when never set).
    pub fn counter(&self, name: &str) -> Result<u64> {
        Ok(self
            .meta
            .get(counter_key(name))?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0))
    }

    pub fn session(&self, id: &str) -> Result<Option<SessionRecord>> {
        match self.sessions.get(id.as_bytes())? {
            Some(v) => Ok(Some(decode("sessions", 0, &v)?)),
            None => Ok(None),
        }
    }

    /// Every session the gateways reported, in id order.
    pub fn sessions(&self) -> Result<Vec<SessionRecord>> {
        self.sessions
            .iter()
            .map(|kv| {
                let (_, v) = kv?;
                decode("sessions", 0, &v)
            })
            .collect()
    }

    /// Every audit record in stored order, each decoded on its own so that one corrupt record
    /// is reported by position instead of hiding the rest.
    pub fn audit_records(
        &self,
    ) -> impl Iterator<Item = (u64, std::result::Result<AuditRecord, CodecError>)> + '_ {
        self.audit.iter().filter_map(|kv| {
            let (k, v) = kv.ok()?;
            let seq = <[u8; 8]>::try_from(k.as_ref())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            Some((seq, codec::decode::<AuditRecord>(&v)))
        })
    }

    /// Raw access for the tests that prove `audit verify` catches tampering with the files:
    /// nothing in portcullis writes through these.
    pub fn tamper(&self) -> Tamper<'_> {
        Tamper(self)
    }
}

/// The most sled keeps of a store in memory (its page cache).
const CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// Open a sled database with our settings, telling a locked store apart from other errors.
fn open_db(dir: &Path) -> Result<sled::Db> {
    sled::Config::new()
        .path(dir)
        // We flush explicitly before every acknowledgement; the background flush only bounds
        // how much unacknowledged work a crash can lose.
        .flush_every_ms(Some(1000))
        // sled's default page cache is 1 GiB: a daemon that reads its whole audit log (a
        // verify, a long `audit` query) would keep growing toward that. The working set of
        // both daemons is far smaller.
        .cache_capacity(CACHE_BYTES)
        .open()
        .map_err(|source| match source {
            sled::Error::Io(ref e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.to_string().contains("could not acquire lock") =>
            {
                StoreError::Locked {
                    path: dir.display().to_string(),
                    source,
                }
            }
            other => StoreError::Sled(other),
        })
}

fn counter_key(name: &str) -> Vec<u8> {
    format!("counter/{name}").into_bytes()
}

fn last_key(tree: &sled::Tree, name: &'static str) -> Result<u64> {
    match tree.last()? {
        Some((k, _)) => parse_key(name, &k),
        None => Ok(0),
    }
}

/// See [`Store::tamper`].
pub struct Tamper<'a>(&'a Store);

impl Tamper<'_> {
    pub fn audit_raw(&self, seq: u64) -> Result<Option<Vec<u8>>> {
        Ok(self.0.audit.get(key(seq))?.map(|v| v.to_vec()))
    }
    pub fn put_audit_raw(&self, seq: u64, bytes: &[u8]) -> Result<()> {
        self.0.audit.insert(key(seq), bytes)?;
        self.0.db.flush()?;
        Ok(())
    }
    pub fn remove_audit(&self, seq: u64) -> Result<()> {
        self.0.audit.remove(key(seq))?;
        self.0.db.flush()?;
        Ok(())
    }
    pub fn signed_audit_head_raw(&self) -> Result<Option<Vec<u8>>> {
        Ok(self.0.meta.get(META_AUDIT_HEAD_SIGNED)?.map(|v| v.to_vec()))
    }
    pub fn put_signed_audit_head_raw(&self, bytes: &[u8]) -> Result<()> {
        self.0.meta.insert(META_AUDIT_HEAD_SIGNED, bytes)?;
        self.0.db.flush()?;
        Ok(())
    }
    /// What a store written before heads were signed looks like.
    pub fn remove_signed_audit_head(&self) -> Result<()> {
        self.0.meta.remove(META_AUDIT_HEAD_SIGNED)?;
        self.0.db.flush()?;
        Ok(())
    }
    /// Set the unsigned head counter, as someone cutting the end of the log would.
    pub fn set_audit_head_counter(&self, seq: u64) -> Result<()> {
        self.0.meta.insert(META_AUDIT_HEAD, &key(seq))?;
        self.0.db.flush()?;
        Ok(())
    }
    pub fn put_request_raw(&self, id: u64, bytes: &[u8]) -> Result<()> {
        self.0.requests.insert(key(id), bytes)?;
        self.0.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_audit::Chain;
    use portcullis_core::audit_event::{AuditEvent, EventKind};
    use portcullis_core::model::RequestState;
    use portcullis_core::Timestamp;
    use proptest::prelude::*;
    use std::time::Duration;

    fn request(id: u64) -> Request {
        Request {
            id,
            user: "alice".into(),
            target: "db".into(),
            policy: "p".into(),
            duration: Duration::from_secs(60),
            reason: None,
            created_at: Timestamp(1),
            expires_at: Timestamp(2),
            approvals: vec![],
            needed: 1,
            state: RequestState::Pending,
            decided_at: None,
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    #[test]
    fn commit_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
        {
            let s = Store::open(dir.path()).unwrap();
            let mut chain = Chain::after(None);
            let mut batch = Batch {
                requests: vec![request(1), request(2)],
                audit: vec![chain.seal(
                    &key,
                    Timestamp(5),
                    AuditEvent::new("alice", EventKind::RequestDenied),
                )],
                ..Default::default()
            };
            // Records without their signed head (or with another record's) are refused whole.
            let e = rt().block_on(s.commit(&batch)).unwrap_err();
            assert!(matches!(e, StoreError::HeadMissing { seq: 1 }), "{e}");
            let wrong = portcullis_audit::Head {
                seq: 1,
                hash: [0; 32],
                at: Timestamp(5),
            };
            batch.audit_head = Some(SignedHead::seal(&key, &wrong));
            assert!(rt().block_on(s.commit(&batch)).is_err());
            assert_eq!(s.last_request_id().unwrap(), 0);
            let head = chain.head(Timestamp(5)).unwrap();
            batch.audit_head = Some(SignedHead::seal(&key, &head));
            rt().block_on(s.commit(&batch)).unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.last_request_id().unwrap(), 2);
        assert_eq!(s.request(1).unwrap(), Some(request(1)));
        assert_eq!(s.audit_head().unwrap(), Some(1));
        let signed = s.signed_audit_head().unwrap().unwrap().unwrap();
        assert_eq!(signed.open(&key.verifying_key()).unwrap().seq, 1);
        assert_eq!(s.last_audit().unwrap().unwrap().seq, 1);
        assert_eq!(s.last_rev().unwrap(), 0);
    }

    #[test]
    fn a_second_opener_is_told_the_store_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        let _s = Store::open(dir.path()).unwrap();
        let e = Store::open(dir.path()).err().unwrap();
        assert!(e.to_string().contains("in use"), "{e}");
    }

    /// Decode `bytes` as tree `tree` would: a value must survive a round trip through the
    /// encoder, an error must name the tree and the key.
    fn decodes_or_names<T>(
        tree: &'static str,
        bytes: &[u8],
    ) -> std::result::Result<(), TestCaseError>
    where
        T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
    {
        match decode::<T>(tree, 7, bytes) {
            Ok(v) => prop_assert_eq!(codec::decode::<T>(&codec::encode(&v)).ok(), Some(v)),
            Err(e) => {
                let prefix = format!("corrupt record 7 in tree {tree}");
                prop_assert!(e.to_string().starts_with(&prefix), "{}", e);
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn corrupt_records_are_errors_not_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let dir = tempfile::tempdir().unwrap();
            let s = Store::open(dir.path()).unwrap();
            s.tamper().put_request_raw(1, &bytes).unwrap();
            match s.request(1) {
                Ok(_) => {}
                Err(e) => prop_assert!(e.to_string().contains("corrupt record 1 in tree requests")),
            }
            prop_assert!(s.requests().is_ok() || s.requests().is_err());
        }

        #[test]
        fn truncated_records_are_refused(cut in 0usize..200) {
            let dir = tempfile::tempdir().unwrap();
            let s = Store::open(dir.path()).unwrap();
            let full = codec::encode(&request(1));
            let cut = cut % full.len();
            s.tamper().put_request_raw(1, &full[..cut]).unwrap();
            prop_assert!(s.request(1).is_err());
        }
    }

    proptest! {
        // No sled here: the decoder alone, for every record type the trees hold.
        #[test]
        fn every_record_type_refuses_garbage_by_name(versioned in any::<bool>(), body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut bytes = if versioned { vec![codec::FORMAT_VERSION] } else { Vec::new() };
            bytes.extend_from_slice(&body);
            decodes_or_names::<Request>("requests", &bytes)?;
            decodes_or_names::<GrantRecord>("grants", &bytes)?;
            decodes_or_names::<SignedChange>("changes", &bytes)?;
            decodes_or_names::<AuditRecord>("audit", &bytes)?;
            decodes_or_names::<SessionRecord>("sessions", &bytes)?;
            decodes_or_names::<portcullis_core::model::SessionReport>("spool", &bytes)?;
            decodes_or_names::<portcullis_core::model::SignedGrant>("grants", &bytes)?;
            decodes_or_names::<portcullis_core::Catalog>("meta", &bytes)?;
        }

        #[test]
        fn requests_round_trip(id in any::<u64>(), user in "\\PC{0,16}", reason in proptest::option::of("\\PC{0,40}"), secs in any::<u64>(), nanos in 0u32..1_000_000_000) {
            let mut r = request(id);
            r.user = user;
            r.reason = reason;
            r.duration = Duration::new(secs, nanos);
            let bytes = codec::encode(&r);
            prop_assert_eq!(decode::<Request>("requests", id, &bytes).ok(), Some(r));
            // Any cut of a record is refused, never read as a shorter one.
            for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
                prop_assert!(decode::<Request>("requests", id, &bytes[..cut]).is_err());
            }
        }
    }
}
