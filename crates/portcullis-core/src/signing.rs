//! Signatures over encoded bytes, with a domain-separation context per kind of message so that
//! a signature made for one purpose (an audit record) can never be replayed as another (a grant).

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::codec::{self, CodecError};

/// What a signature is for; its bytes are prefixed to the signed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Grant,
    Change,
    Audit,
    /// The first frame of a `watch` stream: which store the changes that follow come from.
    Hello,
    /// The head of the audit log: where it ends. Its own context, so that no record, grant or
    /// change signature can be presented as a head (and no head as one of those).
    AuditHead,
}

impl Purpose {
    fn context(self) -> &'static [u8] {
        match self {
            Purpose::Grant => b"portcullis grant v1\0",
            Purpose::Change => b"portcullis change v1\0",
            Purpose::Audit => b"portcullis audit v1\0",
            Purpose::Hello => b"portcullis stream hello v1\0",
            Purpose::AuditHead => b"portcullis audit head v1\0",
        }
    }
}

fn message(purpose: Purpose, bytes: &[u8]) -> Vec<u8> {
    let mut m = purpose.context().to_vec();
    m.extend_from_slice(bytes);
    m
}

/// Sign `bytes` for `purpose`.
pub fn sign(key: &SigningKey, purpose: Purpose, bytes: &[u8]) -> [u8; 64] {
    key.sign(&message(purpose, bytes)).to_bytes()
}

/// Verify a signature made by [`sign`] (strict: no malleable signatures).
pub fn verify(
    key: &VerifyingKey,
    purpose: Purpose,
    bytes: &[u8],
    sig: &[u8],
) -> Result<(), SignatureError> {
    let sig = Signature::from_slice(sig).map_err(|_| SignatureError::Invalid)?;
    key.verify_strict(&message(purpose, bytes), &sig)
        .map_err(|_| SignatureError::Invalid)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("signature does not verify against the pinned signing key")]
    Invalid,
    #[error("signed payload does not decode: {0}")]
    Payload(#[from] CodecError),
}

/// A value kept as the exact bytes that were signed, plus the signature. Verification happens
/// on those bytes before they are decoded, so a receiver never acts on an unverified value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed {
    pub body: Vec<u8>,
    pub signature: Vec<u8>,
}

impl Signed {
    pub fn seal<T: Serialize>(key: &SigningKey, purpose: Purpose, value: &T) -> Signed {
        let body = codec::body_bytes(value);
        let signature = sign(key, purpose, &body).to_vec();
        Signed { body, signature }
    }

    /// Verify, then decode.
    pub fn open<T: DeserializeOwned>(
        &self,
        key: &VerifyingKey,
        purpose: Purpose,
    ) -> Result<T, SignatureError> {
        verify(key, purpose, &self.body, &self.signature)?;
        Ok(codec::decode_body(&self.body)?)
    }

    /// As [`Signed::open`], accepting a signature by any of `keys` (a gateway pins the old and
    /// the new grant-signing key while a rotation rolls out).
    pub fn open_any<T: DeserializeOwned>(
        &self,
        keys: &[VerifyingKey],
        purpose: Purpose,
    ) -> Result<T, SignatureError> {
        let mut last = SignatureError::Invalid;
        for key in keys {
            match self.open(key, purpose) {
                Ok(v) => return Ok(v),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Decode without verifying: only for a store's own records, already verified on the way in.
    pub fn peek<T: DeserializeOwned>(&self) -> Result<T, CodecError> {
        codec::decode_body(&self.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purposes_do_not_cross() {
        let k = SigningKey::from_bytes(&[1u8; 32]);
        let s = Signed::seal(&k, Purpose::Grant, &42u64);
        assert_eq!(s.open::<u64>(&k.verifying_key(), Purpose::Grant), Ok(42));
        assert_eq!(
            s.open::<u64>(&k.verifying_key(), Purpose::Audit),
            Err(SignatureError::Invalid)
        );
        let mut bad = s.clone();
        bad.body[0] ^= 1;
        assert_eq!(
            bad.open::<u64>(&k.verifying_key(), Purpose::Grant),
            Err(SignatureError::Invalid)
        );
        let other = SigningKey::from_bytes(&[2u8; 32]);
        assert!(s
            .open::<u64>(&other.verifying_key(), Purpose::Grant)
            .is_err());
    }
}
