//! OpenSSH user certificates at login (#13 item 2): whether a certificate whose signature
//! russh has verified (it proved the client holds the certified key) logs `user` in, under the
//! `[[user_cas]]` of the catalog, as sshd decides with `TrustedUserCAKeys`. Owns every reason a
//! certificate is refused and the [`Binding`] an accepted one leaves; the servers call
//! [`check_with`] from `auth_openssh_certificate` and nowhere else (an offer is never a
//! login).
//!
//! Published russh turns away, before any handler sees them, certificates outside their
//! validity window and those whose CA signature does not verify, so those refusals reached
//! the log only as russh's own line without user or key. Our servers set russh's
//! `handler_checks_certificates` (a portcullis patch, vendor/russh/PORTCULLIS.md): both checks
//! are made here, on the daemon's clock and this host's wall clock both ([`Clocks`]), and
//! their refusals have their reasons.

use std::net::IpAddr;

use portcullis_core::catalog::Catalog;
use portcullis_core::keys;
use portcullis_core::user_ca::{Binding, UserCa};
use russh::keys::ssh_key::certificate::CertType;
use russh::keys::{Algorithm, Certificate, PublicKey};

use crate::login::Reason;

/// The critical options portcullis understands. Any other (`force-command`,
/// `verify-required`, anything newer) refuses the certificate: a restriction it cannot apply
/// must not be dropped silently.
const KNOWN_CRITICAL_OPTIONS: &[&str] = &["source-address"];

fn refuse(label: &'static str, why: impl Into<String>) -> Reason {
    Reason::Certificate(label, why.into())
}

/// The key a certificate certifies, as a public key (for fingerprints and comparisons).
pub fn certified_key(cert: &Certificate) -> PublicKey {
    PublicKey::new(cert.public_key().clone(), "")
}

/// The two clocks a certificate's window is read against, in Unix seconds: the daemon's own
/// (never behind its clock floor, which the approver's heartbeats may move ahead of this
/// host's) and this host's wall clock. A certificate must be valid by both: not yet valid if
/// either says so, expired if either says so.
#[derive(Debug, Clone, Copy)]
pub struct Clocks {
    pub daemon: u64,
    pub wall: u64,
}

impl Clocks {
    /// The daemon's clock and this host's wall clock now.
    pub fn now(daemon: u64) -> Clocks {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Clocks { daemon, wall }
    }

    fn earliest(self) -> u64 {
        self.daemon.min(self.wall)
    }

    fn latest(self) -> u64 {
        self.daemon.max(self.wall)
    }
}

/// Whether `cert` logs in `user` (the user part of the login name), connecting from `client`,
/// at `now` (Unix seconds, one clock for both of [`Clocks`]). The accepted certificate's
/// binding, or the reason for the refusal.
pub fn check(
    cert: &Certificate,
    user: &str,
    client: IpAddr,
    catalog: &Catalog,
    now: u64,
) -> Result<Binding, Reason> {
    let clocks = Clocks {
        daemon: now,
        wall: now,
    };
    check_with(cert, user, client, catalog, clocks)
}

/// [`check`] against both clocks, as the servers call it.
pub fn check_with(
    cert: &Certificate,
    user: &str,
    client: IpAddr,
    catalog: &Catalog,
    now: Clocks,
) -> Result<Binding, Reason> {
    let ca = signing_ca(cert, catalog)?;
    let key = certified_key(cert);
    let key_fp = keys::fingerprint(&key);
    if cert.cert_type() != CertType::User {
        return Err(refuse(
            "host_certificate",
            "a host certificate, not a user certificate",
        ));
    }
    keys::check_supported(&key).map_err(Reason::UnsupportedKey)?;
    check_validity(cert, ca, now)?;
    let principals = cert.valid_principals();
    if principals.is_empty() {
        return Err(refuse(
            "no_principals",
            "certificate names no principal (it would be valid for every user)",
        ));
    }
    if !principals.iter().any(|p| p == user) {
        return Err(refuse(
            "principal_mismatch",
            format!("principal mismatch: certificate is for {principals:?}, not {user:?}"),
        ));
    }
    if !catalog.users.contains_key(user) {
        return Err(Reason::UnknownUser);
    }
    for (name, value) in cert.critical_options().iter() {
        if !KNOWN_CRITICAL_OPTIONS.contains(&name.as_str()) {
            return Err(refuse(
                "unknown_critical_option",
                format!("critical option {name:?} is not supported"),
            ));
        }
        if name == "source-address" && !source_address_matches(value, client)? {
            return Err(refuse(
                "source_address_mismatch",
                format!("source-address {value:?} does not match {client}"),
            ));
        }
    }
    if let Some(why) = catalog
        .certificates
        .revoked(ca, cert.serial(), cert.key_id(), &key_fp)
    {
        return Err(refuse("revoked", format!("revoked: {why}")));
    }
    // One key, one identity: a key listed for another user (or a gateway) does not become
    // theirs because a CA put it in a certificate. (`Binding::still_valid` asks it again.)
    if catalog.key_held_by_another(user, &key_fp) {
        return Err(Reason::WrongUser);
    }
    let has = |ext: &str| cert.extensions().contains_key(ext);
    Ok(Binding {
        ca: ca.name.clone(),
        ca_fingerprint: ca.fingerprint.clone(),
        serial: cert.serial(),
        key_id: cert.key_id().to_string(),
        key_fingerprint: key_fp,
        permit_port_forwarding: has("permit-port-forwarding"),
        permit_pty: has("permit-pty"),
    })
}

