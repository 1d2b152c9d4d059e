//! The key schedule: which signing key signed which records across signing-key rotations,
//! read back from the `signing_key.rotated` records themselves.

use ed25519_dalek::VerifyingKey;
use portcullis_core::codec::CodecError;

use crate::chain::AuditRecord;
use crate::head::SignedHead;
use crate::verify::Broken;

/// Which key signed which records: the pinned (newest) key from the last rotation on, and
/// before each `signing_key.rotated` record (included) the old key it names.
#[derive(Debug, Clone)]
pub struct KeySchedule {
    /// `(last seq signed by key, key)`, oldest first; the last entry covers everything after.
    spans: Vec<(u64, VerifyingKey)>,
}

impl KeySchedule {
    pub(crate) fn single(key: VerifyingKey) -> KeySchedule {
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

    /// The key a signed head should verify with: the one for the record it names.
    pub fn key_for_head(&self, signed: &SignedHead) -> &VerifyingKey {
        match signed.peek() {
            Ok(head) => self.key_for(head.seq),
            Err(_) => self.newest(),
        }
    }
}
