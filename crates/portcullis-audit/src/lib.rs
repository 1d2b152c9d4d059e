//! The audit log's integrity: records chained by SHA-256 and signed by the approver, and the
//! verifier that proves a log untouched or names the first bad record.
//!
//! This crate owns the record format and the chain rules. It must not touch storage or the
//! network: the store keeps the bytes, the approver decides when to seal, and both hand this
//! crate plain values. It also owns the signed head, the key schedule across signing-key
//! rotations, and how recordings are checked, converted (`RawCast`) and replayed.

use ed25519_dalek::{SigningKey, VerifyingKey};
use portcullis_core::audit_event::AuditEvent;
use portcullis_core::codec::{self, CodecError};
use portcullis_core::signing::{self, Purpose, SignatureError, Signed};
use portcullis_core::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The hash the first record points back to.
pub const GENESIS: [u8; 32] = [0u8; 32];

/// One sealed audit record. `hash` covers `seq`, `at`, `prev` and `event`; `signature` covers
/// `hash`. Changing, removing or reordering any record breaks the chain after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: u64,
    pub at: Timestamp,
    pub prev: [u8; 32],
    pub event: AuditEvent,
    pub hash: [u8; 32],
    pub signature: Vec<u8>,
}

#[derive(Serialize)]
struct Hashed<'a> {
    seq: u64,
    at: Timestamp,
    prev: &'a [u8; 32],
    event: &'a AuditEvent,
}

fn digest(seq: u64, at: Timestamp, prev: &[u8; 32], event: &AuditEvent) -> [u8; 32] {
    let bytes = codec::body_bytes(&Hashed {
        seq,
        at,
        prev,
        event,
    });
    Sha256::digest(&bytes).into()
}

impl AuditRecord {
    /// The record as JSON for `audit log --json`: the event's fields plus the chain's.
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("seq".into(), self.seq.into());
        m.insert("at".into(), self.at.rfc3339().into());
        m.insert("at_ms".into(), self.at.0.into());
        for (k, v) in self.event.to_json() {
            m.insert(k, v);
        }
        m.insert("hash".into(), hex::encode(self.hash).into());
        m.insert("prev".into(), hex::encode(self.prev).into());
        m.insert("signature".into(), hex::encode(&self.signature).into());
        serde_json::Value::Object(m)
    }
}

/// The head of a chain: the next sequence number and the hash to link to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chain {
    pub next_seq: u64,
    pub prev: [u8; 32],
}

impl Chain {
    /// A chain that continues after `last` (or starts afresh).
    pub fn after(last: Option<&AuditRecord>) -> Chain {
        match last {
            Some(r) => Chain {
                next_seq: r.seq + 1,
                prev: r.hash,
            },
            None => Chain {
                next_seq: 1,
                prev: GENESIS,
            },
        }
    }

    /// Where the chain ends now, as of `at`: what the approver signs with every commit that
    /// adds records. `None` before the first record.
    pub fn head(&self, at: Timestamp) -> Option<Head> {
        (self.next_seq > 1).then_some(Head {
            seq: self.next_seq - 1,
            hash: self.prev,
            at,
        })
    }

    /// Seal the next record and advance the head.
    pub fn seal(&mut self, key: &SigningKey, at: Timestamp, event: AuditEvent) -> AuditRecord {
        let hash = digest(self.next_seq, at, &self.prev, &event);
        let signature = signing::sign(key, Purpose::Audit, &hash).to_vec();
        let record = AuditRecord {
            seq: self.next_seq,
            at,
            prev: self.prev,
            event,
            hash,
            signature,
        };
        self.next_seq += 1;
        self.prev = hash;
        record
    }
}

/// Where the log ends: its last record's `seq` and `hash`, and when that was committed.
/// Records prove what they say; only a signed head proves that nothing came after them, so
/// records cut off the end (with any unsigned counter beside them) are caught from the
/// signature alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub seq: u64,
    pub hash: [u8; 32],
    pub at: Timestamp,
}

/// A [`Head`] signed by the approver under its own purpose ([`Purpose::AuditHead`]), kept as
/// the exact bytes signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedHead(pub Signed);

impl SignedHead {
    pub fn seal(key: &SigningKey, head: &Head) -> SignedHead {
        SignedHead(Signed::seal(key, Purpose::AuditHead, head))
    }

