//! Refused logins as an operator reads them: why a login was refused (the reasons both servers
//! share, their wording and their metric labels) and the one log line a connection that never
//! logged in leaves behind. The client is told only "Permission denied"; everything it could
//! use to probe (which users exist, which keys or CAs are known) stays here.
//!
//! A client tries its keys one after another, so a connection collects several refusals; the
//! line names the most telling one: a certificate's over a key's after its signature (ssh
//! tries `id-cert.pub` and then the plain `id`), that over a mere offer's, and the latest
//! among equals.

use std::fmt;

use portcullis_core::keys;
use russh::keys::{Algorithm, PublicKey};

/// Why a login was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The gateway has no catalog yet (it has not heard from the approver).
    NoCatalog,
    UnknownUser,
    UnknownKey,
    /// A key that another user (or a gateway) holds.
    WrongUser,
    /// A key listed in a user CA's `revoked_keys`, offered as a plain key: refused whoever
    /// lists it (a certificate for it is refused as `Certificate("revoked", …)`).
    RevokedKey,
    /// A kind of key portcullis cannot verify, or a SHA-1 (`ssh-rsa`) signature.
    UnsupportedKey(String),
    /// A certificate refused: the label and the reason (see `crate::certificate`).
    Certificate(&'static str, String),
    /// The login proved who it is, but its connection has no room (per-user cap, reserve).
    Admission(&'static str, String),
    /// A FIDO (`sk-*`) signature made without the user touching the authenticator.
    NoUserPresence,
}

impl Reason {
    /// The label of the `logins_refused_total` metric (a fixed set: never input).
    pub fn label(&self) -> &'static str {
        match self {
            Reason::NoCatalog => "no_catalog",
            Reason::UnknownUser => "unknown_user",
            Reason::UnknownKey => "unknown_key",
            Reason::WrongUser => "wrong_user",
            Reason::RevokedKey => "revoked",
            Reason::UnsupportedKey(_) => "unsupported_key",
            Reason::NoUserPresence => "no_user_presence",
            Reason::Certificate(label, _) | Reason::Admission(label, _) => label,
        }
    }

    /// The reasons `identify` functions give as metric labels, back as a reason.
    pub fn from_label(label: &'static str) -> Reason {
        match label {
            "no_catalog" => Reason::NoCatalog,
            "unknown_user" => Reason::UnknownUser,
            "wrong_user" => Reason::WrongUser,
            "revoked" => Reason::RevokedKey,
            _ => Reason::UnknownKey,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NoCatalog => f.write_str("no catalog from the approver yet"),
            Reason::UnknownUser => f.write_str("unknown user"),
            Reason::UnknownKey => f.write_str("unknown key"),
            Reason::WrongUser => f.write_str("key of another user"),
            Reason::RevokedKey => f.write_str("revoked key (in a [[user_cas]] revoked_keys)"),
            Reason::UnsupportedKey(why) => write!(f, "unsupported key kind: {why}"),
            Reason::NoUserPresence => f.write_str(
                "security key signed without user presence (no touch; keys made with \
                 `-O no-touch-required` are refused, as sshd refuses them by default)",
            ),
            Reason::Certificate(_, why) | Reason::Admission(_, why) => f.write_str(why),
        }
    }
}

/// One refused attempt: who it claimed to be, with which key, and why.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The login name as sent (`alice`, `alice:web-1`).
    pub user: String,
    /// `SHA256:…` of the key (for a certificate, of the key it certifies), and its kind.
    pub fingerprint: String,
    pub reason: Reason,
    /// How telling the refusal is (see the module comment).
    pub rank: Rank,
}

/// At which step an attempt was refused, the later the more telling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rank {
    /// A key offered, before any signature.
    Offer,
    /// A key whose signature verified.
    Signed,
    /// A certificate whose signature verified.
    Certificate,
}

impl Refusal {
    /// A key refused at its offer (`signed` false) or after its signature.
    pub fn new(user: &str, key: &PublicKey, reason: Reason, signed: bool) -> Refusal {
        let rank = if signed { Rank::Signed } else { Rank::Offer };
        Refusal::at(user, key, reason, rank)
    }

    /// A certificate refused; `key` is the key it certifies.
    pub fn certificate(user: &str, key: &PublicKey, reason: Reason) -> Refusal {
        Refusal::at(user, key, reason, Rank::Certificate)
    }

    fn at(user: &str, key: &PublicKey, reason: Reason, rank: Rank) -> Refusal {
        let cert = if rank == Rank::Certificate {
            "certificate for "
        } else {
            ""
        };
        Refusal {
            user: user.to_string(),
            fingerprint: format!("{cert}{} {}", keys::kind(key), keys::fingerprint(key)),
            reason,
            rank,
        }
    }

