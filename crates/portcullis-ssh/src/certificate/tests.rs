//! `certificate::check` and the clocks, one refusal reason at a time.

use super::*;
use portcullis_core::catalog::User;
use russh::keys::ssh_key::certificate::Builder;
use russh::keys::PrivateKey;

const NOW: u64 = 1_800_000_000;

struct Setup {
    ca: PrivateKey,
    user: PrivateKey,
    catalog: Catalog,
}

fn setup() -> Setup {
    let ca = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
    let user = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
    let mut catalog = Catalog::default();
    for name in ["alice", "bob"] {
        catalog.users.insert(
            name.into(),
            User {
                name: name.into(),
                keys: vec![],
                groups: Default::default(),
            },
        );
    }
    catalog.certificates.user_cas.push(UserCa {
        name: "corp".into(),
        key: keys::normalize(ca.public_key()),
        fingerprint: keys::fingerprint(ca.public_key()),
        revoked_serials: [17].into(),
        revoked_key_ids: ["lost".to_string()].into(),
        revoked_keys: Default::default(),
        max_validity: Some(std::time::Duration::from_secs(86400)),
    });
    Setup { ca, user, catalog }
}

/// A certificate for `s.user`, signed by `signer`, shaped by `f`.
fn cert(
    s: &Setup,
    signer: &PrivateKey,
    after: u64,
    before: u64,
    f: impl FnOnce(&mut Builder),
) -> Certificate {
    let mut b = Builder::new(
        vec![7u8; 32],
        s.user.public_key().key_data().clone(),
        after,
        before,
    )
    .unwrap();
    b.key_id("alice@laptop").unwrap();
    b.cert_type(CertType::User).unwrap();
    b.extension("permit-pty", "").unwrap();
    f(&mut b);
    b.sign(signer).unwrap()
}

fn alice(b: &mut Builder) {
    b.valid_principal("alice").unwrap();
    b.serial(42).unwrap();
}

fn label(r: Result<Binding, Reason>) -> &'static str {
    r.unwrap_err().label()
}

#[test]
fn a_good_certificate_logs_in_its_principal_and_no_one_else() {
    let s = setup();
    let c = cert(&s, &s.ca, NOW - 60, NOW + 3600, |b| {
        alice(b);
        b.critical_option("source-address", "127.0.0.0/8,10.0.0.0/8")
            .unwrap();
    });
    let here = ip("127.0.0.1");
    let b = check(&c, "alice", here, &s.catalog, NOW).unwrap();
    assert_eq!(
        (b.ca.as_str(), b.serial, b.key_id.as_str()),
        ("corp", 42, "alice@laptop")
    );
    assert!(b.permit_pty && !b.permit_port_forwarding);
    assert_eq!(b.key_fingerprint, keys::fingerprint(s.user.public_key()));
    assert!(b.still_valid(&s.catalog, "alice"));
    assert_eq!(
        label(check(&c, "bob", here, &s.catalog, NOW)),
        "principal_mismatch"
    );
    assert_eq!(
        label(check(&c, "alice", ip("192.0.2.1"), &s.catalog, NOW)),
        "source_address_mismatch"
    );
}

#[test]
fn every_refusal_has_its_reason() {
    let s = setup();
    let here = ip("127.0.0.1");
    let other_ca = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
    let cases: Vec<(&str, Certificate)> = vec![
        (
            "untrusted_ca",
            cert(&s, &other_ca, NOW - 60, NOW + 60, alice),
        ),
        (
            "expired_certificate",
            cert(&s, &s.ca, NOW - 120, NOW - 60, alice),
        ),
        (
            "certificate_not_yet_valid",
            cert(&s, &s.ca, NOW + 60, NOW + 120, alice),
        ),
        (
            "certificate_too_long",
            cert(&s, &s.ca, NOW - 60, NOW + 2 * 86400, alice),
        ),
        (
            "certificate_too_long",
            cert(&s, &s.ca, NOW - 60, u64::MAX, alice),
        ),
        (
            "no_principals",
            cert(&s, &s.ca, NOW - 60, NOW + 60, |b| {
                b.all_principals_valid().unwrap();
            }),
        ),
        (
            "principal_mismatch",
            cert(&s, &s.ca, NOW - 60, NOW + 60, |b| {
                b.valid_principal("root").unwrap();
            }),
        ),
        (
            "unknown_critical_option",
            cert(&s, &s.ca, NOW - 60, NOW + 60, |b| {
                alice(b);
                b.critical_option("force-command", "/bin/true").unwrap();
            }),
        ),
        (
            "source_address_mismatch",
            cert(&s, &s.ca, NOW - 60, NOW + 60, |b| {
                alice(b);
                b.critical_option("source-address", "not an address")
                    .unwrap();
            }),
        ),
        (
            "revoked",
            cert(&s, &s.ca, NOW - 60, NOW + 60, |b| {
                b.valid_principal("alice").unwrap();
                b.serial(17).unwrap();
            }),
        ),
    ];
    for (want, c) in &cases {
        assert_eq!(
            label(check(c, "alice", here, &s.catalog, NOW)),
            *want,
            "{want}"
        );
    }
    let mut host = Builder::new(
        vec![1u8; 32],
        s.user.public_key().key_data().clone(),
        NOW - 60,
        NOW + 60,
    )
    .unwrap();
    host.cert_type(CertType::Host).unwrap();
    host.valid_principal("alice").unwrap();
    let host = host.sign(&s.ca).unwrap();
    assert_eq!(
        label(check(&host, "alice", here, &s.catalog, NOW)),
        "host_certificate"
    );
    let nobody = cert(&s, &s.ca, NOW - 60, NOW + 60, |b| {
        b.valid_principal("zed").unwrap();
    });
    assert_eq!(
        label(check(&nobody, "zed", here, &s.catalog, NOW)),
        "unknown_user"
    );
}