    /// Verify, then decode.
    pub fn open(&self, key: &VerifyingKey) -> Result<Head, SignatureError> {
        self.0.open(key, Purpose::AuditHead)
    }

    /// Decode without verifying: for the store's consistency check of what the approver
    /// just signed, never for a verdict.
    pub fn peek(&self) -> Result<Head, CodecError> {
        self.0.peek()
    }
}

/// What a verify says of a store that has no signed head yet.
pub const UNSIGNED_HEAD: &str = "this store has no signed head (it was written before heads were signed): records cut off the end of the log together with its head counter cannot be caught. The approver signs one with its next commit (at its next start at the latest). If this approver has run a version that signs heads, the signed head was removed: treat that as tampering";

/// The first thing wrong with a log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Broken {
    #[error("record {position} does not decode (bytes altered or cut): {error}")]
    Undecodable { position: u64, error: CodecError },
    #[error("record {seq} is out of place: expected record {expected} here (a record was removed or reordered)")]
    Sequence { seq: u64, expected: u64 },
    #[error("record {seq} does not link to record {}: a record before it was altered, removed or reordered", seq.saturating_sub(1))]
    Link { seq: u64 },
    #[error("record {seq} was altered: its content does not match its hash")]
    Altered { seq: u64 },
    #[error("record {seq} has a bad signature: not signed by this approver's key")]
    Signature { seq: u64 },
    #[error("the log ends at record {last} but the approver's head is record {head}: records were removed from the end")]
    Truncated { last: u64, head: u64 },
    #[error("the log ends at record {last} but the approver's signed head is record {head}: records were removed from the end")]
    TruncatedSigned { last: u64, head: u64 },
    #[error("record {seq} comes after the approver's signed head (record {head}): records were added after the last commit, or the head was replaced with an older one")]
    PastHead { seq: u64, head: u64 },
    #[error("record {seq} is not the record the approver's signed head names (its hash differs): the end of the log was replaced")]
    HeadMismatch { seq: u64 },
    #[error("the approver's signed head {why}: it was forged or altered (a head is signed with the approver's key; without that key it cannot be made)")]
    HeadForged { why: String },
    #[error("record {seq}, a signing-key rotation, {why}")]
    Rotation { seq: u64, why: String },
}

impl Broken {
    /// The sequence number of the first bad record.
    pub fn first_bad(&self) -> u64 {
        match self {
            Broken::Undecodable { position, .. } => *position,
            Broken::Sequence { seq, .. }
            | Broken::Link { seq }
            | Broken::Altered { seq }
            | Broken::Signature { seq } => *seq,
            Broken::Truncated { last, .. } | Broken::TruncatedSigned { last, .. } => last + 1,
            Broken::PastHead { seq, .. } | Broken::HeadMismatch { seq } => *seq,
            Broken::HeadForged { .. } => 0,
            Broken::Rotation { seq, .. } => *seq,
        }
    }
}

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub records: u64,
    pub head: [u8; 32],
    /// The signed head the log ends at; `None` for a store written before heads were signed,
    /// where records cut off the end together with the unsigned counter go unnoticed (say so).
    pub signed_head: Option<Head>,
}

/// Where the store says the log ends.
#[derive(Debug, Clone, Default)]
pub struct End {
    /// The approver's signed head, as decoded from the store (`None`: there is none).
    pub signed: Option<Result<SignedHead, CodecError>>,
    /// The unsigned counter of the last acknowledged `seq` (kept for stores written before
    /// heads were signed, and for older binaries).
    pub counter: Option<u64>,
}

/// Verify records in stored order. `position` is the storage key (1-based). The log must end
/// exactly at `end`'s signed head when there is one, and reach its counter, so that records cut
/// off the end are caught too.
pub fn verify<I>(key: &VerifyingKey, records: I, end: &End) -> Result<Verified, Broken>
where
    I: IntoIterator<Item = (u64, Result<AuditRecord, CodecError>)>,
{
    verify_scheduled(&KeySchedule::single(*key), records, end)
}

/// Which key signed which records: the pinned (newest) key from the last rotation on, and
/// before each `signing_key.rotated` record (included) the old key it names.
#[derive(Debug, Clone)]
pub struct KeySchedule {
    /// `(last seq signed by key, key)`, oldest first; the last entry covers everything after.
    spans: Vec<(u64, VerifyingKey)>,
}

impl KeySchedule {
    fn single(key: VerifyingKey) -> KeySchedule {
        KeySchedule {
            spans: vec![(u64::MAX, key)],
        }
    }

