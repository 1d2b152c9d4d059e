//! Public keys as configured (OpenSSH lines), which kinds of key portcullis can verify, and
//! the grant-signing key's text form.

use base64::Engine as _;
use russh::keys::{Algorithm, EcdsaCurve, HashAlg, PublicKey};

/// The smallest RSA modulus accepted, as OpenSSH's `RequiredRSASize` default.
pub const MIN_RSA_BITS: u32 = 2048;
/// The largest RSA modulus the `rsa` crate verifies (`RsaPublicKey::MAX_SIZE`): a larger key
/// would be accepted by `check` and then fail every login.
pub const MAX_RSA_BITS: u32 = 8192;

/// Parse an OpenSSH public key line (`ssh-ed25519 AAAA… comment`), refusing a key of a kind
/// portcullis cannot verify (see [`check_supported`]): a key accepted here must be able to log
/// in.
pub fn parse_public_key(line: &str) -> Result<PublicKey, String> {
    let shown: String = line.chars().take(40).collect();
    if line
        .split_whitespace()
        .next()
        .is_some_and(|t| t.ends_with("-cert-v01@openssh.com"))
    {
        return Err(format!(
            "{shown:?} is a certificate, not a key: list its CA in [[user_cas]] instead"
        ));
    }
    let key = PublicKey::from_openssh(line.trim()).map_err(|e| {
        format!("invalid public key {shown:?}: {e} (expected an OpenSSH line such as \"ssh-ed25519 AAAA… name\")")
    })?;
    check_supported(&key).map_err(|why| format!("public key {shown:?}: {why}"))?;
    Ok(key)
}

/// Whether portcullis can verify signatures by `key`: ed25519, ECDSA on the three NIST curves,
/// RSA of [`MIN_RSA_BITS`] to [`MAX_RSA_BITS`] bits (signed with `rsa-sha2-256`/`-512`; SHA-1
/// is refused at login), and the two FIDO kinds OpenSSH makes (`ssh-keygen -t ed25519-sk`,
/// `ecdsa-sk`). Anything else (DSA, unknown kinds) is refused with the reason.
pub fn check_supported(key: &PublicKey) -> Result<(), String> {
    match key.algorithm() {
        Algorithm::Ed25519 | Algorithm::SkEd25519 | Algorithm::SkEcdsaSha2NistP256 => Ok(()),
        Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP256 | EcdsaCurve::NistP384 | EcdsaCurve::NistP521,
        } => Ok(()),
        Algorithm::Rsa { .. } => {
            let bits = key.key_data().rsa().map(|k| k.key_size()).unwrap_or(0);
            if bits < MIN_RSA_BITS {
                Err(format!(
                    "RSA key of {bits} bits is too small (at least {MIN_RSA_BITS}, as OpenSSH requires)"
                ))
            } else if bits > MAX_RSA_BITS {
                Err(format!(
                    "RSA key of {bits} bits is larger than portcullis can verify (at most {MAX_RSA_BITS})"
                ))
            } else {
                Ok(())
            }
        }
        Algorithm::Dsa => Err("DSA (ssh-dss) keys are not supported (OpenSSH removed them)".into()),
        other => Err(format!("{} keys are not supported", other.as_str())),
    }
}

/// Whether a signature algorithm is one portcullis accepts at login: every algorithm of a
/// supported key kind except `ssh-rsa`, whose SHA-1 signatures OpenSSH 8.8 stopped accepting.
pub fn signature_algorithm_ok(algorithm: &Algorithm) -> bool {
    !matches!(algorithm, Algorithm::Rsa { hash: None })
}

/// How a key kind is named in log lines and errors: `ED25519`, `RSA-3072`, `ECDSA-P256`, …
pub fn kind(key: &PublicKey) -> String {
    match key.algorithm() {
        Algorithm::Rsa { .. } => format!(
            "RSA-{}",
            key.key_data().rsa().map(|k| k.key_size()).unwrap_or(0)
        ),
        other => other.as_str().to_string(),
    }
}

/// The key without its comment, the form two keys are compared in.
pub fn normalize(key: &PublicKey) -> String {
    let mut k = key.clone();
    k.set_comment("");
    k.to_openssh().unwrap_or_default().trim().to_string()
}

/// `SHA256:…`, as `ssh-keygen -l` prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

const SIGNING_PREFIX: &str = "ed25519:";

/// The text form of the approver's public grant-signing key: `ed25519:BASE64`.
pub fn format_signing_key(key: &ed25519_dalek::VerifyingKey) -> String {
    format!(
        "{SIGNING_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(key.to_bytes())
    )
}

