//! The gateway's own user CA, for `kind = "ssh"` targets with `auth = "certificate"` (#13
//! item 4): instead of logging into the target with its standing client key, the gateway makes
//! a fresh key for each recorded session and a user certificate for it, signed by this CA,
//! with principal = the target's `login`, key id = the portcullis session id, `valid_before` =
//! the grant's end and `source-address` = the address the gateway reaches the target from.
//! The target trusts the CA with one `TrustedUserCAKeys` line, its sshd log names the session,
//! and no `authorized_keys` entry grants anything forever.
//!
//! Owns the CA's key file (`DATA_DIR/target_ca`, ed25519, made on first start or by
//! `portcullis keys`, which prints its public half as the `target-ca` line) and the making of
//! the certificates; it decides nothing about who may reach a target.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use portcullis_core::catalog::Target;
use portcullis_core::time::Timestamp;
use portcullis_ssh::keyfile::{self, KeyFileError};
use portcullis_ssh::Identity;
use russh::keys::ssh_key::certificate::{Builder, CertType};
use russh::keys::{Algorithm, PrivateKey};

use crate::session::Holder;
use crate::state::GatewayState as Gateway;

/// The CA's key file, in the gateway's `data_dir`.
pub const FILE: &str = "target_ca";

/// How far back a certificate's validity starts: a target whose clock runs a little behind
/// the gateway's still accepts it.
const CLOCK_SKEW_SECS: u64 = 60;

static CA: OnceLock<Arc<PrivateKey>> = OnceLock::new();

/// Load the CA's key (made if missing) and keep it for the sessions. Called once at start, so
/// a key that cannot be read stops the gateway instead of failing every certificate login.
pub(crate) fn init(data_dir: &Path) -> Result<(), KeyFileError> {
    let key = load_or_create(data_dir)?;
    let _ = CA.set(Arc::new(key));
    Ok(())
}

/// The CA's key in `data_dir`, made where missing (also what `portcullis keys` calls).
pub fn load_or_create(data_dir: &Path) -> Result<PrivateKey, KeyFileError> {
    keyfile::load_or_create(&data_dir.join(FILE)).map(|(k, _)| k)
}

/// The `target-ca` line of `portcullis keys`: the CA's public key as an OpenSSH line, what a
/// target's `TrustedUserCAKeys` file holds.
pub fn public_line(data_dir: &Path) -> Result<String, KeyFileError> {
    let key = load_or_create(data_dir)?;
    Ok(key
        .public_key()
        .to_openssh()
        .unwrap_or_default()
        .trim()
        .to_string())
}

/// The identity of the gateway's login to `target` for session `session` of `who`: a fresh
/// certificate where the catalog says the target trusts the CA (`auth = "certificate"`),
/// `None` where it takes the gateway's client key.
pub(crate) async fn login(
    gw: &Gateway,
    who: &Holder,
    target: &Target,
    session: &str,
) -> Result<Option<Identity>, String> {
    let certified = gw
        .catalog()
        .is_some_and(|c| c.certificates.targets.contains(&target.name));
    if !certified {
        return Ok(None);
    }
    let grant = crate::session::grant_for(gw, who, &target.name).map_err(|r| r.message())?;
    let source = source_address(target).await?;
    identity(&Ask {
        target,
        session,
        now: gw.now(),
        until: grant.expires_at,
        source,
    })
    .map(Some)
}

/// What the certificate says, besides its key.
pub(crate) struct Ask<'a> {
    pub target: &'a Target,
    pub session: &'a str,
    pub now: Timestamp,
    /// The grant's end: the certificate's `valid_before`.
    pub until: Timestamp,
    pub source: IpAddr,
}

/// A fresh key and a certificate for it, as the identity of the gateway's login to a target.
pub(crate) fn identity(ask: &Ask<'_>) -> Result<Identity, String> {
    let ca = CA
        .get()
        .ok_or_else(|| "the gateway's target CA is not loaded".to_string())?;
    let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
        .map_err(|e| format!("cannot make a session key: {e}"))?;
    let cert = certificate(ca, &key, ask)?;
    Ok(Identity::Certificate(Arc::new(key), Box::new(cert)))
}

