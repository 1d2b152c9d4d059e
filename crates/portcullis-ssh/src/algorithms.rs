//! The algorithms every portcullis SSH endpoint offers, server and client alike (#14 item 6).
//!
//! Spelled out rather than left to russh's defaults, which still carry
//! `diffie-hellman-group14-sha256` (a 2048-bit group), the group-exchange methods (whose
//! server side in russh picks from a short built-in list, group14 included) and the
//! encrypt-and-MAC modes `hmac-sha2-256`/`hmac-sha2-512`. Nothing here is something russh (as
//! this workspace builds it: aws-lc-rs, no `rsa` feature) cannot do: an offer we cannot honour
//! fails a handshake that another choice would have carried.

use std::borrow::Cow;

use russh::keys::{Algorithm, EcdsaCurve};
use russh::{cipher, compression, kex, mac};

/// Key exchange: the post-quantum hybrid and curve25519 first (OpenSSH 9.9+ and 9.2 pick
/// these), then finite-field groups of at least 4096 bits with SHA-512 for peers without
/// curve25519. No group1/group14 (1024/2048 bits), no SHA-1, no group exchange. The
/// `ext-info` and strict-kex markers stay: russh sends each side's own and the latter is the
/// Terrapin countermeasure (CVE-2023-48795).
pub const KEX: &[kex::Name] = &[
    kex::MLKEM768X25519_SHA256,
    kex::CURVE25519,
    kex::CURVE25519_PRE_RFC_8731,
    kex::DH_G16_SHA512,
    kex::DH_G18_SHA512,
    kex::EXTENSION_SUPPORT_AS_CLIENT,
    kex::EXTENSION_SUPPORT_AS_SERVER,
    kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT,
    kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
];

/// Ciphers: AEAD first, AES-256-GCM ahead of chacha20-poly1305 (with the aws-lc-rs backend and
/// AES-NI it is the fastest here, and it is what the OpenSSH comparisons use: FIELD-NOTES);
/// aes256-ctr last, only ever with an `-etm` MAC. No CBC, no 3DES.
pub const CIPHERS: &[cipher::Name] = &[
    cipher::AES_256_GCM,
    cipher::CHACHA20_POLY1305,
    cipher::AES_256_CTR,
];

/// MACs (used only with aes256-ctr; AEAD ciphers carry their own tag): encrypt-then-MAC with
/// SHA-2 only. The plain `hmac-sha2-*` modes MAC the plaintext, and a receiver has to decrypt
/// the length before it can check anything (the attacks on SSH's encrypt-and-MAC, e.g.
/// Albrecht, Paterson, Watson 2009, need exactly that).
pub const MACS: &[mac::Name] = &[mac::HMAC_SHA256_ETM, mac::HMAC_SHA512_ETM];

/// Host-key and signature algorithms: ed25519, then ECDSA. No `ssh-rsa` (SHA-1 signatures);
/// the `rsa-sha2-*` forms are left out too because this build of russh has no RSA at all
/// (advertising them would promise a verification it cannot do).
pub const KEYS: &[Algorithm] = &[
    Algorithm::Ed25519,
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP256,
    },
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP384,
    },
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP521,
    },
];

/// No compression (FIELD-NOTES: zlib bombs).
pub const COMPRESSION: &[compression::Name] = &[compression::NONE];

/// The lists above as russh's [`russh::Preferred`], for a server's or a client's config.
pub fn preferred() -> russh::Preferred {
    russh::Preferred {
        kex: Cow::Borrowed(KEX),
        key: Cow::Borrowed(KEYS),
        host_key_certificates: Cow::Borrowed(&[]),
        cipher: Cow::Borrowed(CIPHERS),
        mac: Cow::Borrowed(MACS),
        compression: Cow::Borrowed(COMPRESSION),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_weak_is_offered() {
        let p = preferred();
        let kex: Vec<&str> = p.kex.iter().map(|k| k.as_ref()).collect();
        assert_eq!(
            &kex[..3],
            [
                "mlkem768x25519-sha256",
                "curve25519-sha256",
                "curve25519-sha256@libssh.org"
            ]
        );
        for k in &kex {
            assert!(!k.contains("sha1"), "{k}");
            assert!(!k.contains("group1-") && !k.contains("group14"), "{k}");
            assert!(!k.contains("group-exchange"), "{k}");
        }
        for m in p.mac.iter() {
            assert!(m.as_ref().ends_with("-etm@openssh.com"), "{}", m.as_ref());
            assert!(m.as_ref().contains("sha2"), "{}", m.as_ref());
        }
        for c in p.cipher.iter() {
            assert!(!c.as_ref().contains("cbc"), "{}", c.as_ref());
        }
        assert!(!p.key.iter().any(|a| matches!(a, Algorithm::Rsa { .. })));
        assert_eq!(p.compression.len(), 1);
    }

    #[test]
    fn russh_knows_every_name() {
        let markers = ["ext-info-", "kex-strict-"];
        for k in KEX
            .iter()
            .filter(|k| !markers.iter().any(|m| k.as_ref().starts_with(m)))
        {
            assert!(kex::Name::try_from(k.as_ref()).is_ok(), "{}", k.as_ref());
        }
        for c in CIPHERS {
            assert!(cipher::Name::try_from(c.as_ref()).is_ok(), "{}", c.as_ref());
        }
        for m in MACS {
            assert!(mac::Name::try_from(m.as_ref()).is_ok(), "{}", m.as_ref());
        }
    }
}
