//! `[[user_cas]]`, the CAs whose user certificates log users in, and `auth = "certificate"` on
//! `kind = "ssh"` targets (#13). Owns their validation into the catalog's
//! [`Certificates`]; a CA's key is registered with the other login keys, so it can be no
//! user's or gateway's key.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::catalog::{Target, TargetKind};
use crate::keys;
use crate::user_ca::{Certificates, UserCa};

use super::identity::KeyOwners;
use super::problems::Problems;
use super::targets::TargetEntry;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserCaEntry {
    pub name: String,
    /// The CA's public key, an OpenSSH line.
    pub key: String,
    #[serde(default)]
    pub revoked_serials: Vec<u64>,
    #[serde(default)]
    pub revoked_key_ids: Vec<String>,
    /// `SHA256:…` fingerprints, or whole OpenSSH public key lines.
    #[serde(default)]
    pub revoked_keys: Vec<String>,
    pub max_validity: Option<String>,
}

/// A `SHA256:…` fingerprint as `ssh-keygen -l` prints it, or the fingerprint of a key line.
fn revoked_key(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.starts_with("SHA256:") {
        return text
            .parse::<russh::keys::ssh_key::Fingerprint>()
            .map(|f| f.to_string())
            .map_err(|_| {
                format!("{text:?} is not a SHA256 fingerprint as ssh-keygen -l prints it")
            });
    }
    russh::keys::PublicKey::from_openssh(text)
        .map(|k| keys::fingerprint(&k))
        .map_err(|_| {
            format!("{text:?} is neither a SHA256:… fingerprint nor an OpenSSH public key line")
        })
}

