//! Certificates in the catalog (#13): the user CAs portcullis trusts (`[[user_cas]]`), the
//! `kind = "ssh"` targets the gateway logs into with a certificate of its own CA
//! (`auth = "certificate"`), and the *binding* that a certificate login leaves where a key
//! login keeps its key: a line naming the CA, serial, key id and fingerprints, by which the
//! gateway and the approver check at every use that nothing the login rested on was revoked.
//!
//! Validating a certificate itself (signature, validity, principals, options) is
//! `portcullis_ssh::certificate`; this module holds only what the catalog carries.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;

/// A CA whose user certificates log users in, as `sshd`'s `TrustedUserCAKeys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserCa {
    pub name: String,
    /// The CA's public key, normalised (no comment).
    pub key: String,
    /// `SHA256:…` of the CA's key.
    pub fingerprint: String,
    pub revoked_serials: BTreeSet<u64>,
    pub revoked_key_ids: BTreeSet<String>,
    /// `SHA256:…` fingerprints of keys refused under every CA, whatever signed them, and as
    /// plain keys: a stolen key is stolen for every CA. A CA's key listed here (its own or
    /// another CA's list) revokes everything that CA signed. See [`Certificates::revoked`].
    pub revoked_keys: BTreeSet<String>,
    /// Certificates valid for longer than this are refused; `None`: no limit.
    pub max_validity: Option<Duration>,
}

/// What the catalog carries about certificates. Kept in one trailing field of [`Catalog`]
/// that is left out of the encoding while empty, so a catalog that uses no certificate encodes
/// exactly as before #13 and gateways older than it keep reading it (see `catalog_v1`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificates {
    /// In file order: a certificate is matched against them in turn.
    pub user_cas: Vec<UserCa>,
    /// `kind = "ssh"` targets with `auth = "certificate"`.
    pub targets: BTreeSet<String>,
}

impl Certificates {
    pub fn is_empty(&self) -> bool {
        self.user_cas.is_empty() && self.targets.is_empty()
    }

    /// The CA whose normalised key is `key`.
    pub fn ca_by_key(&self, key: &str) -> Option<&UserCa> {
        self.user_cas.iter().find(|c| c.key == key)
    }

    /// The first CA whose `revoked_keys` lists `fingerprint`.
    pub fn revoking(&self, fingerprint: &str) -> Option<&UserCa> {
        self.user_cas
            .iter()
            .find(|c| c.revoked_keys.contains(fingerprint))
    }

    /// Why a certificate signed by `ca` with these particulars is revoked, if it is. Keys are
    /// revoked by any CA's `revoked_keys` (the certified key, or `ca`'s own); serials and key
    /// ids only by `ca`'s own lists, since each CA numbers and names its certificates itself.
    pub fn revoked(
        &self,
        ca: &UserCa,
        serial: u64,
        key_id: &str,
        key_fingerprint: &str,
    ) -> Option<String> {
        if let Some(by) = self.revoking(&ca.fingerprint) {
            Some(format!(
                "the key of CA {} is revoked (CA {})",
                ca.name, by.name
            ))
        } else if ca.revoked_serials.contains(&serial) {
            Some(format!("serial {serial} is revoked (CA {})", ca.name))
        } else if ca.revoked_key_ids.contains(key_id) {
            Some(format!("key id {key_id:?} is revoked (CA {})", ca.name))
        } else {
            self.revoking(key_fingerprint)
                .map(|by| format!("key {key_fingerprint} is revoked (CA {})", by.name))
        }
    }
}

const BINDING: &str = "cert";

/// What a certificate login rests on, in the place a key login keeps its key: the CA (name and
/// key fingerprint), serial, key id, the certified key's fingerprint, and the two permissions
/// portcullis honours. Its text form has no spaces and never parses as a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub ca: String,
    pub ca_fingerprint: String,
    pub serial: u64,
    pub key_id: String,
    pub key_fingerprint: String,
    pub permit_port_forwarding: bool,
    pub permit_pty: bool,
}

impl Binding {
    /// `cert,CA,SERIAL,KEY_ID_HEX,CA_FP,KEY_FP,FLAGS`: fingerprints and names hold no comma,
    /// the key id (free text) is hex.
    pub fn to_text(&self) -> String {
        let mut flags = String::new();
        if self.permit_port_forwarding {
            flags.push('f');
        }
        if self.permit_pty {
            flags.push('t');
        }
        format!(
            "{BINDING},{},{},{},{},{},{flags}",
            self.ca,
            self.serial,
            hex_encode(self.key_id.as_bytes()),
            self.ca_fingerprint,
            self.key_fingerprint
        )
    }

    pub fn parse(text: &str) -> Option<Binding> {
        let mut parts = text.split(',');
        if parts.next()? != BINDING {
            return None;
        }
        let ca = parts.next()?.to_string();
        let serial = parts.next()?.parse().ok()?;
        let key_id = String::from_utf8(hex_decode(parts.next()?)?).ok()?;
        let ca_fingerprint = parts.next()?.to_string();
        let key_fingerprint = parts.next()?.to_string();
        let flags = parts.next()?;
        if parts.next().is_some() {
            return None;
        }
        Some(Binding {
            ca,
            ca_fingerprint,
            serial,
            key_id,
            key_fingerprint,
            permit_port_forwarding: flags.contains('f'),
            permit_pty: flags.contains('t'),
        })
    }