    /// The key that signed record `seq`.
    pub fn key_for(&self, seq: u64) -> &VerifyingKey {
        let i = self.spans.partition_point(|(last, _)| *last < seq);
        &self.spans[i.min(self.spans.len() - 1)].1
    }

    /// The key the head and the newest records are signed with.
    fn newest(&self) -> &VerifyingKey {
        &self.spans[self.spans.len() - 1].1
    }

    /// Read the rotations in `records` (a first pass) and build the schedule back from
    /// `pinned`, the newest key. Each rotation must hand over to the key the next span uses,
    /// and the last to `pinned`; whether each rotation record is really signed by its old key,
    /// and linked into the chain, is checked by the verification pass.
    pub fn from_log<I>(pinned: &VerifyingKey, records: I) -> Result<KeySchedule, Broken>
    where
        I: IntoIterator<Item = (u64, Result<AuditRecord, CodecError>)>,
    {
        use portcullis_core::audit_event::EventKind;
        let mut rotations = Vec::new();
        for (_, record) in records {
            let Ok(record) = record else { continue };
            if let EventKind::SigningKeyRotated { old, new } = record.event.kind {
                rotations.push((record.seq, old, new));
            }
        }
        let mut spans = vec![(u64::MAX, *pinned)];
        let mut after = *pinned;
        for (seq, old, new) in rotations.into_iter().rev() {
            let bad = |why: String| Broken::Rotation { seq, why };
            let new = portcullis_core::keys::parse_signing_key(&new)
                .map_err(|e| bad(format!("names a new key that does not parse ({e})")))?;
            if new != after {
                return Err(bad(format!(
                    "hands over to {}, but the records after it are to be signed by {}",
                    portcullis_core::keys::format_signing_key(&new),
                    portcullis_core::keys::format_signing_key(&after)
                )));
            }
            let old = portcullis_core::keys::parse_signing_key(&old)
                .map_err(|e| bad(format!("names an old key that does not parse ({e})")))?;
            spans.insert(0, (seq, old));
            after = old;
        }
        Ok(KeySchedule { spans })
    }
}

impl KeySchedule {
    /// The key a signed head should verify with: the one for the record it names.
    pub fn key_for_head(&self, signed: &SignedHead) -> &VerifyingKey {
        match signed.peek() {
            Ok(head) => self.key_for(head.seq),
            Err(_) => self.newest(),
        }
    }
}

/// As [`verify`], for a log whose signing key was rotated: `schedule` says which key signed
/// which records (see [`KeySchedule::from_log`]).
pub fn verify_scheduled<I>(
    schedule: &KeySchedule,
    records: I,
    end: &End,
) -> Result<Verified, Broken>
where
    I: IntoIterator<Item = (u64, Result<AuditRecord, CodecError>)>,
{
    let mut chain = Chain::after(None);
    let mut count = 0;
    for (position, record) in records {
        let record = record.map_err(|error| Broken::Undecodable { position, error })?;
        if record.seq != chain.next_seq || position != record.seq {
            return Err(Broken::Sequence {
                seq: record.seq,
                expected: chain.next_seq,
            });
        }
        if record.prev != chain.prev {
            return Err(Broken::Link { seq: record.seq });
        }
        if digest(record.seq, record.at, &record.prev, &record.event) != record.hash {
            return Err(Broken::Altered { seq: record.seq });
        }
        let signer = schedule.key_for(record.seq);
        if signing::verify(signer, Purpose::Audit, &record.hash, &record.signature).is_err() {
            return Err(Broken::Signature { seq: record.seq });
        }
        chain.next_seq += 1;
        chain.prev = record.hash;
        count += 1;
    }
    let signed_head =
        match &end.signed {
            None => None,
            Some(Err(e)) => {
                return Err(Broken::HeadForged {
                    why: format!("does not decode ({e})"),
                })
            }
            // Signed by the key that signed the record it names (a crash right after a rotation
            // leaves the rotation's head, signed by the old key).
            Some(Ok(signed)) => Some(signed.open(schedule.key_for_head(signed)).map_err(|e| {
                Broken::HeadForged {
                    why: match e {
                        SignatureError::Invalid => {
                            "is not signed by this approver's key".to_string()
                        }
                        SignatureError::Payload(e) => format!("does not decode ({e})"),
                    },
                }
            })?),
        };
    if let Some(head) = signed_head {
        if count < head.seq {
            return Err(Broken::TruncatedSigned {
                last: count,
                head: head.seq,
            });
        }
        if count > head.seq {
            return Err(Broken::PastHead {
                seq: head.seq + 1,
                head: head.seq,
            });
        }
        if chain.prev != head.hash {
            return Err(Broken::HeadMismatch { seq: head.seq });
        }
    }
    if let Some(head) = end.counter {
        if head > count {
            return Err(Broken::Truncated { last: count, head });
        }
    }
    Ok(Verified {
        records: count,
        head: chain.prev,
        signed_head,
    })
}