/// Parse `ed25519:BASE64` (the `grant-signing` line of `portcullis keys`).
pub fn parse_signing_key(text: &str) -> Result<ed25519_dalek::VerifyingKey, String> {
    let text = text.trim();
    let text = text.strip_prefix("grant-signing ").unwrap_or(text);
    let b64 = text.strip_prefix(SIGNING_PREFIX).ok_or_else(|| {
        format!("grant signing key must look like \"ed25519:BASE64\" (as `portcullis keys` prints it), got {text:?}")
    })?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("grant signing key is not valid base64: {e}"))?;
    let arr: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| format!("grant signing key must be 32 bytes, got {}", bytes.len()))?;
    ed25519_dalek::VerifyingKey::from_bytes(&arr)
        .map_err(|e| format!("grant signing key is not a valid ed25519 point: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGoHkF4rbbzfHvvGr0tPbMM1bFsHr3OxCzNd0R3dTNNb alice@laptop";

    #[test]
    fn normalize_drops_comment() {
        let k = parse_public_key(KEY).unwrap();
        assert!(!normalize(&k).contains("alice"));
        assert!(fingerprint(&k).starts_with("SHA256:"));
    }

    // Made with `ssh-keygen -t …`: one of each kind a stock client makes. The FIDO keys are
    // ssh-keygen keys rewrapped with the `ssh:` application (real FIDO keys, made on a
    // software token, are in tests/gateway/fido.rs).
    const RSA_3072: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQC/YwOFUfpsA6hdmW10Bn2seM41O019NHbs2iK4IesMw8c8QM1bQA82gMrEmpCOBjGkVXvYyTj8o92HR119+knDYtOlaxL/CY1llnG+SoAY2wuRueD/kn3udWbG1nz/m4G2OTqk7I0zVlnlK3pY03lw0oFKN6FndHYeML46zJeXByXbArMl99ib1binVNB2KoCbvN8v55CXeTiKt7BwQLr+tVtPhGUvSsdzd/9IMnr3z+3nB7Ys6YGWTeBvYBQzC1+R70hOX4xowyp6qwZkDeH/ir0z+gC8MKbGQSjqpBsSfk18FrQC9hr2IYt4CeAXNQQuuX5/K/S4jCalbjT4CHXp3vTsWcYU1TcXug94EUzblY42rJ3Z2sYVRzRfsM3GC3FBOgh1V5mF/TU3G+exCDio0prtYWTXzJpodDdR+fOSjh0u1uX/roe0XcwZ6JQVPKYzd4e9iW58CT9NinBLKcMACayo61Amyxmj4tLkPgsuhSXDGOTCX0pe+Fi63QG2gmU= rsa";
    const ECDSA_384: &str = "ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBKVk0FEs6BSsJaGZVblqdBkyyNc7IVtzMM1JZzP9corFEDjGN1DDutJHTR/jr9N73WeoxlXljiPGGD6oVuoSA1xLuU/LH/oPfxfYfw81J+CmmW8LeZd0szChY5JfOXmJqA== p384";
    const SK_ED25519: &str = "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIIqHTeOyl710m60++4POL7xdRR/gKTlHDtje+AZHBh9OAAAABHNzaDo= fido";
    const SK_ECDSA: &str = "sk-ecdsa-sha2-nistp256@openssh.com AAAAInNrLWVjZHNhLXNoYTItbmlzdHAyNTZAb3BlbnNzaC5jb20AAAAIbmlzdHAyNTYAAABBBMaz6D6405d21enKYjsGsoiDp2MpXTNgw9vXlExvevXcdFxLS89SfrrH22rXlN3N2+OAMOtyGebQ3S6rWspM4PIAAAAEc3NoOg== fido";

    #[test]
    fn every_kind_a_stock_client_makes_is_accepted_and_compared_by_key_data() {
        for line in [KEY, RSA_3072, ECDSA_384, SK_ED25519, SK_ECDSA] {
            let k = parse_public_key(line).unwrap();
            // The same key under another comment is the same key.
            let (kind_and_data, _) = line.rsplit_once(' ').unwrap();
            let other = parse_public_key(&format!("{kind_and_data} someone-else")).unwrap();
            assert_eq!(normalize(&k), normalize(&other), "{line}");
        }
        assert_eq!(kind(&parse_public_key(RSA_3072).unwrap()), "RSA-3072");
        assert!(!signature_algorithm_ok(&Algorithm::Rsa { hash: None }));
        assert!(signature_algorithm_ok(&Algorithm::Rsa {
            hash: Some(HashAlg::Sha512)
        }));
        assert!(signature_algorithm_ok(&Algorithm::SkEd25519));
    }

    #[test]
    fn keys_that_cannot_be_verified_are_refused_with_the_reason() {
        // ssh-keygen -t rsa -b 1024
        let small = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDB3ep89ErdboUzMUJvHEXRRE4DcmA4uarnX/MG6vDMRf1FZuY0QKux/uzYP7evwhs/4OXTmIKyB8t6zwtHedzCBvWY63dZUO2PjHSxAG9TAwOijIuw6hQQ1HmYI+yRrpZoM2nopWzaUD9OSKWLBKVc/meQwsCTXk+IH7ORFwEI2w== small";
        let e = parse_public_key(small).unwrap_err();
        assert!(e.contains("1024 bits is too small"), "{e}");
        let cert =
            "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29t x";
        assert!(parse_public_key(cert)
            .unwrap_err()
            .contains("is a certificate"));
    }

    #[test]
    fn bad_keys_are_named() {
        let e = parse_public_key("ssh-ed25519 notbase64").unwrap_err();
        assert!(e.contains("invalid public key"));
        assert!(parse_signing_key("ed25519:AAAA").is_err());
        assert!(parse_signing_key("ssh-ed25519 AAAA").is_err());
    }

    proptest::proptest! {
        #[test]
        fn key_parsers_never_panic(s in "\\PC{0,120}") {
            let _ = parse_public_key(&s);
            let _ = parse_signing_key(&s);
            let _ = parse_public_key(&format!("ssh-ed25519 {s}"));
            let _ = parse_signing_key(&format!("ed25519:{s}"));
        }
    }

    #[test]
    fn signing_key_round_trip() {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let text = format_signing_key(&sk.verifying_key());
        assert_eq!(parse_signing_key(&text).unwrap(), sk.verifying_key());
        assert_eq!(
            parse_signing_key(&format!("grant-signing {text}")).unwrap(),
            sk.verifying_key()
        );
    }
}