    /// Whether `user` may still rest on this certificate under `catalog`: what
    /// `portcullis_ssh::certificate::check` decided from the catalog at login, asked again of
    /// the catalog in force. The user is configured, the CA is still trusted with the same key,
    /// nothing it names is revoked (under any CA, for keys), and the certified key is listed for
    /// no one else (one key, one identity: a reload that gives it to another user or a gateway
    /// ends what this login may do). Whether the certificate is still within its validity is
    /// not asked again: like sshd, a login stands once made; the grant decides how long a
    /// session lasts. (Nor is the CA's `max_validity`: the binding does not carry the window.)
    pub fn still_valid(&self, catalog: &Catalog, user: &str) -> bool {
        let certificates = &catalog.certificates;
        catalog.users.contains_key(user)
            && !catalog.key_held_by_another(user, &self.key_fingerprint)
            && certificates
                .user_cas
                .iter()
                .find(|c| c.name == self.ca && c.fingerprint == self.ca_fingerprint)
                .is_some_and(|c| {
                    certificates
                        .revoked(c, self.serial, &self.key_id, &self.key_fingerprint)
                        .is_none()
                })
    }
}

/// Whether the login whose key (or binding) is `key` may forward ports: any key login, and a
/// certificate login whose certificate has `permit-port-forwarding`.
pub fn permits_port_forwarding(key: &str) -> bool {
    Binding::parse(key).is_none_or(|b| b.permit_port_forwarding)
}

/// Whether the login whose key (or binding) is `key` may have a pty: any key login, and a
/// certificate login whose certificate has `permit-pty`.
pub fn permits_pty(key: &str) -> bool {
    Binding::parse(key).is_none_or(|b| b.permit_pty)
}

/// The session-start report's `fingerprint` for a certificate login: `SHA256:… BINDING`. An
/// approver older than #13 records it as it stands; a newer one splits it again
/// ([`split_reported`]) into the fingerprint and the certificate's fields.
pub fn reported_fingerprint(fingerprint: &str, key: &str) -> String {
    match Binding::parse(key) {
        Some(b) => format!("{fingerprint} {}", b.to_text()),
        None => fingerprint.to_string(),
    }
}

