//! The algorithms every portcullis SSH endpoint offers, server and client alike (#14 item 6).
//!
//! Spelled out rather than left to russh's defaults, which still carry
//! `diffie-hellman-group14-sha256` (a 2048-bit group), the group-exchange methods (whose
//! server side in russh picks from a short built-in list, group14 included) and the
//! encrypt-and-MAC modes `hmac-sha2-256`/`hmac-sha2-512`. Nothing here is something russh (as
//! this workspace builds it: aws-lc-rs and `rsa`) cannot do: an offer we cannot honour fails a
//! handshake that another choice would have carried, and a signature algorithm advertised in
//! `server-sig-algs` that cannot be verified is the "Permission denied" with no log line of
//! issue #13.

use std::borrow::Cow;

use russh::keys::{Algorithm, EcdsaCurve, HashAlg};
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

/// Host-key algorithms a portcullis client accepts: ed25519, ECDSA, then RSA with SHA-2 (a
/// target whose pinned host key is RSA). Never `ssh-rsa` (SHA-1 signatures).
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
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha512),
    },
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha256),
    },
];

/// What a portcullis server lists: russh offers only those of them it holds a host key for
/// (ed25519), and sends the whole list as `server-sig-algs` (RFC 8308), the user-signature
/// algorithms a client may use. Every one is verified (FIDO signatures by `ssh-key`); `ssh-rsa`
/// is left out, and refused if a client signs with it anyway (`keys::signature_algorithm_ok`),
/// as OpenSSH 8.8+ does. The list a client reads decides which RSA hash it signs with.
pub const SERVER_KEYS: &[Algorithm] = &[
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
    Algorithm::SkEd25519,
    Algorithm::SkEcdsaSha2NistP256,
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha512),
    },
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha256),
    },
];

/// No compression (FIELD-NOTES: zlib bombs).
pub const COMPRESSION: &[compression::Name] = &[compression::NONE];

/// The lists above as russh's [`russh::Preferred`], for a client's config.
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

/// The lists above as russh's [`russh::Preferred`], for a server's config: [`SERVER_KEYS`].
pub fn server_preferred() -> russh::Preferred {
    russh::Preferred {
        key: Cow::Borrowed(SERVER_KEYS),
        ..preferred()
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
        assert_eq!(p.compression.len(), 1);
        for keys in [&p.key, &server_preferred().key] {
            assert!(!keys
                .iter()
                .any(|a| matches!(a, Algorithm::Rsa { hash: None })));
            assert!(keys.iter().any(|a| a.as_str() == "rsa-sha2-512"));
        }
    }

    /// Every algorithm the server advertises verifies: a signature made with a key of that
    /// kind checks out through the same `Verifier` russh calls.
    #[test]
    fn every_advertised_signature_algorithm_verifies() {
        use russh::keys::signature::{Signer, Verifier};
        use russh::keys::ssh_key::private::{KeypairData, RsaKeypair};
        use russh::keys::ssh_key::Signature;
        use russh::keys::PrivateKey;
        for alg in SERVER_KEYS {
            let (key_alg, hash) = match alg {
                Algorithm::Rsa { hash } => (Algorithm::Rsa { hash: None }, *hash),
                // No token in process: tests/gateway/fido.rs signs with both through a software
                // token and stock ssh, end to end.
                Algorithm::SkEd25519 | Algorithm::SkEcdsaSha2NistP256 => continue,
                a => (a.clone(), None),
            };
            let key = match key_alg {
                Algorithm::Rsa { .. } => {
                    PrivateKey::from(RsaKeypair::random(&mut rand::rng(), 2048).unwrap())
                }
                a => PrivateKey::random(&mut rand::rng(), a).unwrap(),
            };
            let sig: Signature = match key.key_data() {
                KeypairData::Rsa(kp) => Signer::try_sign(&(kp, hash), b"portcullis").unwrap(),
                kp => Signer::try_sign(kp, b"portcullis").unwrap(),
            };
            assert_eq!(&sig.algorithm(), alg, "{}", alg.as_str());
            Verifier::verify(key.public_key(), b"portcullis", &sig).unwrap();
        }
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