#[cfg(test)]
mod replay_tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    #[test]
    fn output_events_with_their_pauses() {
        let cast = "{\"version\": 2}\n[0.5, \"o\", \"a\"]\n[0.7, \"i\", \"x\"]\nnot json\n[2.5, \"o\", \"b\"]\n";
        let ev: Vec<_> = replay_events(cast, 2.0, None).collect();
        assert_eq!(
            ev,
            vec![
                (Duration::from_millis(250), "a".to_string()),
                (Duration::from_secs(1), "b".to_string())
            ]
        );
        let capped: Vec<_> = replay_events(cast, 1.0, Some(Duration::from_millis(100))).collect();
        assert!(capped.iter().all(|(p, _)| *p <= Duration::from_millis(100)));
    }

    proptest! {
        #[test]
        fn any_text_and_speed_replay_without_panic(
            cast in "\\PC{0,200}",
            times in proptest::collection::vec(any::<f64>(), 0..6),
            speed in any::<f64>(),
        ) {
            let mut text = format!("{{}}\n{cast}\n");
            for t in &times {
                text.push_str(&format!("[{t:e}, \"o\", \"x\"]\n"));
            }
            for (pause, _) in replay_events(&text, speed, None) {
                prop_assert!(pause <= REPLAY_MAX_PAUSE);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::audit_event::EventKind;
    use proptest::prelude::*;

    fn log(n: u64) -> (SigningKey, Vec<AuditRecord>) {
        let key = SigningKey::from_bytes(&[5; 32]);
        let mut chain = Chain::after(None);
        let records = (0..n)
            .map(|i| {
                chain.seal(
                    &key,
                    Timestamp(i * 1000),
                    AuditEvent::new("alice", EventKind::RequestDenied).request(i),
                )
            })
            .collect();
        (key, records)
    }

    fn check(
        key: &SigningKey,
        records: &[AuditRecord],
        head: Option<u64>,
    ) -> Result<Verified, Broken> {
        verify(
            &key.verifying_key(),
            records
                .iter()
                .enumerate()
                .map(|(i, r)| (i as u64 + 1, Ok(r.clone()))),
            &End {
                signed: None,
                counter: head,
            },
        )
    }

    /// The head the approver signs after committing `records`.
    fn head_of(key: &SigningKey, records: &[AuditRecord]) -> SignedHead {
        let chain = Chain::after(records.last());
        SignedHead::seal(key, &chain.head(Timestamp(99)).unwrap())
    }

    fn check_signed(
        key: &SigningKey,
        records: &[AuditRecord],
        head: SignedHead,
        counter: Option<u64>,
    ) -> Result<Verified, Broken> {
        verify(
            &key.verifying_key(),
            records
                .iter()
                .enumerate()
                .map(|(i, r)| (i as u64 + 1, Ok(r.clone()))),
            &End {
                signed: Some(Ok(head)),
                counter,
            },
        )
    }

    #[test]
    fn a_log_ending_at_its_signed_head_verifies() {
        let (key, records) = log(5);
        let v = check_signed(&key, &records, head_of(&key, &records), Some(5)).unwrap();
        assert_eq!(v.records, 5);
        assert_eq!(
            v.signed_head,
            Some(Head {
                seq: 5,
                hash: records[4].hash,
                at: Timestamp(99)
            })
        );
        // A store from before heads were signed verifies, and says it has none.
        assert_eq!(check(&key, &records, Some(5)).unwrap().signed_head, None);
        assert_eq!(Chain::after(None).head(Timestamp(1)), None);
    }

    #[test]
    fn the_end_cut_with_its_counter_is_caught_by_the_signed_head() {
        let (key, records) = log(5);
        let head = head_of(&key, &records);
        // The counter rewritten to match: only the signature tells.
        assert_eq!(
            check_signed(&key, &records[..3], head.clone(), Some(3)),
            Err(Broken::TruncatedSigned { last: 3, head: 5 })
        );
        assert_eq!(
            check_signed(&key, &[], head, None),
            Err(Broken::TruncatedSigned { last: 0, head: 5 })
        );
        // An older head (one the approver really signed) kept with the whole log: a record
        // past it is named.
        let old = head_of(&key, &records[..4]);
        assert_eq!(
            check_signed(&key, &records, old, None),
            Err(Broken::PastHead { seq: 5, head: 4 })
        );
    }

    #[test]
    fn a_forged_or_altered_head_is_tampering() {
        let (key, records) = log(3);
        let mallory = SigningKey::from_bytes(&[9; 32]);
        // Signed by another key, right seq and hash.
        let forged = head_of(&mallory, &records);
        let e = check_signed(&key, &records, forged, None).unwrap_err();
        assert!(matches!(e, Broken::HeadForged { .. }), "{e}");
        assert!(e.to_string().contains("not signed by this approver's key"));
        // The right key, bytes changed after signing (a lower seq, to hide a cut).
        let mut altered = head_of(&key, &records[..2]);
        altered.0.body[0] ^= 1;
        assert!(matches!(
            check_signed(&key, &records[..2], altered, None),
            Err(Broken::HeadForged { .. })
        ));
        // Bytes that no longer decode.
        let e = verify(
            &key.verifying_key(),
            records
                .iter()
                .enumerate()
                .map(|(i, r)| (i as u64 + 1, Ok(r.clone()))),
            &End {
                signed: Some(Err(CodecError::Empty)),
                counter: None,
            },
        )
        .unwrap_err();
        assert!(matches!(e, Broken::HeadForged { .. }), "{e}");
        // A head whose hash is not the last record's, signed by the right key.
        let wrong = SignedHead::seal(
            &key,
            &Head {
                seq: 3,
                hash: [7; 32],
                at: Timestamp(1),
            },
        );
        assert_eq!(
            check_signed(&key, &records, wrong, None),
            Err(Broken::HeadMismatch { seq: 3 })
        );
    }

    #[test]
    fn head_signatures_and_record_signatures_do_not_cross() {
        let (key, records) = log(2);
        let head = head_of(&key, &records);
        let vk = key.verifying_key();
        // A head's signature is no record signature, over the head's own bytes or the hash.
        assert!(signing::verify(&vk, Purpose::Audit, &head.0.body, &head.0.signature).is_err());
        assert!(signing::verify(&vk, Purpose::Audit, &records[1].hash, &head.0.signature).is_err());
        // A record's signature (or a grant's, a change's) is never a head's.
        let replayed = SignedHead(Signed {
            body: records[1].hash.to_vec(),
            signature: records[1].signature.clone(),
        });
        assert_eq!(replayed.open(&vk), Err(SignatureError::Invalid));
        let h = head.peek().unwrap();
        for purpose in [Purpose::Audit, Purpose::Grant, Purpose::Change] {
            let other = SignedHead(Signed::seal(&key, purpose, &h));
            assert_eq!(other.open(&vk), Err(SignatureError::Invalid), "{purpose:?}");
        }
        assert_eq!(head.open(&vk), Ok(h));
    }

    #[test]
    fn an_untouched_log_verifies() {
        let (key, records) = log(5);
        assert_eq!(check(&key, &records, Some(5)).unwrap().records, 5);
    }

    #[test]
    fn altered_removed_reordered_and_truncated_are_named() {
        let (key, records) = log(5);

        let mut altered = records.clone();
        altered[2].event.note = Some("edited".into());
        assert_eq!(check(&key, &altered, None), Err(Broken::Altered { seq: 3 }));

        let mut removed = records.clone();
        removed.remove(1);
        assert_eq!(
            check(&key, &removed, None).unwrap_err().first_bad(),
            3,
            "the record after the gap is the first bad one"
        );

        let mut reordered = records.clone();
        reordered.swap(1, 2);
        assert_eq!(check(&key, &reordered, None).unwrap_err().first_bad(), 3);

        assert_eq!(
            check(&key, &records[..3], Some(5)),
            Err(Broken::Truncated { last: 3, head: 5 })
        );

        let other = SigningKey::from_bytes(&[6; 32]);
        assert_eq!(
            check(&other, &records, None),
            Err(Broken::Signature { seq: 1 })
        );
    }

    #[test]
    fn rehashed_forgery_fails_on_the_signature() {
        let (key, mut records) = log(3);
        records[1].event.actor = "mallory".into();
        records[1].hash = digest(2, records[1].at, &records[1].prev, &records[1].event);
        let r = check(&key, &records, None).unwrap_err();
        assert_eq!(r, Broken::Signature { seq: 2 });
    }

    proptest! {
        #[test]
        fn any_byte_flip_in_a_stored_record_is_caught(which in 0usize..4, pos in 0usize..10_000, bit in 0u8..8) {
            let (key, records) = log(4);
            let mut stored: Vec<Vec<u8>> = records.iter().map(codec::encode).collect();
            let rec = &mut stored[which];
            let pos = pos % rec.len();
            rec[pos] ^= 1 << bit;
            let decoded = stored.iter().enumerate().map(|(i, b)| (i as u64 + 1, codec::decode::<AuditRecord>(b)));
            let end = End { signed: None, counter: Some(4) };
            prop_assert!(verify(&key.verifying_key(), decoded, &end).is_err());
        }
    }
}

/// Why a recording does not match what its session's end event recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordingBroken {
    #[error("the recording of session {session} is missing")]
    Missing { session: String },
    #[error("the recording of session {session} was altered: its SHA-256 is {found}, the end event recorded {expected}")]
    Altered {
        session: String,
        expected: String,
        found: String,
    },
}

/// Check one recording against the SHA-256 (hex) its end event carries.
pub fn verify_recording(
    session: &str,
    expected_sha256: &str,
    bytes: Option<&[u8]>,
) -> Result<(), RecordingBroken> {
    verify_recording_hash(
        session,
        expected_sha256,
        bytes.map(|b| hex::encode(Sha256::digest(b))),
    )
}

/// As [`verify_recording`], from the recording's SHA-256 (hex) as computed by whoever read it
/// (`None`: it is missing), so that a large recording can be hashed as it is read.
pub fn verify_recording_hash(
    session: &str,
    expected_sha256: &str,
    found: Option<String>,
) -> Result<(), RecordingBroken> {
    let found = found.ok_or_else(|| RecordingBroken::Missing {
        session: session.to_string(),
    })?;
    if found != expected_sha256 {
        return Err(RecordingBroken::Altered {
            session: session.to_string(),
            expected: expected_sha256.to_string(),
            found,
        });
    }
    Ok(())
}

#[cfg(test)]
mod recording_tests {
    use super::*;

    #[test]
    fn one_changed_byte_is_caught() {
        let cast = b"{\"version\":2}\n[0.1,\"o\",\"hi\"]\n".to_vec();
        let sha = hex::encode(Sha256::digest(&cast));
        assert!(verify_recording("s", &sha, Some(&cast)).is_ok());
        let mut bad = cast.clone();
        bad[20] ^= 1;
        assert!(matches!(
            verify_recording("s", &sha, Some(&bad)),
            Err(RecordingBroken::Altered { .. })
        ));
        assert!(matches!(
            verify_recording("s", &sha, None),
            Err(RecordingBroken::Missing { .. })
        ));
    }
}

/// Render the raw data stream of a channel without a pty (`portcullis-data v1`) as asciicast
/// v2, so `audit export` and `audit replay` work for every recorded session: stdout and stderr
/// as output events, what the client sent as input events. Whole; [`RawCast`] does the same
/// in pieces.
pub fn raw_to_cast(raw: &[u8], title: &str) -> Result<String, String> {
    let mut cast = RawCast::new(title);
    let mut out = String::new();
    cast.push(raw, &mut out)?;
    cast.finish()?;
    Ok(out)
}

/// Turns a raw data stream into an asciicast as its bytes come, in any pieces: a data
/// recording can be far larger than memory, so `audit export` converts it as it reads it.
#[derive(Debug)]
pub struct RawCast {
    title: String,
    /// Bytes of a record (or of the leading magic) not complete yet.
    pending: Vec<u8>,
    /// The magic line was checked and the header written.
    started: bool,
}

const RAW_MAGIC: &[u8] = b"portcullis-data v1\n";

/// The largest record a data stream is read with: a record is what one SSH data message
/// carried, so a larger length is damage, and reading it would hold it all in memory.
pub const RAW_MAX_RECORD: usize = 16 * 1024 * 1024;

impl RawCast {
    pub fn new(title: &str) -> RawCast {
        RawCast {
            title: title.to_string(),
            pending: Vec::new(),
            started: false,
        }
    }

    /// Convert what `bytes` completes, appending the cast's lines to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut String) -> Result<(), String> {
        self.pending.extend_from_slice(bytes);
        let mut rest = self.pending.as_slice();
        if !self.started {
            if rest.len() < RAW_MAGIC.len() {
                return if RAW_MAGIC.starts_with(rest) {
                    Ok(())
                } else {
                    Err("not a portcullis data stream".into())
                };
            }
            rest = rest
                .strip_prefix(RAW_MAGIC)
                .ok_or("not a portcullis data stream")?;
            out.push_str(&format!(
                "{}\n",
                serde_json::json!({"version": 2, "width": 80, "height": 24, "title": self.title})
            ));
            self.started = true;
        }
        while rest.len() >= 9 {
            let stream = rest[0];
            let ms = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]);
            let len = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]) as usize;
            if len > RAW_MAX_RECORD {
                return Err(format!(
                    "data stream record of {len} bytes (the recorder writes at most one SSH message, far under {RAW_MAX_RECORD})"
                ));
            }
            let Some(data) = rest.get(9..9 + len) else {
                break;
            };
            let kind = if stream == 0 { "i" } else { "o" };
            let text = serde_json::to_string(&String::from_utf8_lossy(data)).unwrap_or_default();
            out.push_str(&format!(
                "[{:.3}, \"{kind}\", {text}]\n",
                f64::from(ms) / 1000.0
            ));
            rest = &rest[9 + len..];
        }
        let used = self.pending.len() - rest.len();
        self.pending.drain(..used);
        Ok(())
    }

    /// The stream ended: an error if it ended inside a record.
    pub fn finish(self) -> Result<(), String> {
        match (self.started, self.pending.len()) {
            (false, _) => Err("not a portcullis data stream".into()),
            (true, 0) => Ok(()),
            (true, n) if n < 9 => Err("data stream cut inside a record header".into()),
            (true, _) => Err("data stream cut inside a record".into()),
        }
    }
}

