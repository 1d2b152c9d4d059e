//! Helpers shared by the fuzz targets and the seed-corpus generator.
//!
//! Every target checks more than "does not panic": a value that decodes must survive
//! `decode(encode(value)) == value`, and whatever the product computes from it must hold the
//! invariants the product relies on. A broken invariant is a crash the fuzzer reports.

use std::fmt::Debug;

use portcullis_core::codec;
use serde::{de::DeserializeOwned, Serialize};

/// The signing key every seed is signed with and every target verifies against, so that the
/// fuzzer starts from inputs that get past signature checks and can explore what follows.
pub const SEED_KEY: [u8; 32] = [9; 32];

pub fn signing_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&SEED_KEY)
}

pub fn verifying_key() -> ed25519_dalek::VerifyingKey {
    signing_key().verifying_key()
}

/// Decode `bytes` as a `[version] ++ bincode` record of type `T`. When it decodes, check that
/// the value survives a round trip through the encoder and that the re-encoding is a fixed
/// point (the encoder is canonical even when the input was not: a `Duration` with nanos over
/// one second, say). A decode error must render without panicking.
pub fn record_round_trip<T>(bytes: &[u8]) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    match codec::decode::<T>(bytes) {
        Ok(value) => {
            let encoded = codec::encode(&value);
            match codec::decode::<T>(&encoded) {
                Ok(back) => {
                    assert_eq!(back, value, "decode(encode(x)) != x");
                    assert_eq!(codec::encode(&back), encoded, "encoding is not canonical");
                }
                Err(e) => panic!("a decoded value does not decode after encoding: {e}"),
            }
            Some(value)
        }
        Err(e) => {
            let _ = e.to_string();
            None
        }
    }
}

/// The same for a body without the version byte (what `Signed` carries and signatures cover).
pub fn body_round_trip<T>(body: &[u8]) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    match codec::decode_body::<T>(body) {
        Ok(value) => {
            let encoded = codec::body_bytes(&value);
            match codec::decode_body::<T>(&encoded) {
                Ok(back) => assert_eq!(back, value, "decode_body(body_bytes(x)) != x"),
                Err(e) => panic!("a decoded body does not decode after encoding: {e}"),
            }
            Some(value)
        }
        Err(e) => {
            let _ = e.to_string();
            None
        }
    }
}

/// The CA that signed the seed certificates of `corpus/certificate/` (made once with
/// `ssh-keygen -s`; its private half was not kept), trusted by the `certificate` target.
pub const CERT_CA: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAID1/NudBoLa09WvuDBkXbV4Q6aZgUsbMfIYXZvXt4Jkx fuzz-ca";
