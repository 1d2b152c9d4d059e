//! The gateway stream (`watch --since REV`): signed changes with revisions, framed for a byte
//! stream, and the client-side checks a gateway applies before it trusts any of them.

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::codec::{self, CodecError};
use crate::model::{Grant, SignedGrant};
use crate::signing::{Purpose, SignatureError, Signed};
use crate::time::Timestamp;

/// One entry of the change feed. Revisions increase by one per change, from 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub rev: u64,
    pub at: Timestamp,
    pub body: ChangeBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeBody {
    /// The whole catalog as of this revision (it is small; replacing it whole keeps gateways
    /// from ever holding half of a reload).
    Catalog(Catalog),
    /// A grant issued, or the same grant again once revoked.
    Grant(SignedGrant),
    /// An admin's `kill SESSION`: the gateway holding it cuts it.
    KillSession { session: String },
    /// The whole state a gateway needs, as of `rev`: sent (never stored) to a gateway whose
    /// history is not this store's (another store identity, or a store restored from an older
    /// copy), which replaces its replica with it instead of resuming.
    Snapshot {
        /// The store identity (see [`Hello`]).
        epoch: u64,
        catalog: Catalog,
        /// Every grant that has not ended, as signed.
        grants: Vec<SignedGrant>,
    },
}

/// A change as stored and sent: the signed bytes of a [`Change`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedChange(pub Signed);

impl SignedChange {
    /// What a gateway remembers of the last change it applied, to show on reconnecting that
    /// its history is the approver's: SHA-256 of the signed bytes.
    pub fn digest(&self) -> [u8; 32] {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update(&self.0.body);
        h.update(&self.0.signature);
        h.finalize().into()
    }

