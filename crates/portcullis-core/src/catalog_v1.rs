//! Changes signed before #13, whose catalogs end at `policies`: the catalog gained a trailing
//! `certificates` field then. A change is decoded as it is now first and, failing that, as it
//! was, so a store or a replica written before the upgrade (and an approver not yet upgraded)
//! still reads. The new encoding leaves the field out while it is empty, so a catalog without
//! certificates is byte for byte what older gateways read: they need upgrading only once a
//! `[[user_cas]]` or a certificate target is configured.
//!
//! Owns only the old shapes and the fallback; nothing else may decode a [`Change`] by hand.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::catalog::{Catalog, Gateway, Policy, Target, User};
use crate::codec::{self, CodecError};
use crate::model::SignedGrant;
use crate::stream::{Change, ChangeBody};
use crate::time::Timestamp;

#[derive(Deserialize)]
struct CatalogV1 {
    users: BTreeMap<String, User>,
    groups: BTreeMap<String, BTreeSet<String>>,
    gateways: BTreeMap<String, Gateway>,
    targets: BTreeMap<String, Target>,
    policies: Vec<Policy>,
}

impl From<CatalogV1> for Catalog {
    fn from(c: CatalogV1) -> Catalog {
        Catalog {
            users: c.users,
            groups: c.groups,
            gateways: c.gateways,
            targets: c.targets,
            policies: c.policies,
            certificates: Default::default(),
            key_index: Default::default(),
        }
    }
}

/// [`ChangeBody`] as it was, variant for variant (bincode stores the variant's index).
#[derive(Deserialize)]
enum ChangeBodyV1 {
    Catalog(CatalogV1),
    Grant(SignedGrant),
    KillSession {
        session: String,
    },
    Snapshot {
        epoch: u64,
        catalog: CatalogV1,
        grants: Vec<SignedGrant>,
    },
}

#[derive(Deserialize)]
struct ChangeV1 {
    rev: u64,
    at: Timestamp,
    body: ChangeBodyV1,
}

/// Decode signed change bytes, current encoding first, then the one before #13.
pub(crate) fn decode_change(body: &[u8]) -> Result<Change, CodecError> {
    let current = match codec::decode_body::<Change>(body) {
        Ok(c) => return Ok(c),
        Err(e) => e,
    };
    let Ok(old) = codec::decode_body::<ChangeV1>(body) else {
        return Err(current);
    };
    let body = match old.body {
        ChangeBodyV1::Catalog(c) => ChangeBody::Catalog(c.into()),
        ChangeBodyV1::Grant(g) => ChangeBody::Grant(g),
        ChangeBodyV1::KillSession { session } => ChangeBody::KillSession { session },
        ChangeBodyV1::Snapshot {
            epoch,
            catalog,
            grants,
        } => ChangeBody::Snapshot {
            epoch,
            catalog: catalog.into(),
            grants,
        },
    };
    Ok(Change {
        rev: old.rev,
        at: old.at,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::user_ca::UserCa;

    fn catalog() -> Catalog {
        let mut c = Catalog::default();
        c.users.insert(
            "alice".into(),
            User {
                name: "alice".into(),
                keys: vec!["ssh-ed25519 AAAA".into()],
                groups: Default::default(),
            },
        );
        c
    }

    /// What a build before #13 wrote: the same fields, no `certificates`.
    #[derive(serde::Serialize)]
    struct OldCatalog<'a> {
        users: &'a BTreeMap<String, User>,
        groups: &'a BTreeMap<String, BTreeSet<String>>,
        gateways: &'a BTreeMap<String, Gateway>,
        targets: &'a BTreeMap<String, Target>,
        policies: &'a Vec<Policy>,
    }

    #[derive(serde::Serialize)]
    enum OldBody<'a> {
        Catalog(OldCatalog<'a>),
        #[allow(dead_code)]
        Grant(SignedGrant),
        #[allow(dead_code)]
        KillSession {
            session: String,
        },
        Snapshot {
            epoch: u64,
            catalog: OldCatalog<'a>,
            grants: Vec<SignedGrant>,
        },
    }

    #[derive(serde::Serialize)]
    struct OldChange<'a> {
        rev: u64,
        at: Timestamp,
        body: OldBody<'a>,
    }

    fn old(c: &Catalog) -> OldCatalog<'_> {
        OldCatalog {
            users: &c.users,
            groups: &c.groups,
            gateways: &c.gateways,
            targets: &c.targets,
            policies: &c.policies,
        }
    }

    #[test]
    fn changes_written_before_certificates_still_decode() {
        let c = catalog();
        for body in [
            OldBody::Catalog(old(&c)),
            OldBody::Snapshot {
                epoch: 9,
                catalog: old(&c),
                grants: vec![],
            },
        ] {
            let bytes = codec::body_bytes(&OldChange {
                rev: 3,
                at: Timestamp(5),
                body,
            });
            let change = decode_change(&bytes).unwrap();
            assert_eq!(change.rev, 3);
            match change.body {
                ChangeBody::Catalog(got) | ChangeBody::Snapshot { catalog: got, .. } => {
                    assert_eq!(got, c)
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_catalog_without_certificates_encodes_as_before_and_one_with_them_round_trips() {
        let c = catalog();
        let now = codec::body_bytes(&ChangeBody::Catalog(c.clone()));
        let before = codec::body_bytes(&OldBody::Catalog(old(&c)));
        assert_eq!(now, before, "older gateways read it unchanged");
        let mut with = c;
        with.certificates.user_cas.push(UserCa {
            name: "corp".into(),
            key: "ssh-ed25519 AAAA".into(),
            fingerprint: "SHA256:x".into(),
            revoked_serials: [1].into(),
            revoked_key_ids: Default::default(),
            revoked_keys: Default::default(),
            max_validity: None,
        });
        with.certificates.targets.insert("web-1".into());
        for body in [
            ChangeBody::Catalog(with.clone()),
            ChangeBody::Snapshot {
                epoch: 1,
                catalog: with.clone(),
                grants: vec![],
            },
        ] {
            let change = Change {
                rev: 1,
                at: Timestamp(2),
                body,
            };
            assert_eq!(decode_change(&codec::body_bytes(&change)).unwrap(), change);
        }
        assert!(decode_change(b"\x01\x02").is_err());
    }
}