#[cfg(test)]
mod raw_tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_record_longer_than_any_message_is_damage_not_a_wait() {
        let mut raw = b"portcullis-data v1\n".to_vec();
        raw.extend_from_slice(&[1, 0, 0, 0, 5]);
        raw.extend_from_slice(&u32::MAX.to_be_bytes());
        let mut out = String::new();
        let e = RawCast::new("t").push(&raw, &mut out).unwrap_err();
        assert!(e.contains("record of 4294967295 bytes"), "{e}");
    }

    #[test]
    fn raw_streams_become_casts() {
        let mut raw = b"portcullis-data v1\n".to_vec();
        raw.extend_from_slice(&[1, 0, 0, 0, 5, 0, 0, 0, 2]);
        raw.extend_from_slice(b"hi");
        let cast = raw_to_cast(&raw, "t").unwrap();
        assert!(cast.lines().nth(1).unwrap().contains("\"o\", \"hi\""));
        assert!(raw_to_cast(&raw[..raw.len() - 1], "t").is_err());
    }

    proptest! {
        /// In pieces of any size, the same cast (or the same refusal) as whole.
        #[test]
        fn pieces_make_the_same_cast(
            records in proptest::collection::vec((0u8..3, any::<u32>(), proptest::collection::vec(any::<u8>(), 0..40)), 0..8),
            cut_at in proptest::collection::vec(0usize..400, 0..6),
            chop in 0usize..10,
        ) {
            let mut raw = b"portcullis-data v1\n".to_vec();
            for (stream, ms, data) in &records {
                raw.push(*stream);
                raw.extend_from_slice(&ms.to_be_bytes());
                raw.extend_from_slice(&(data.len() as u32).to_be_bytes());
                raw.extend_from_slice(data);
            }
            raw.truncate(raw.len().saturating_sub(chop));
            let whole = raw_to_cast(&raw, "t");
            let mut cuts: Vec<usize> = cut_at.into_iter().map(|c| c.min(raw.len())).collect();
            cuts.sort_unstable();
            let mut cast = RawCast::new("t");
            let (mut out, mut from, mut failed) = (String::new(), 0, None);
            for c in cuts.into_iter().chain([raw.len()]) {
                if let Err(e) = cast.push(&raw[from..c], &mut out) {
                    failed = Some(e);
                    break;
                }
                from = c;
            }
            let pieces = match failed {
                Some(e) => Err(e),
                None => cast.finish().map(|()| out),
            };
            prop_assert_eq!(whole, pieces);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut raw = b"portcullis-data v1\n".to_vec();
            raw.extend_from_slice(&bytes);
            let _ = raw_to_cast(&raw, "t");
            let _ = raw_to_cast(&bytes, "t");
        }
    }
}