/// The configured CA that signed `cert`, once its signature verifies with a SHA-2 hash.
fn signing_ca<'c>(cert: &Certificate, catalog: &'c Catalog) -> Result<&'c UserCa, Reason> {
    let ca_key = PublicKey::new(cert.signature_key().clone(), "");
    let ca_fp = keys::fingerprint(&ca_key);
    let ca: &UserCa = catalog
        .certificates
        .ca_by_key(&keys::normalize(&ca_key))
        .ok_or_else(|| {
            refuse(
                "untrusted_ca",
                format!("certificate signed by an untrusted CA ({ca_fp})"),
            )
        })?;
    if cert.verify_signature().is_err() {
        return Err(refuse(
            "untrusted_ca",
            format!("certificate's signature by CA {} does not verify", ca.name),
        ));
    }
    // CAs that still sign with SHA-1 are refused as OpenSSH 8.2+ refuses them
    // (CASignatureAlgorithms).
    if matches!(cert.signature().algorithm(), Algorithm::Rsa { hash: None }) {
        return Err(refuse(
            "untrusted_ca",
            format!("CA {} signed the certificate with ssh-rsa (SHA-1)", ca.name),
        ));
    }
    Ok(ca)
}

/// Whether `now` is inside the certificate's window, and the window no longer than its CA
/// allows.
fn check_validity(cert: &Certificate, ca: &UserCa, clocks: Clocks) -> Result<(), Reason> {
    let (after, before) = (cert.valid_after(), cert.valid_before());
    let now = clocks.earliest();
    if now < after {
        return Err(refuse(
            "certificate_not_yet_valid",
            format!("certificate not yet valid (valid after {after}, now {now})"),
        ));
    }
    let now = clocks.latest();
    if now >= before {
        return Err(refuse(
            "expired_certificate",
            format!("expired certificate (valid before {before}, now {now})"),
        ));
    }
    if let Some(max) = ca.max_validity {
        let span = before.saturating_sub(after);
        if span > max.as_secs() {
            return Err(refuse(
                "certificate_too_long",
                format!(
                    "certificate valid for {} (CA {} allows at most {})",
                    if before == u64::MAX {
                        "ever".to_string()
                    } else {
                        format!("{span}s")
                    },
                    ca.name,
                    humantime::format_duration(max)
                ),
            ));
        }
    }
    Ok(())
}

/// `source-address`: comma-separated CIDR blocks (`10.0.0.0/8,2001:db8::/32`) or addresses.
/// A malformed list refuses the certificate.
fn source_address_matches(list: &str, client: IpAddr) -> Result<bool, Reason> {
    let client = client.to_canonical();
    let mut any = false;
    for item in list.split(',') {
        let item = item.trim();
        let malformed = || {
            refuse(
                "source_address_mismatch",
                format!("source-address {list:?} is malformed at {item:?}"),
            )
        };
        let (addr, len) = match item.split_once('/') {
            Some((a, l)) => (a, Some(l.parse::<u8>().map_err(|_| malformed())?)),
            None => (item, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| malformed())?;
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let len = len.unwrap_or(bits);
        if len > bits {
            return Err(malformed());
        }
        any |= in_block(client, addr, len);
    }
    Ok(any)
}

fn in_block(client: IpAddr, net: IpAddr, len: u8) -> bool {
    let mask = |bits: u32, width: u32| -> u128 {
        if bits == 0 {
            0
        } else {
            (u128::MAX << (width - bits)) & (u128::MAX >> (128 - width))
        }
    };
    match (client, net) {
        (IpAddr::V4(c), IpAddr::V4(n)) => {
            let m = mask(len.into(), 32);
            (u128::from(u32::from(c)) & m) == (u128::from(u32::from(n)) & m)
        }
        (IpAddr::V6(c), IpAddr::V6(n)) => {
            let m = mask(len.into(), 128);
            (u128::from(c) & m) == (u128::from(n) & m)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;