fn certificate(
    ca: &PrivateKey,
    key: &PrivateKey,
    ask: &Ask<'_>,
) -> Result<russh::keys::Certificate, String> {
    let login = ask
        .target
        .login
        .as_deref()
        .ok_or_else(|| format!("{} has no login to certify", ask.target.name))?;
    let now = ask.now.secs();
    // Rounded up: the grant's last second is inside the certificate.
    let before = ask.until.0.div_ceil(1000);
    if before <= now {
        return Err("the grant has ended".into());
    }
    let bad = |e: russh::keys::ssh_key::Error| format!("cannot make the certificate: {e}");
    let mut nonce = [0u8; 32];
    rand::fill(&mut nonce);
    let mut b = Builder::new(
        nonce.to_vec(),
        key.public_key().key_data().clone(),
        now.saturating_sub(CLOCK_SKEW_SECS),
        before,
    )
    .map_err(bad)?;
    let block = if ask.source.is_ipv4() { 32 } else { 128 };
    b.serial(rand::random()).map_err(bad)?;
    b.key_id(ask.session).map_err(bad)?;
    b.cert_type(CertType::User).map_err(bad)?;
    b.valid_principal(login).map_err(bad)?;
    b.critical_option("source-address", format!("{}/{block}", ask.source))
        .map_err(bad)?;
    // A recorded session asks for a pty; nothing else (no forwarding through the target).
    b.extension("permit-pty", "").map_err(bad)?;
    b.comment(format!("portcullis session {}", ask.session))
        .map_err(bad)?;
    b.sign(ca).map_err(bad)
}

/// The address this host would reach `target` from (the kernel's choice of route, learned
/// by connecting a UDP socket, which sends nothing): the certificate's `source-address`.
pub(crate) async fn source_address(target: &Target) -> Result<IpAddr, String> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&target.address)
        .await
        .map_err(|e| format!("cannot resolve {}: {e}", target.address))?
        .collect();
    let to = addrs
        .first()
        .ok_or_else(|| format!("{} resolves to no address", target.address))?;
    let any: SocketAddr = if to.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let probe = tokio::net::UdpSocket::bind(any)
        .await
        .map_err(|e| format!("cannot find a route to {to}: {e}"))?;
    probe
        .connect(to)
        .await
        .map_err(|e| format!("cannot find a route to {to}: {e}"))?;
    probe
        .local_addr()
        .map(|a| a.ip())
        .map_err(|e| format!("cannot find a route to {to}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::catalog::TargetKind;

    fn target() -> Target {
        Target {
            name: "web-1".into(),
            kind: TargetKind::Ssh,
            address: "127.0.0.1:22".into(),
            host: "127.0.0.1".into(),
            port: 22,
            login: Some("deploy".into()),
            host_key: None,
            labels: Default::default(),
            record_data: false,
        }
    }

    #[test]
    fn the_certificate_names_the_session_login_grant_end_and_source() {
        let ca = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
        let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
        let t = target();
        let ask = Ask {
            target: &t,
            session: "gw-1-1-17",
            now: Timestamp(1_800_000_000_000),
            until: Timestamp(1_800_003_600_001),
            source: "127.0.0.1".parse().unwrap(),
        };
        let c = certificate(&ca, &key, &ask).unwrap();
        assert_eq!(c.key_id(), "gw-1-1-17");
        assert_eq!(c.valid_principals(), ["deploy".to_string()]);
        assert_eq!(c.valid_before(), 1_800_003_601);
        assert_eq!(c.valid_after(), 1_800_000_000 - CLOCK_SKEW_SECS);
        assert_eq!(c.cert_type(), CertType::User);
        assert_eq!(
            c.critical_options()
                .get("source-address")
                .map(String::as_str),
            Some("127.0.0.1/32")
        );
        assert!(c.extensions().contains_key("permit-pty"));
        assert!(!c.extensions().contains_key("permit-port-forwarding"));
        assert_eq!(c.public_key(), key.public_key().key_data());
        c.verify_signature().unwrap();
        assert_eq!(c.signature_key(), ca.public_key().key_data());
        // A grant already over gets no certificate.
        let over = Ask {
            until: Timestamp(1_799_999_999_000),
            ..ask
        };
        assert!(certificate(&ca, &key, &over).is_err());
    }

    #[tokio::test]
    async fn the_source_address_is_the_routes() {
        let t = target();
        assert_eq!(
            source_address(&t).await.unwrap(),
            "127.0.0.1".parse::<IpAddr>().unwrap()
        );
    }
}