    /// Keep `self` in `slot` unless the refusal there is more telling (see the module comment).
    pub fn keep(self, slot: &mut Option<Refusal>) {
        if slot.as_ref().is_some_and(|old| old.rank > self.rank) {
            return;
        }
        *slot = Some(self);
    }

    /// The operator's line: `PEER: login refused for USER (KIND SHA256:…): REASON`.
    pub fn log(&self, peer: impl fmt::Display) {
        tracing::info!(
            "{peer}: login refused for {:?} ({}): {}",
            self.user,
            self.fingerprint,
            self.reason
        );
    }
}

/// The checks every offered or verified key passes before its owner is looked up: a kind of
/// key portcullis verifies (a key `portcullis check` refuses cannot log in either), signed
/// with anything but SHA-1 (`ssh-rsa`, refused as OpenSSH 8.8+ does).
pub fn check_key(key: &PublicKey, algorithm: &Algorithm) -> Result<(), Reason> {
    keys::check_supported(key).map_err(Reason::UnsupportedKey)?;
    if !keys::signature_algorithm_ok(algorithm) {
        return Err(Reason::UnsupportedKey(
            "ssh-rsa (SHA-1) signatures are refused; use rsa-sha2-256 or rsa-sha2-512".into(),
        ));
    }
    Ok(())
}

/// The user-presence bit of a FIDO authenticator's flags: the user touched the key.
const USER_PRESENT: u8 = 0x01;

/// Whether a verified signature by `key` shows the user's touch, when `key` is a FIDO
/// (`sk-*`) key: `flags` is the authenticator's flags byte russh hands the handler just
/// before the login is decided (`Handler::auth_security_key_flags`, a portcullis patch of
/// russh). A FIDO signature whose flags never arrived is refused too: if a russh upgrade
/// drops the patch, FIDO logins stop rather than stop being checked. Other keys pass.
pub fn check_touch(key: &PublicKey, flags: Option<u8>) -> Result<(), Reason> {
    let fido = matches!(
        key.algorithm(),
        Algorithm::SkEd25519 | Algorithm::SkEcdsaSha2NistP256
    );
    match flags {
        _ if !fido => Ok(()),
        Some(f) if f & USER_PRESENT != 0 => Ok(()),
        _ => Err(Reason::NoUserPresence),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh::keys::HashAlg;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGoHkF4rbbzfHvvGr0tPbMM1bFsHr3OxCzNd0R3dTNNb a";

    #[test]
    fn a_signed_refusal_outranks_later_offers() {
        let key = keys::parse_public_key(KEY).unwrap();
        let mut slot = None;
        Refusal::new("alice", &key, Reason::UnknownKey, false).keep(&mut slot);
        Refusal::new("alice", &key, Reason::WrongUser, true).keep(&mut slot);
        Refusal::new("alice", &key, Reason::UnknownKey, false).keep(&mut slot);
        assert_eq!(slot.as_ref().unwrap().reason, Reason::WrongUser);
        let expired = Reason::Certificate("expired_certificate", "expired".into());
        Refusal::certificate("alice", &key, expired.clone()).keep(&mut slot);
        Refusal::new("alice", &key, Reason::UnknownKey, true).keep(&mut slot);
        assert_eq!(slot.as_ref().unwrap().reason, expired);
        let kept = Refusal::new("alice", &key, Reason::WrongUser, true);
        assert!(
            kept.fingerprint.starts_with("ssh-ed25519 SHA256:"),
            "{}",
            kept.fingerprint
        );
    }

    #[test]
    fn a_fido_signature_needs_the_users_touch() {
        let plain = keys::parse_public_key(KEY).unwrap();
        let fido = keys::parse_public_key(
            "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIIqHTeOyl710m60++4POL7xdRR/gKTlHDtje+AZHBh9OAAAABHNzaDo= fido",
        )
        .unwrap();
        assert_eq!(check_touch(&plain, None), Ok(()));
        assert_eq!(check_touch(&fido, Some(0x01)), Ok(()));
        assert_eq!(check_touch(&fido, Some(0x05)), Ok(()));
        assert_eq!(check_touch(&fido, Some(0x04)), Err(Reason::NoUserPresence));
        assert_eq!(check_touch(&fido, Some(0x00)), Err(Reason::NoUserPresence));
        // No flags at all (the russh patch gone): refused, not waved through.
        assert_eq!(check_touch(&fido, None), Err(Reason::NoUserPresence));
    }

    #[test]
    fn sha1_is_refused_and_sha2_is_not() {
        let key = keys::parse_public_key(KEY).unwrap();
        assert!(check_key(&key, &Algorithm::Ed25519).is_ok());
        let e = check_key(&key, &Algorithm::Rsa { hash: None }).unwrap_err();
        assert_eq!(e.label(), "unsupported_key");
        assert!(check_key(
            &key,
            &Algorithm::Rsa {
                hash: Some(HashAlg::Sha512)
            }
        )
        .is_ok());
    }
}
