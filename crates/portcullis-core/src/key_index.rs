//! The login keys a catalog lists (users' and gateways'), by fingerprint: who holds each, and
//! whether one is revoked. One key, one identity, and a key in any CA's `revoked_keys` logs in
//! as nobody: decided here for key logins, certificate logins and their re-checks alike.
//!
//! A certificate login keeps only its key's fingerprint (its binding, `user_ca::Binding`), and
//! the gateway re-checks every live session at every enforcer sweep and every channel at each
//! use; fingerprinting every listed key there would cost a hash per listed key per check. So the
//! fingerprints are taken once per catalog, on first use, and kept beside it ([`KeyIndex`]).
//! A catalog is built whole (config validation, decoding) and never changed once in use; a clone
//! starts without an index, so a changed clone (tests do that) builds its own.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::catalog::{Catalog, Principal};
use crate::keys;

/// The fingerprints of a catalog's listed keys, built on first use. Not part of the catalog's
/// value: it is never encoded, compares equal to any other, and a clone starts empty.
#[derive(Default)]
pub struct KeyIndex(OnceLock<Index>);

struct Index {
    /// Fingerprint → every identity listing that key (config validation allows one).
    holders: HashMap<String, Vec<Principal>>,
    /// Normalised key → its fingerprint.
    fingerprints: HashMap<String, String>,
}

impl Clone for KeyIndex {
    fn clone(&self) -> Self {
        KeyIndex::default()
    }
}

impl PartialEq for KeyIndex {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for KeyIndex {}

impl std::fmt::Debug for KeyIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyIndex")
    }
}

impl Index {
    fn build(catalog: &Catalog) -> Index {
        let mut index = Index {
            holders: HashMap::new(),
            fingerprints: HashMap::new(),
        };
        let users = catalog
            .users
            .values()
            .flat_map(|u| u.keys.iter().map(|k| (k, Principal::User(u.name.clone()))));
        let gateways = catalog
            .gateways
            .values()
            .map(|g| (&g.key, Principal::Gateway(g.name.clone())));
        for (key, who) in users.chain(gateways) {
            // A listed key that does not parse has no fingerprint, so it is in neither map and
            // logs no one in (validation never lets one through).
            let Ok(parsed) = russh::keys::PublicKey::from_openssh(key) else {
                continue;
            };
            let fp = keys::fingerprint(&parsed);
            index.fingerprints.insert(key.clone(), fp.clone());
            // The same identity listing a key twice is harmless; two identities are not.
            let holders = index.holders.entry(fp).or_default();
            if !holders.contains(&who) {
                holders.push(who);
            }
        }
        index
    }
}

impl Catalog {
    fn key_index(&self) -> &Index {
        self.key_index.0.get_or_init(|| Index::build(self))
    }

    /// Every identity that lists the key with this `SHA256:…` fingerprint.
    pub fn key_holders(&self, fingerprint: &str) -> &[Principal] {
        self.key_index()
            .holders
            .get(fingerprint)
            .map_or(&[], Vec::as_slice)
    }

    /// The fingerprint of a key this catalog lists (normalised form), if it lists it.
    pub fn listed_fingerprint(&self, normalized_key: &str) -> Option<&str> {
        self.key_index()
            .fingerprints
            .get(normalized_key)
            .map(String::as_str)
    }

    /// Whether the key with this fingerprint is listed for anyone but `user` (another user, a
    /// gateway): then it is not `user`'s, whatever a CA certified.
    pub fn key_held_by_another(&self, user: &str, fingerprint: &str) -> bool {
        self.key_holders(fingerprint)
            .iter()
            .any(|h| !matches!(h, Principal::User(u) if u == user))
    }

    /// Why the key with this fingerprint is refused whoever offers it: the user CA whose
    /// `revoked_keys` lists it.
    pub fn key_revoked(&self, fingerprint: &str) -> Option<String> {
        self.certificates
            .revoking(fingerprint)
            .map(|ca| format!("key {fingerprint} is revoked (CA {})", ca.name))
    }

    /// Whether `principal` may log in with the listed key `normalized_key`: listed for them,
    /// for nobody else, and revoked by no CA.
    pub fn holds_key(&self, principal: &Principal, normalized_key: &str) -> bool {
        self.listed_fingerprint(normalized_key)
            .is_some_and(|fp| self.holds_fingerprint(principal, fp))
    }

    /// [`Catalog::holds_key`] for a key known by its fingerprint (what the approver is told of
    /// a gateway's user, and keeps of a connection).
    pub fn holds_fingerprint(&self, principal: &Principal, fingerprint: &str) -> bool {
        self.held_only_by(fingerprint, |h| h == principal)
    }

    /// [`Catalog::holds_key`] for user `user` (without building a [`Principal`]: the gateway
    /// asks for every live session at every sweep).
    pub fn user_holds_key(&self, user: &str, normalized_key: &str) -> bool {
        self.listed_fingerprint(normalized_key).is_some_and(|fp| {
            self.held_only_by(fp, |h| matches!(h, Principal::User(u) if u == user))
        })
    }

