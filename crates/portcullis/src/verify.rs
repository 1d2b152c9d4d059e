//! Offline `audit verify --data-dir`: a stopped approver's store, checked against a pinned
//! signing key.

use std::path::Path;
use std::process::ExitCode;

use portcullis_core::keys::format_signing_key;
use portcullis_ssh::keyfile::{self, names};

/// `audit verify`'s exit status: the log is intact.
pub const VERIFY_INTACT: u8 = 0;
/// It was tampered with: the message names what.
pub const VERIFY_TAMPERED: u8 = 1;
/// It could not be verified (a store in use, a file that cannot be read, a bad pin): nothing
/// was found wrong, nothing was proven either.
pub const VERIFY_UNVERIFIED: u8 = 2;

/// Why an offline verify ended without a verdict on the log, or with one.
enum Failed {
    Tampered(String),
    Unverified(anyhow::Error),
}

impl From<anyhow::Error> for Failed {
    fn from(e: anyhow::Error) -> Failed {
        Failed::Unverified(e)
    }
}

/// `audit verify --data-dir DIR [--signing-key KEY]`: verify a stopped approver's store.
pub fn verify_offline(data_dir: &Path, pinned: Option<&str>) -> ExitCode {
    match verify_offline_inner(data_dir, pinned) {
        Ok(()) => ExitCode::from(VERIFY_INTACT),
        Err(Failed::Tampered(what)) => {
            eprintln!("portcullis: audit log verification FAILED: {what}");
            ExitCode::from(VERIFY_TAMPERED)
        }
        Err(Failed::Unverified(e)) => {
            eprintln!("portcullis: could not verify: {e:#}");
            ExitCode::from(VERIFY_UNVERIFIED)
        }
    }
}

fn verify_offline_inner(data_dir: &Path, pinned: Option<&str>) -> Result<(), Failed> {
    let signing_path = data_dir.join(names::GRANT_SIGNING);
    let key = match pinned {
        Some(text) => {
            let pin = portcullis_core::keys::parse_signing_key(text)
                .map_err(|e| anyhow::anyhow!("--signing-key: {e}"))?;
            if let Some(found) = key_in_dir(&signing_path) {
                if found != pin {
                    return Err(Failed::Tampered(format!(
                        "the signing key in {} ({}) is not the pinned key ({}): it was replaced \
                         (and the log can have been re-signed with it), or the pin is another \
                         approver's key",
                        signing_path.display(),
                        format_signing_key(&found),
                        format_signing_key(&pin)
                    )));
                }
            }
            pin
        }
        None => {
            let key = keyfile::load(&signing_path).map_err(anyhow::Error::from)?;
            let found = keyfile::signing_key(&key, &signing_path)
                .map_err(anyhow::Error::from)?
                .verifying_key();
            eprintln!(
                "portcullis: warning: verifying against the signing key found in {dir} ({key}): \
                 anyone able to replace files in {dir} could have re-signed the whole log with a \
                 key of their own. Pin the approver's public key, from the `grant-signing` line \
                 of `portcullis keys` or the gateways' grant_signing_key, kept apart from it: \
                 portcullis audit verify --data-dir {dir} --signing-key ed25519:…",
                dir = data_dir.display(),
                key = format_signing_key(&found)
            );
            found
        }
    };
    let store_dir = data_dir.join("store");
    // sled would make a new, empty store where there is none, and that would "verify".
    if !store_dir.join("db").is_file() {
        return Err(Failed::Unverified(anyhow::anyhow!(
            "there is no store at {}: is {} the approver's data_dir?",
            store_dir.display(),
            data_dir.display()
        )));
    }
    let store = match portcullis_store::Store::open(&store_dir) {
        Ok(s) => s,
        Err(portcullis_store::StoreError::Locked { .. }) => {
            return Err(Failed::Unverified(anyhow::anyhow!(
                "the store at {} is in use by a running approver (sled takes an exclusive \
                 lock): stop the approver or verify online (`portcullis audit verify`)",
                store_dir.display()
            )))
        }
        Err(e) => return Err(Failed::Unverified(e.into())),
    };
    let files = portcullis_store::Recordings::new(&data_dir.join("recordings"));
    let end = portcullis_audit::End {
        signed: store.signed_audit_head().map_err(anyhow::Error::from)?,
        counter: store.audit_head().map_err(anyhow::Error::from)?,
    };
    // The pinned key signed the newest records; each rotation in the log names the key
    // before it, and the hash chain ties the older records to the newer.
    let v = portcullis_audit::KeySchedule::from_log(&key, store.audit_records())
        .and_then(|schedule| {
            portcullis_audit::verify_scheduled(&schedule, store.audit_records(), &end)
        })
        .map_err(|b| Failed::Tampered(b.to_string()))?;
    // Recordings are checked against the hashes in the signed end events.
    let expected = portcullis_audit::expected_recordings(store.audit_records());
    let hashes = expected.present;
    for (session, sha) in &hashes {
        let found = files.sha256(session).map_err(anyhow::Error::from)?;
        portcullis_audit::verify_recording_hash(session, sha, found)
            .map_err(|b| Failed::Tampered(b.to_string()))?;
    }
    if v.signed_head.is_none() && v.records > 0 {
        eprintln!("portcullis: warning: {}", portcullis_audit::UNSIGNED_HEAD);
    }
    let ends = match v.signed_head {
        Some(h) => format!("signed head of {}", h.at.rfc3339()),
        None => "unsigned head".to_string(),
    };
    let removed = match expected.removed.len() {
        0 => String::new(),
        n => format!("; {n} removed by retention (removals in the log)"),
    };
    println!(
        "audit log verified: {} records, chain intact, every signature valid, ends at its {ends} (head {}); {} recordings match their hashes{removed}",
        v.records,
        hex_head(&v.head),
        hashes.len()
    );
    Ok(())
}

/// The public half of the signing key kept in the data directory, to hold against a pin:
/// the private key where this user may read it, else its `.pub` beside it. `None` when
/// neither can be read (an auditor's copy without the secret key needs only the pin).
fn key_in_dir(path: &Path) -> Option<ed25519_dalek::VerifyingKey> {
    if let Ok(key) = russh::keys::load_secret_key(path, None) {
        if let Ok(k) = keyfile::signing_key(&key, path) {
            return Some(k.verifying_key());
        }
    }
    let line = std::fs::read_to_string(path.with_extension("pub")).ok()?;
    let public = russh::keys::PublicKey::from_openssh(line.trim()).ok()?;
    let bytes = public.key_data().ed25519()?.0;
    ed25519_dalek::VerifyingKey::from_bytes(&bytes).ok()
}

fn hex_head(h: &[u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}
