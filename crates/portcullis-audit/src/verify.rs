//! The verifier: walks a log in stored order and proves it untouched, or names the first bad
//! record (undecodable, out of place, unlinked, altered, badly signed) or a bad end (cut, past
//! or not matching the signed head, the head forged).

use ed25519_dalek::VerifyingKey;
use portcullis_core::codec::CodecError;
use portcullis_core::signing::{self, Purpose, SignatureError};

use crate::chain::{digest, AuditRecord, Chain};
use crate::head::{Head, SignedHead};
use crate::schedule::KeySchedule;

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
    let chain = walk(schedule, records)?;
    let count = chain.next_seq - 1;
    let signed_head = open_head(schedule, end.signed.as_ref())?;
    check_end(&chain, signed_head.as_ref(), end.counter)?;
    Ok(Verified {
        records: count,
        head: chain.prev,
        signed_head,
    })
}

/// Every record in turn against the chain built so far: the chain as the last good record
/// leaves it, or the first bad record.
fn walk<I>(schedule: &KeySchedule, records: I) -> Result<Chain, Broken>
where
    I: IntoIterator<Item = (u64, Result<AuditRecord, CodecError>)>,
{
    let mut chain = Chain::after(None);
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
    }
    Ok(chain)
}

/// The signed head, verified; `None` for a store written before heads were signed.
fn open_head(
    schedule: &KeySchedule,
    signed: Option<&Result<SignedHead, CodecError>>,
) -> Result<Option<Head>, Broken> {
    match signed {
        None => Ok(None),
        Some(Err(e)) => Err(Broken::HeadForged {
            why: format!("does not decode ({e})"),
        }),
        // Signed by the key that signed the record it names (a crash right after a rotation
        // leaves the rotation's head, signed by the old key).
        Some(Ok(signed)) => signed
            .open(schedule.key_for_head(signed))
            .map(Some)
            .map_err(|e| Broken::HeadForged {
                why: match e {
                    SignatureError::Invalid => "is not signed by this approver's key".to_string(),
                    SignatureError::Payload(e) => format!("does not decode ({e})"),
                },
            }),
    }
}

/// The walked log must end exactly at the signed head, and reach the unsigned counter: the
/// records themselves cannot tell that some were cut off after them.
fn check_end(
    chain: &Chain,
    signed_head: Option<&Head>,
    counter: Option<u64>,
) -> Result<(), Broken> {
    let count = chain.next_seq - 1;
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
    if let Some(head) = counter {
        if head > count {
            return Err(Broken::Truncated { last: count, head });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use portcullis_core::audit_event::{AuditEvent, EventKind};
    use portcullis_core::codec;
    use portcullis_core::signing::Signed;
    use portcullis_core::Timestamp;
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