    fn held_only_by(&self, fingerprint: &str, is: impl Fn(&Principal) -> bool) -> bool {
        let holders = self.key_holders(fingerprint);
        !holders.is_empty()
            && holders.iter().all(is)
            && self.certificates.revoking(fingerprint).is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Gateway, User};
    use crate::user_ca::UserCa;

    fn key(seed: u8) -> russh::keys::PublicKey {
        use russh::keys::ssh_key::public::{Ed25519PublicKey, KeyData};
        let pk = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]).verifying_key();
        russh::keys::PublicKey::new(KeyData::Ed25519(Ed25519PublicKey(pk.to_bytes())), "")
    }

    fn catalog() -> Catalog {
        let mut c = Catalog::default();
        for (name, seed) in [("alice", 1), ("bob", 2)] {
            c.users.insert(
                name.into(),
                User {
                    name: name.into(),
                    keys: vec![keys::normalize(&key(seed))],
                    groups: Default::default(),
                },
            );
        }
        c.gateways.insert(
            "gw-1".into(),
            Gateway {
                name: "gw-1".into(),
                key: keys::normalize(&key(3)),
            },
        );
        c
    }

    fn alice() -> Principal {
        Principal::User("alice".into())
    }

    #[test]
    fn listed_keys_are_found_by_fingerprint_and_belong_to_one_identity() {
        let mut c = catalog();
        // Listed twice by the same user: still one identity.
        if let Some(u) = c.users.get_mut("alice") {
            u.keys.push(keys::normalize(&key(1)));
        }
        let (a, b, g) = (key(1), key(2), key(3));
        let fp = |k: &russh::keys::PublicKey| keys::fingerprint(k);
        assert_eq!(c.key_holders(&fp(&a)), [alice()]);
        assert_eq!(c.listed_fingerprint(&keys::normalize(&a)), Some(&*fp(&a)));
        assert_eq!(c.listed_fingerprint(&keys::normalize(&key(9))), None);
        assert!(!c.key_held_by_another("alice", &fp(&a)));
        assert!(c.key_held_by_another("alice", &fp(&b)));
        assert!(c.key_held_by_another("alice", &fp(&g)), "a gateway's key");
        assert!(!c.key_held_by_another("alice", &fp(&key(9))), "nobody's");
        assert!(c.holds_key(&alice(), &keys::normalize(&a)));
        assert!(c.user_holds_key("alice", &keys::normalize(&a)));
        assert!(!c.holds_key(&alice(), &keys::normalize(&b)));
        assert!(!c.user_holds_key("alice", &keys::normalize(&b)));
        assert!(c.holds_fingerprint(&Principal::Gateway("gw-1".into()), &fp(&g)));
        assert!(c.authenticate("alice", &keys::normalize(&a)).is_some());
        assert!(c.authenticate("gw-1", &keys::normalize(&g)).is_some());
    }

    #[test]
    fn a_key_revoked_by_any_ca_is_held_by_nobody() {
        let mut c = catalog();
        let (a, g) = (key(1), key(3));
        c.certificates.user_cas.push(UserCa {
            name: "other".into(),
            key: keys::normalize(&key(7)),
            fingerprint: keys::fingerprint(&key(7)),
            revoked_serials: Default::default(),
            revoked_key_ids: Default::default(),
            revoked_keys: [keys::fingerprint(&a), keys::fingerprint(&g)].into(),
            max_validity: None,
        });
        assert!(c
            .key_revoked(&keys::fingerprint(&a))
            .is_some_and(|why| why.contains("CA other")));
        assert!(!c.holds_key(&alice(), &keys::normalize(&a)));
        assert!(!c.user_holds_key("alice", &keys::normalize(&a)));
        assert!(!c.holds_fingerprint(&alice(), &keys::fingerprint(&a)));
        assert_eq!(c.authenticate("alice", &keys::normalize(&a)), None);
        assert_eq!(c.authenticate("gw-1", &keys::normalize(&g)), None);
        assert!(c.authenticate("bob", &keys::normalize(&key(2))).is_some());
    }

    #[test]
    fn a_clone_builds_its_own_index_and_the_index_is_not_the_value() {
        let c = catalog();
        let a = keys::normalize(&key(1));
        assert!(c.holds_key(&alice(), &a));
        let mut moved = c.clone();
        if let Some(u) = moved.users.get_mut("alice") {
            u.keys.clear();
        }
        if let Some(u) = moved.users.get_mut("bob") {
            u.keys.push(a.clone());
        }
        assert!(!moved.holds_key(&alice(), &a));
        assert!(moved.holds_key(&Principal::User("bob".into()), &a));
        let fresh = catalog();
        assert_eq!(c, fresh, "an index built or not leaves the catalogs equal");
    }
}