/// The CAs, in file order, and the targets logged into with a certificate.
pub(super) fn validate(
    p: &mut Problems,
    owners: &mut KeyOwners,
    entries: &[UserCaEntry],
    target_entries: &[TargetEntry],
    targets: &BTreeMap<String, Target>,
) -> Certificates {
    let mut user_cas: Vec<UserCa> = Vec::new();
    for (i, c) in entries.iter().enumerate() {
        let field = format!("user_cas[{i}]");
        p.name(&format!("{field}.name"), &c.name);
        if user_cas.iter().any(|u| u.name == c.name) {
            p.push(
                format!("{field}.name"),
                format!("duplicate user CA {:?}", c.name),
            );
        }
        let field = format!("{field} ({})", c.name);
        let key = owners.claim(
            p,
            &format!("{field}.key"),
            format!("user CA {}", c.name),
            &c.key,
        );
        let mut revoked_keys = BTreeSet::new();
        for (j, k) in c.revoked_keys.iter().enumerate() {
            match revoked_key(k) {
                Ok(fp) => {
                    revoked_keys.insert(fp);
                }
                Err(e) => p.push(format!("{field}.revoked_keys[{j}]"), e),
            }
        }
        let max_validity = c
            .max_validity
            .as_ref()
            .and_then(|d| p.duration(&format!("{field}.max_validity"), d));
        let Some(key) = key else { continue };
        let fingerprint = keys::parse_public_key(&key)
            .map(|k| keys::fingerprint(&k))
            .unwrap_or_default();
        user_cas.push(UserCa {
            name: c.name.clone(),
            key,
            fingerprint,
            revoked_serials: c.revoked_serials.iter().copied().collect(),
            revoked_key_ids: c.revoked_key_ids.iter().cloned().collect(),
            revoked_keys,
            max_validity,
        });
    }
    let mut certificate_targets = BTreeSet::new();
    for (i, t) in target_entries.iter().enumerate() {
        let Some(auth) = &t.auth else { continue };
        let field = format!("targets[{i}] ({}).auth", t.name);
        match auth.as_str() {
            "key" => {}
            "certificate" => {
                if targets
                    .get(&t.name)
                    .is_some_and(|t| t.kind != TargetKind::Ssh)
                {
                    p.push(
                        &field,
                        "a certificate is how the gateway logs into an ssh target; this target is not kind = \"ssh\"",
                    );
                }
                certificate_targets.insert(t.name.clone());
            }
            other => p.push(
                &field,
                format!("{other:?} is not one of \"key\", \"certificate\""),
            ),
        }
    }
    Certificates {
        user_cas,
        targets: certificate_targets,
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::super::tests::{ALICE, BOB};

    const CA: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFzHPwwQBQcC9nPO+4l78iv9iqKBvVYvxKbjvzR7H8+R corp-ca";

    fn config(user_cas: &str, carol_keys: &str) -> String {
        format!(
            r#"
[[users]]
name = "alice"
keys = ["{ALICE}"]

[[users]]
name = "carol"
keys = [{carol_keys}]
{user_cas}
"#
        )
    }

    #[test]
    fn a_ca_lets_users_list_no_keys_and_is_carried_in_the_catalog() {
        let text = config(
            &format!(
                "[[user_cas]]\nname = \"corp\"\nkey = \"{CA}\"\nrevoked_serials = [17]\n\
                 revoked_key_ids = [\"lost\"]\nrevoked_keys = [\"{BOB}\", \"SHA256:NRFyS5lQ3o3NnhI6ZAEoZG5GTBwHAg78pjywzppJxp0\"]\nmax_validity = \"24h\"\n"
            ),
            "",
        );
        let c = parse(&text).unwrap();
        let cas = &c.catalog.certificates.user_cas;
        assert_eq!(cas.len(), 1);
        assert_eq!(cas[0].name, "corp");
        assert!(cas[0].fingerprint.starts_with("SHA256:"));
        assert!(!cas[0].key.contains("corp-ca"), "normalised");
        assert_eq!(cas[0].revoked_keys.len(), 2);
        assert_eq!(
            cas[0].max_validity,
            Some(std::time::Duration::from_secs(86400))
        );
        assert!(c.catalog.users["carol"].keys.is_empty());
    }

    #[test]
    fn without_a_ca_a_user_still_needs_a_key() {
        let e = parse(&config("", "")).unwrap_err().to_string();
        assert!(
            e.contains("users[1] (carol).keys: a user needs at least one public key"),
            "{e}"
        );
    }

    #[test]
    fn bad_entries_are_named() {
        let text = config(
            &format!(
                "[[user_cas]]\nname = \"corp\"\nkey = \"{ALICE}\"\nrevoked_keys = [\"SHA256:nope\", \"md5\"]\nmax_validity = \"forever\"\n\
                 [[user_cas]]\nname = \"corp\"\nkey = \"ssh-ed25519 garbage\"\n"
            ),
            &format!("\"{BOB}\""),
        );
        let e = parse(&text).unwrap_err().to_string();
        for want in [
            "user_cas[0] (corp).key: key is already registered to user alice",
            "user_cas[0] (corp).revoked_keys[0]: \"SHA256:nope\" is not a SHA256 fingerprint",
            "user_cas[0] (corp).revoked_keys[1]: \"md5\" is neither",
            "user_cas[0] (corp).max_validity:",
            "user_cas[1].name: duplicate user CA \"corp\"",
            "user_cas[1] (corp).key: invalid public key",
        ] {
            assert!(e.contains(want), "no {want:?} in\n{e}");
        }
    }

    #[test]
    fn certificate_auth_is_for_ssh_targets() {
        let text = format!(
            "{}\n[[targets]]\nname = \"db\"\nkind = \"tcp\"\naddress = \"127.0.0.1:5432\"\nauth = \"certificate\"\n\
             [[targets]]\nname = \"web\"\nkind = \"ssh\"\naddress = \"127.0.0.1:22\"\nlogin = \"deploy\"\nhost_key = \"{BOB}\"\nauth = \"certificate\"\n\
             [[targets]]\nname = \"web2\"\nkind = \"ssh\"\naddress = \"127.0.0.1:22\"\nlogin = \"deploy\"\nhost_key = \"{BOB}\"\nauth = \"password\"\n",
            config("", &format!("\"{CA}\""))
        );
        let e = parse(&text).unwrap_err().to_string();
        assert!(
            e.contains("targets[0] (db).auth: a certificate is how"),
            "{e}"
        );
        assert!(
            e.contains("targets[2] (web2).auth: \"password\" is not one of"),
            "{e}"
        );
        assert!(!e.contains("targets[1]"), "{e}");
    }
}
