//! The signed head: where the log ends, signed so that records cut off its end are caught.

use ed25519_dalek::{SigningKey, VerifyingKey};
use portcullis_core::codec::CodecError;
use portcullis_core::signing::{Purpose, SignatureError, Signed};
use portcullis_core::Timestamp;
use serde::{Deserialize, Serialize};

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