/// The longest pause `audit replay` ever makes between two events, whatever the recording says.
pub const REPLAY_MAX_PAUSE: std::time::Duration = std::time::Duration::from_secs(86_400);

/// The output events of an asciicast v2 recording, for `audit replay`: each with the pause
/// before it (the recording's own, divided by `speed`, capped by `idle_limit` and by
/// [`REPLAY_MAX_PAUSE`]) and its text. The header, input and resize events, and any line that
/// does not read as an event are skipped: a damaged recording replays what it can (`audit
/// verify` is what judges it). A `speed` that is not a positive number counts as 1.
pub fn replay_events(
    cast: &str,
    speed: f64,
    idle_limit: Option<std::time::Duration>,
) -> impl Iterator<Item = (std::time::Duration, String)> + '_ {
    let mut replay = Replay::new(speed, idle_limit);
    cast.lines()
        .skip(1)
        .filter_map(move |line| replay.event(line))
}

/// [`replay_events`] one line at a time, for a recording read in pieces: feed it every line
/// after the header.
#[derive(Debug)]
pub struct Replay {
    speed: f64,
    idle_limit: Option<std::time::Duration>,
    last: f64,
}

impl Replay {
    pub fn new(speed: f64, idle_limit: Option<std::time::Duration>) -> Replay {
        let speed = if speed.is_finite() && speed > 0.0 {
            speed
        } else {
            1.0
        };
        Replay {
            speed,
            idle_limit,
            last: 0.0,
        }
    }