/// The fingerprint of a session-start report, and the certificate it names if any.
pub fn split_reported(fingerprint: &str) -> (&str, Option<Binding>) {
    match fingerprint.split_once(' ') {
        Some((fp, rest)) => match Binding::parse(rest) {
            Some(b) => (fp, Some(b)),
            None => (fingerprint, None),
        },
        None => (fingerprint, None),
    }
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding() -> Binding {
        Binding {
            ca: "corp".into(),
            ca_fingerprint: "SHA256:ca".into(),
            serial: 42,
            key_id: "alice, laptop €".into(),
            key_fingerprint: "SHA256:k/+e".into(),
            permit_port_forwarding: true,
            permit_pty: false,
        }
    }

    #[test]
    fn a_binding_round_trips_and_never_parses_as_a_key() {
        let b = binding();
        let text = b.to_text();
        assert!(!text.contains(' '), "{text}");
        assert_eq!(Binding::parse(&text), Some(b.clone()));
        assert!(crate::keys::parse_public_key(&text).is_err());
        let reported = reported_fingerprint("SHA256:k/+e", &text);
        assert_eq!(split_reported(&reported), ("SHA256:k/+e", Some(b)));
        assert_eq!(split_reported("SHA256:x"), ("SHA256:x", None));
        assert_eq!(
            reported_fingerprint("SHA256:x", "ssh-ed25519 AAAA"),
            "SHA256:x"
        );
        for bad in [
            "cert",
            "cert,a,x,,,,",
            "cert,a,1,zz,b,c,",
            "cert,a,1,,b,c,,extra",
        ] {
            assert_eq!(Binding::parse(bad), None, "{bad}");
        }
    }

    fn ca(name: &str, fingerprint: &str) -> UserCa {
        UserCa {
            name: name.into(),
            key: format!("ssh-ed25519 {name}"),
            fingerprint: fingerprint.into(),
            revoked_serials: Default::default(),
            revoked_key_ids: Default::default(),
            revoked_keys: Default::default(),
            max_validity: None,
        }
    }

    #[test]
    fn revocation_by_serial_key_id_key_and_the_cas_own_key() {
        let mut corp = ca("corp", "SHA256:ca");
        corp.revoked_serials.insert(17);
        corp.revoked_key_ids.insert("lost-laptop".into());
        corp.revoked_keys.insert("SHA256:stolen".into());
        let mut cas = Certificates {
            user_cas: vec![corp],
            targets: Default::default(),
        };
        let corp = cas.user_cas[0].clone();
        assert!(cas.revoked(&corp, 1, "ok", "SHA256:fine").is_none());
        assert!(cas
            .revoked(&corp, 17, "ok", "SHA256:fine")
            .unwrap()
            .contains("serial 17"));
        assert!(cas
            .revoked(&corp, 1, "lost-laptop", "SHA256:fine")
            .is_some());
        assert!(cas.revoked(&corp, 1, "ok", "SHA256:stolen").is_some());
        cas.user_cas[0].revoked_keys.insert("SHA256:ca".into());
        assert!(cas
            .revoked(&corp, 1, "ok", "SHA256:fine")
            .unwrap()
            .contains("CA corp"));
    }

    /// A key is compromised whatever signed it: any CA's `revoked_keys` refuses it under every
    /// CA, a CA's key included. Serials and key ids are each CA's own.
    #[test]
    fn revoked_keys_hold_under_every_ca_and_serials_and_key_ids_only_under_their_own() {
        let mut a = ca("a", "SHA256:a");
        a.revoked_keys
            .extend(["SHA256:stolen".to_string(), "SHA256:b".to_string()]);
        a.revoked_serials.insert(17);
        a.revoked_key_ids.insert("lost".into());
        let (b, c) = (ca("b", "SHA256:b"), ca("c", "SHA256:c"));
        let cas = Certificates {
            user_cas: vec![a, b.clone(), c.clone()],
            targets: Default::default(),
        };
        assert_eq!(
            cas.revoked(&c, 1, "ok", "SHA256:stolen").as_deref(),
            Some("key SHA256:stolen is revoked (CA a)")
        );
        assert_eq!(
            cas.revoked(&b, 1, "ok", "SHA256:fine").as_deref(),
            Some("the key of CA b is revoked (CA a)")
        );
        assert_eq!(cas.revoked(&c, 17, "lost", "SHA256:fine"), None);
        assert_eq!(
            cas.revoking("SHA256:stolen").map(|x| x.name.as_str()),
            Some("a")
        );
        assert!(cas.revoking("SHA256:fine").is_none());
    }

    /// What a certificate login rests on is re-checked against the catalog in force, as at
    /// login: the user, the CA, revocations under any CA, and one key, one identity (a reload
    /// that lists the certified key for someone else ends what the login may do).
    #[test]
    fn a_binding_holds_only_while_the_login_would_still_be_accepted() {
        use crate::catalog::{Gateway, User};
        use crate::keys;
        use russh::keys::ssh_key::public::{Ed25519PublicKey, KeyData};
        let key = |seed: u8| {
            let pk = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]).verifying_key();
            russh::keys::PublicKey::new(KeyData::Ed25519(Ed25519PublicKey(pk.to_bytes())), "")
        };
        let certified = key(1);
        let mut base = Catalog::default();
        for name in ["alice", "bob"] {
            base.users.insert(
                name.into(),
                User {
                    name: name.into(),
                    keys: vec![],
                    groups: Default::default(),
                },
            );
        }
        base.certificates.user_cas = vec![ca("corp", "SHA256:ca"), ca("other", "SHA256:o")];
        let b = Binding {
            key_fingerprint: keys::fingerprint(&certified),
            ca_fingerprint: "SHA256:ca".into(),
            ..binding()
        };
        let user = "alice";
        assert!(b.still_valid(&base, user));
        let changed = |f: &dyn Fn(&mut Catalog)| {
            let mut c = base.clone();
            f(&mut c);
            c
        };
        let norm = keys::normalize(&certified);
        let listed_for = |name: &'static str| {
            let norm = norm.clone();
            move |c: &mut Catalog| {
                if let Some(u) = c.users.get_mut(name) {
                    u.keys.push(norm.clone());
                }
            }
        };
        assert!(b.still_valid(&changed(&listed_for("alice")), user));
        let refused: Vec<(&str, Catalog)> = vec![
            ("listed for bob", changed(&listed_for("bob"))),
            (
                "a gateway's key",
                changed(&|c| {
                    c.gateways.insert(
                        "gw".into(),
                        Gateway {
                            name: "gw".into(),
                            key: norm.clone(),
                        },
                    );
                }),
            ),
            (
                "user gone",
                changed(&|c| {
                    c.users.remove("alice");
                }),
            ),
            (
                "CA gone",
                changed(&|c| {
                    c.certificates.user_cas.remove(0);
                }),
            ),
            (
                "revoked under another CA",
                changed(&|c| {
                    c.certificates.user_cas[1]
                        .revoked_keys
                        .insert(keys::fingerprint(&certified));
                }),
            ),
        ];
        for (why, catalog) in &refused {
            assert!(!b.still_valid(catalog, user), "{why}");
        }
    }

    proptest::proptest! {
        #[test]
        fn binding_parser_never_panics(s in "\\PC{0,80}") {
            let _ = Binding::parse(&s);
            let _ = Binding::parse(&format!("cert,{s}"));
            let _ = split_reported(&s);
        }
    }
}