#[test]
fn the_window_holds_by_both_clocks() {
    let s = setup();
    let here = ip("127.0.0.1");
    // The daemon's clock floor ahead of the wall clock (the approver's heartbeats), or
    // behind it: a certificate counts as valid only where both clocks agree.
    let ahead = Clocks {
        daemon: NOW + 600,
        wall: NOW,
    };
    let behind = Clocks {
        daemon: NOW,
        wall: NOW + 600,
    };
    let starts_between = cert(&s, &s.ca, NOW + 60, NOW + 3600, alice);
    let ends_between = cert(&s, &s.ca, NOW - 60, NOW + 60, alice);
    for clocks in [ahead, behind] {
        let r = check_with(&starts_between, "alice", here, &s.catalog, clocks);
        assert_eq!(label(r), "certificate_not_yet_valid", "{clocks:?}");
        let r = check_with(&ends_between, "alice", here, &s.catalog, clocks);
        assert_eq!(label(r), "expired_certificate", "{clocks:?}");
    }
    let both = cert(&s, &s.ca, NOW - 60, NOW + 3600, alice);
    assert!(check_with(&both, "alice", here, &s.catalog, ahead).is_ok());
    assert!(check_with(&both, "alice", here, &s.catalog, behind).is_ok());
}

#[test]
fn revocations_refuse_and_end_a_binding() {
    let s = setup();
    let here = ip("127.0.0.1");
    let c = cert(&s, &s.ca, NOW - 60, NOW + 60, alice);
    let binding = check(&c, "alice", here, &s.catalog, NOW).unwrap();
    let revoke = |f: &dyn Fn(&mut UserCa)| {
        let mut cat = s.catalog.clone();
        f(&mut cat.certificates.user_cas[0]);
        cat
    };
    let by_id = revoke(&|ca| {
        ca.revoked_key_ids.insert("alice@laptop".into());
    });
    let by_serial = revoke(&|ca| {
        ca.revoked_serials.insert(42);
    });
    let by_key = revoke(&|ca| {
        ca.revoked_keys
            .insert(keys::fingerprint(s.user.public_key()));
    });
    let by_ca = revoke(&|ca| {
        let fp = ca.fingerprint.clone();
        ca.revoked_keys.insert(fp);
    });
    for cat in [&by_id, &by_serial, &by_key, &by_ca] {
        assert_eq!(label(check(&c, "alice", here, cat, NOW)), "revoked");
        assert!(!binding.still_valid(cat, "alice"));
    }
    let mut gone = s.catalog.clone();
    gone.certificates.user_cas.clear();
    assert!(!binding.still_valid(&gone, "alice"));
}