    /// The pause before this line's output and its text, if it is an output event.
    pub fn event(&mut self, line: &str) -> Option<(std::time::Duration, String)> {
        let serde_json::Value::Array(ev) = serde_json::from_str(line).ok()? else {
            return None;
        };
        let (Some(t), Some("o"), Some(text)) = (
            ev.first().and_then(|v| v.as_f64()),
            ev.get(1).and_then(|v| v.as_str()),
            ev.get(2).and_then(|v| v.as_str()),
        ) else {
            return None;
        };
        let mut pause = std::time::Duration::try_from_secs_f64((t - self.last) / self.speed)
            .unwrap_or(if t > self.last {
                REPLAY_MAX_PAUSE
            } else {
                std::time::Duration::ZERO
            })
            .min(REPLAY_MAX_PAUSE);
        if let Some(cap) = self.idle_limit {
            pause = pause.min(cap);
        }
        self.last = t;
        Some((pause, text.to_string()))
    }
}

/// The recording hashes the (signed, chained) `session.ended` events carry: what every stored
/// recording is checked against, so a recording cannot be swapped along with an unsigned copy
/// of its hash.
pub fn recording_hashes<I>(records: I) -> Vec<(String, String)>
where
    I: IntoIterator<Item = (u64, Result<AuditRecord, CodecError>)>,
{
    expected_recordings(records).present
}

/// The recordings the log says should be on disk (session, SHA-256 from its end event), and
/// those a later `recording.removed` event says were removed on purpose (retention): those
/// are expected gone, and are not missing.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ExpectedRecordings {
    pub present: Vec<(String, String)>,
    pub removed: Vec<String>,
}

pub fn expected_recordings<I>(records: I) -> ExpectedRecordings
where
    I: IntoIterator<Item = (u64, Result<AuditRecord, CodecError>)>,
{
    use portcullis_core::audit_event::EventKind;
    let mut present: Vec<(String, String)> = Vec::new();
    let mut removed = std::collections::BTreeSet::new();
    for r in records.into_iter().filter_map(|(_, r)| r.ok()) {
        match r.event.kind {
            EventKind::SessionEnded {
                session,
                recording_sha256: Some(sha),
                ..
            } => present.push((session, sha)),
            EventKind::RecordingRemoved { session, .. } => {
                removed.insert(session);
            }
            _ => {}
        }
    }
    present.retain(|(s, _)| !removed.contains(s));
    ExpectedRecordings {
        present,
        removed: removed.into_iter().collect(),
    }
}
