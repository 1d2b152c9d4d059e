//! OpenSSH user certificates as they arrive on the wire (the blob of a publickey request) and
//! as text (a `-cert.pub` line), and the configured keys and bindings beside them: parsing
//! and `portcullis_ssh::certificate::check` against a catalog that trusts a CA never panic,
//! whatever the bytes. A certificate the check accepts names the user asked for among its
//! principals and was signed by the trusted CA.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use portcullis_core::catalog::{Catalog, User};
use portcullis_core::keys;
use portcullis_core::user_ca::{Binding, UserCa};
use russh::keys::Certificate;

/// A catalog with user `alice` and CA `corp`, whose key is the one the seed certificates of
/// fuzz/corpus/certificate are signed with (fuzz/examples/seed_corpus.rs).
fn catalog() -> &'static Catalog {
    static C: OnceLock<Catalog> = OnceLock::new();
    C.get_or_init(|| {
        let ca = keys::parse_public_key(portcullis_fuzz::CERT_CA).expect("the seed CA parses");
        let mut c = Catalog::default();
        c.users.insert(
            "alice".into(),
            User {
                name: "alice".into(),
                keys: vec![],
                groups: Default::default(),
            },
        );
        c.certificates.user_cas.push(UserCa {
            name: "corp".into(),
            key: keys::normalize(&ca),
            fingerprint: keys::fingerprint(&ca),
            revoked_serials: [17].into(),
            revoked_key_ids: ["revoked".to_string()].into(),
            revoked_keys: Default::default(),
            max_validity: Some(std::time::Duration::from_secs(86400)),
        });
        c
    })
}

fn check(cert: &Certificate) {
    let c = catalog();
    for now in [
        cert.valid_after(),
        cert.valid_before().saturating_sub(1),
        1_800_000_000,
    ] {
        for user in ["alice", "bob", ""] {
            let client = "127.0.0.1".parse().expect("an address");
            if let Ok(b) = portcullis_ssh::certificate::check(cert, user, client, c, now) {
                assert!(cert.valid_principals().iter().any(|p| p == user));
                assert_eq!(b.ca, "corp");
                assert!(b.still_valid(c, user));
                assert_eq!(Binding::parse(&b.to_text()), Some(b));
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(cert) = Certificate::from_bytes(data) {
        check(&cert);
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cert) = Certificate::from_openssh(text) {
        check(&cert);
    }
    let _ = keys::parse_public_key(text);
    let _ = Binding::parse(text);
    let _ = portcullis_core::user_ca::split_reported(text);
});
