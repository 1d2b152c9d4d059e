//! The record format and the chain rules: what a record's hash covers, how the next record is
//! sealed onto the chain, and where the chain ends (the [`Head`] the approver signs).

use ed25519_dalek::SigningKey;
use portcullis_core::audit_event::AuditEvent;
use portcullis_core::codec;
use portcullis_core::signing::{self, Purpose};
use portcullis_core::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::head::Head;

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

pub(crate) fn digest(seq: u64, at: Timestamp, prev: &[u8; 32], event: &AuditEvent) -> [u8; 32] {
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