    pub fn seal(key: &ed25519_dalek::SigningKey, change: &Change) -> Self {
        SignedChange(Signed::seal(key, Purpose::Change, change))
    }
    pub fn peek(&self) -> Result<Change, CodecError> {
        crate::catalog_v1::decode_change(&self.0.body)
    }
    /// The change, if it verifies against `key` (a gateway's replica keeps the signed catalog
    /// and checks it again at every start).
    pub fn verify(&self, key: &VerifyingKey) -> Result<Change, SignatureError> {
        crate::signing::verify(key, Purpose::Change, &self.0.body, &self.0.signature)?;
        Ok(crate::catalog_v1::decode_change(&self.0.body)?)
    }
    /// Verified by any of the pinned keys.
    pub fn verify_any(&self, keys: &[VerifyingKey]) -> Result<Change, SignatureError> {
        let mut last = SignatureError::Invalid;
        for key in keys {
            match self.verify(key) {
                Ok(c) => return Ok(c),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

/// The first frame of a stream to a gateway that asked for it: the store's identity (an epoch
/// made when the store is created, and made anew when the approver finds its store was
/// restored from an older copy) and its newest revision, signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub epoch: u64,
    pub newest: u64,
    pub at: Timestamp,
}

impl Hello {
    pub fn seal(&self, key: &ed25519_dalek::SigningKey) -> Frame {
        Frame::Hello(Signed::seal(key, Purpose::Hello, self))
    }
}

/// What travels on the stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    Change(SignedChange),
    /// Sent when idle so a gateway can tell a quiet approver from a dead link; carries the
    /// newest revision so a gap is noticed.
    Heartbeat {
        rev: u64,
        at: Timestamp,
    },
    /// See [`Hello`]; only to gateways that ask (`watch --epoch`), so older ones keep working.
    Hello(Signed),
}

impl Frame {
    /// The bytes to write: length prefix, format version, bincode.
    pub fn to_wire(&self) -> Vec<u8> {
        codec::frame(&codec::encode(self))
    }
    pub fn from_record(record: &[u8]) -> Result<Frame, CodecError> {
        codec::decode(record)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StreamError {
    #[error("bad frame: {0}")]
    Codec(#[from] CodecError),
    #[error("change does not verify: {0}")]
    Signature(#[from] SignatureError),
    #[error("grant inside change {rev} does not verify: {error}")]
    Grant { rev: u64, error: SignatureError },
    #[error("revision {got} out of order (expected {expected})")]
    OutOfOrder { expected: u64, got: u64 },
}

/// A verified change, ready to apply to a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    Catalog {
        rev: u64,
        catalog: Catalog,
        /// As signed, for the replica to keep.
        signed: SignedChange,
    },
    Grant {
        rev: u64,
        grant: Grant,
        signed: SignedGrant,
    },
    Heartbeat {
        rev: u64,
        at: Timestamp,
    },
    Kill {
        rev: u64,
        session: String,
    },
    Hello(Hello),
    /// Replaces the whole replica (see [`ChangeBody::Snapshot`]).
    Snapshot {
        rev: u64,
        epoch: u64,
        catalog: Catalog,
        grants: Vec<(Grant, SignedGrant)>,
        signed: SignedChange,
    },
}

impl Verified {
    /// The revision this change brings the follower to.
    pub fn rev(&self) -> u64 {
        match self {
            Verified::Catalog { rev, .. }
            | Verified::Grant { rev, .. }
            | Verified::Heartbeat { rev, .. }
            | Verified::Kill { rev, .. }
            | Verified::Snapshot { rev, .. } => *rev,
            Verified::Hello(h) => h.newest,
        }
    }
}

/// Follows a stream: verifies every frame against the pinned key and checks that revisions
/// arrive in order with no gap, so a replica resumed from `since` never misses a change.
#[derive(Debug, Clone)]
pub struct Follower {
    /// The pinned grant-signing keys: anything signed by one of them is the approver's.
    keys: Vec<VerifyingKey>,
    last_rev: u64,
    /// SHA-256 of the last change accepted (see [`SignedChange::digest`]).
    last_digest: Option<[u8; 32]>,
}

impl Follower {
    pub fn new(key: VerifyingKey, since: u64) -> Self {
        Follower::pinned(vec![key], since)
    }

    /// Following a stream signed by any of `keys` (old and new while a rotation rolls out).
    pub fn pinned(keys: Vec<VerifyingKey>, since: u64) -> Self {
        Follower {
            keys,
            last_rev: since,
            last_digest: None,
        }
    }

    /// The digest of the last change accepted, for the replica to keep beside its revision.
    pub fn last_digest(&self) -> Option<[u8; 32]> {
        self.last_digest
    }

    pub fn last_rev(&self) -> u64 {
        self.last_rev
    }

    pub fn accept(&mut self, record: &[u8]) -> Result<Verified, StreamError> {
        match Frame::from_record(record)? {
            Frame::Heartbeat { rev, at } => Ok(Verified::Heartbeat { rev, at }),
            Frame::Hello(signed) => Ok(Verified::Hello(
                signed.open_any(&self.keys, Purpose::Hello)?,
            )),
            Frame::Change(signed_change) => {
                let change: Change = signed_change.verify_any(&self.keys)?;
                let digest = signed_change.digest();
                let rev = change.rev;
                // A snapshot replaces everything before it: there is no revision it must
                // follow on from. Every other change comes next, or not at all.
                let snapshot = matches!(change.body, ChangeBody::Snapshot { .. });
                if !snapshot && rev != self.last_rev + 1 {
                    return Err(StreamError::OutOfOrder {
                        expected: self.last_rev + 1,
                        got: rev,
                    });
                }
                let grant = |signed: SignedGrant| {
                    signed
                        .verify_any(&self.keys)
                        .map(|g| (g, signed))
                        .map_err(|error| StreamError::Grant { rev, error })
                };
                let verified = match change.body {
                    ChangeBody::Catalog(catalog) => Verified::Catalog {
                        rev,
                        catalog,
                        signed: signed_change,
                    },
                    ChangeBody::KillSession { session } => Verified::Kill { rev, session },
                    ChangeBody::Grant(signed) => {
                        let (grant, signed) = grant(signed)?;
                        Verified::Grant { rev, grant, signed }
                    }
                    ChangeBody::Snapshot {
                        epoch,
                        catalog,
                        grants,
                    } => Verified::Snapshot {
                        rev,
                        epoch,
                        catalog,
                        grants: grants.into_iter().map(grant).collect::<Result<_, _>>()?,
                        signed: signed_change,
                    },
                };
                self.last_rev = rev;
                self.last_digest = Some(digest);
                Ok(verified)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[9; 32])
    }

    fn change(rev: u64) -> Frame {
        Frame::Change(SignedChange::seal(
            &key(),
            &Change {
                rev,
                at: Timestamp(rev),
                body: ChangeBody::Catalog(Catalog::default()),
            },
        ))
    }

    fn record(f: &Frame) -> Vec<u8> {
        crate::codec::encode(f)
    }

    #[test]
    fn in_order_changes_verify_and_gaps_are_refused() {
        let mut f = Follower::new(key().verifying_key(), 0);
        assert!(f.accept(&record(&change(1))).is_ok());
        assert!(f.accept(&record(&change(2))).is_ok());
        assert_eq!(
            f.accept(&record(&change(4))),
            Err(StreamError::OutOfOrder {
                expected: 3,
                got: 4
            })
        );
        assert_eq!(f.last_rev(), 2);
    }

    #[test]
    fn a_snapshot_replaces_the_revision_and_its_grants_are_verified() {
        let mut f = Follower::new(key().verifying_key(), 9);
        let grant = |k: &ed25519_dalek::SigningKey| {
            crate::model::Grant {
                id: 3,
                request: 3,
                user: "alice".into(),
                target: "db".into(),
                policy: "p".into(),
                issued_at: Timestamp(1),
                expires_at: Timestamp(2),
                approvers: vec![],
                revoked: None,
            }
            .sign(k)
        };
        let snapshot = |grants| {
            Frame::Change(SignedChange::seal(
                &key(),
                &Change {
                    rev: 4,
                    at: Timestamp(4),
                    body: ChangeBody::Snapshot {
                        epoch: 77,
                        catalog: Catalog::default(),
                        grants,
                    },
                },
            ))
        };
        // A grant inside that another key signed spoils the whole snapshot.
        let other = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
        assert!(matches!(
            f.accept(&record(&snapshot(vec![grant(&other)]))),
            Err(StreamError::Grant { .. })
        ));
        let v = f.accept(&record(&snapshot(vec![grant(&key())]))).unwrap();
        assert!(
            matches!(v, Verified::Snapshot { rev: 4, epoch: 77, ref grants, .. } if grants.len() == 1)
        );
        // Changes follow on from the snapshot's revision, even below where the follower was.
        assert_eq!(f.last_rev(), 4);
        assert!(f.accept(&record(&change(5))).is_ok());
        // The hello is signed for its own purpose only.
        let hello = Hello {
            epoch: 77,
            newest: 5,
            at: Timestamp(5),
        };
        assert_eq!(
            f.accept(&record(&hello.seal(&key()))),
            Ok(Verified::Hello(hello.clone()))
        );
        let forged = Frame::Hello(crate::signing::Signed::seal(
            &key(),
            Purpose::Change,
            &hello,
        ));
        assert!(f.accept(&record(&forged)).is_err());
    }

    #[test]
    fn a_foreign_key_is_refused() {
        let other = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
        let mut f = Follower::new(other.verifying_key(), 0);
        assert!(matches!(
            f.accept(&record(&change(1))),
            Err(StreamError::Signature(_))
        ));
    }

    proptest! {
        #[test]
        fn garbage_frames_are_errors_not_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let mut f = Follower::new(key().verifying_key(), 0);
            let _ = f.accept(&bytes);
        }

        #[test]
        fn flipped_bits_never_verify(pos in 0usize..4096, bit in 0u8..8) {
            let mut r = record(&change(1));
            let pos = pos % r.len();
            r[pos] ^= 1 << bit;
            let mut f = Follower::new(key().verifying_key(), 0);
            prop_assert!(f.accept(&r).is_err());
        }
    }
}