/// A stolen key listed in one CA's `revoked_keys` is refused in a certificate of another
/// CA too, and a CA whose key another CA lists signs nothing that logs in; an open login
/// resting on either ends. Serials and key ids stay each CA's own.
#[test]
fn a_key_revoked_under_one_ca_is_revoked_under_every_ca() {
    let mut s = setup();
    let here = ip("127.0.0.1");
    let other = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
    s.catalog.certificates.user_cas.push(UserCa {
        name: "other".into(),
        key: keys::normalize(other.public_key()),
        fingerprint: keys::fingerprint(other.public_key()),
        revoked_serials: Default::default(),
        revoked_key_ids: Default::default(),
        revoked_keys: Default::default(),
        max_validity: None,
    });
    let c = cert(&s, &other, NOW - 60, NOW + 60, alice);
    let binding = check(&c, "alice", here, &s.catalog, NOW).unwrap();
    assert_eq!(binding.ca, "other");
    let revoke_in_corp = |fp: String| {
        let mut cat = s.catalog.clone();
        cat.certificates.user_cas[0].revoked_keys.insert(fp);
        cat
    };
    let stolen = revoke_in_corp(keys::fingerprint(s.user.public_key()));
    let other_ca = revoke_in_corp(keys::fingerprint(other.public_key()));
    for cat in [&stolen, &other_ca] {
        let refused = check(&c, "alice", here, cat, NOW).unwrap_err();
        assert_eq!(refused.label(), "revoked");
        assert!(refused.to_string().contains("(CA corp)"), "{refused}");
        assert!(!binding.still_valid(cat, "alice"));
    }
    // Serial 17 and the key id revoked under corp are corp's: other's certificate with
    // the same ones logs in.
    let mut corp_numbers = s.catalog.clone();
    corp_numbers.certificates.user_cas[0]
        .revoked_key_ids
        .insert("alice@laptop".into());
    let same_numbers = cert(&s, &other, NOW - 60, NOW + 60, |b| {
        b.valid_principal("alice").unwrap();
        b.serial(17).unwrap();
    });
    assert!(check(&same_numbers, "alice", here, &corp_numbers, NOW).is_ok());
}

#[test]
fn a_key_listed_for_another_user_is_not_theirs_by_certificate() {
    let s = setup();
    let norm = keys::normalize(s.user.public_key());
    // Each catalog changed from a fresh clone: a catalog is not changed once asked about
    // its keys (portcullis_core::key_index).
    let listed_for = |name: &str| {
        let mut cat = s.catalog.clone();
        if let Some(u) = cat.users.get_mut(name) {
            u.keys.push(norm.clone());
        }
        cat
    };
    let c = cert(&s, &s.ca, NOW - 60, NOW + 60, alice);
    assert_eq!(
        label(check(&c, "alice", ip("127.0.0.1"), &listed_for("bob"), NOW)),
        "wrong_user"
    );
    // Listed for alice herself: fine.
    assert!(check(&c, "alice", ip("127.0.0.1"), &listed_for("alice"), NOW).is_ok());
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Bytes off the wire: whatever decodes as a certificate (random bytes, or a good
/// certificate with bytes flipped) is checked without a panic, and a flipped certificate
/// never logs anyone in (its CA signature no longer verifies).
#[test]
fn damaged_certificates_never_panic_nor_log_in() {
    use rand::RngExt as _;
    let s = setup();
    let good = cert(&s, &s.ca, NOW - 60, NOW + 60, alice);
    let bytes = good.to_bytes().unwrap();
    let here = ip("127.0.0.1");
    assert!(check(&good, "alice", here, &s.catalog, NOW).is_ok());
    let mut rng = rand::rng();
    for _ in 0..20_000 {
        let mut b = bytes.clone();
        for _ in 0..rng.random_range(1..4) {
            let i = rng.random_range(0..b.len());
            b[i] ^= 1 << rng.random_range(0..8);
        }
        if rng.random_bool(0.1) {
            b.truncate(rng.random_range(0..b.len()));
        }
        if let Ok(c) = Certificate::from_bytes(&b) {
            if c.signature_key() == good.signature_key() && c.to_bytes().ok() != Some(bytes.clone())
            {
                assert!(check(&c, "alice", here, &s.catalog, NOW).is_err());
            }
        }
        let random: Vec<u8> = (0..rng.random_range(0..300))
            .map(|_| rng.random())
            .collect();
        if let Ok(c) = Certificate::from_bytes(&random) {
            let _ = check(&c, "alice", here, &s.catalog, NOW);
        }
    }
}

#[test]
fn source_addresses_match_by_cidr() {
    assert!(source_address_matches("10.0.0.0/8", ip("10.1.2.3")).unwrap());
    assert!(!source_address_matches("10.0.0.0/8", ip("11.1.2.3")).unwrap());
    assert!(source_address_matches("192.0.2.1,127.0.0.1/32", ip("127.0.0.1")).unwrap());
    assert!(source_address_matches("0.0.0.0/0", ip("203.0.113.9")).unwrap());
    assert!(source_address_matches("2001:db8::/32", ip("2001:db8::1")).unwrap());
    assert!(!source_address_matches("2001:db8::/32", ip("2001:db9::1")).unwrap());
    // An IPv4 client seen through an IPv6 socket is still the IPv4 client.
    assert!(source_address_matches("127.0.0.0/8", ip("::ffff:127.0.0.1")).unwrap());
    assert!(!source_address_matches("::/0", ip("127.0.0.1")).unwrap());
    for bad in ["10.0.0.0/33", "nonsense", "10.0.0.0/x", ""] {
        assert!(
            source_address_matches(bad, ip("10.0.0.1")).is_err(),
            "{bad}"
        );
    }
}
