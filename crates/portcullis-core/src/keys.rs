//! Public keys as configured (OpenSSH lines) and the grant-signing key's text form.

use base64::Engine as _;
use russh::keys::{HashAlg, PublicKey};

/// Parse an OpenSSH public key line (`ssh-ed25519 AAAA… comment`).
pub fn parse_public_key(line: &str) -> Result<PublicKey, String> {
    PublicKey::from_openssh(line.trim()).map_err(|e| {
        let shown: String = line.chars().take(40).collect();
        format!("invalid public key {shown:?}: {e} (expected an OpenSSH line such as \"ssh-ed25519 AAAA… name\")")
    })
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
