//! Recordings against the log: the SHA-256 a session's (signed, chained) end event carries is
//! what its recording is checked against, and a `recording.removed` event is what excuses a
//! recording for being gone.

use portcullis_core::codec::CodecError;
use sha2::{Digest, Sha256};

use crate::chain::AuditRecord;

/// Why a recording does not match what its session's end event recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordingBroken {
    #[error("the recording of session {session} is missing")]
    Missing { session: String },
    #[error("the recording of session {session} was altered: its SHA-256 is {found}, the end event recorded {expected}")]
    Altered {
        session: String,
        expected: String,
        found: String,
    },
}

/// Check one recording against the SHA-256 (hex) its end event carries.
pub fn verify_recording(
    session: &str,
    expected_sha256: &str,
    bytes: Option<&[u8]>,
) -> Result<(), RecordingBroken> {
    verify_recording_hash(
        session,
        expected_sha256,
        bytes.map(|b| hex::encode(Sha256::digest(b))),
    )
}

/// As [`verify_recording`], from the recording's SHA-256 (hex) as computed by whoever read it
/// (`None`: it is missing), so that a large recording can be hashed as it is read.
pub fn verify_recording_hash(
    session: &str,
    expected_sha256: &str,
    found: Option<String>,
) -> Result<(), RecordingBroken> {
    let found = found.ok_or_else(|| RecordingBroken::Missing {
        session: session.to_string(),
    })?;
    if found != expected_sha256 {
        return Err(RecordingBroken::Altered {
            session: session.to_string(),
            expected: expected_sha256.to_string(),
            found,
        });
    }
    Ok(())
}

/// The recording hashes the (signed, chained) `session.ended` events carry: what every stored
/// recording is checked against, so a recording cannot be swapped along with an unsigned copy
/// of its hash.
pub fn recording_hashes<I>(records: I) -> Vec<(String, String)>
where
    I: IntoIterator<Item = (u64, Result<AuditRecord, CodecError>)>,
{
    expected_recordings(records).present
}

/// The recordings the log says should be on disk (session, SHA-256 from its end event), and
/// those a later `recording.removed` event says were removed on purpose (retention): those
/// are expected gone, and are not missing.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ExpectedRecordings {
    pub present: Vec<(String, String)>,
    pub removed: Vec<String>,
}

pub fn expected_recordings<I>(records: I) -> ExpectedRecordings
where
    I: IntoIterator<Item = (u64, Result<AuditRecord, CodecError>)>,
{
    use portcullis_core::audit_event::EventKind;
    let mut present: Vec<(String, String)> = Vec::new();
    let mut removed = std::collections::BTreeSet::new();
    for r in records.into_iter().filter_map(|(_, r)| r.ok()) {
        match r.event.kind {
            EventKind::SessionEnded {
                session,
                recording_sha256: Some(sha),
                ..
            } => present.push((session, sha)),
            EventKind::RecordingRemoved { session, .. } => {
                removed.insert(session);
            }
            _ => {}
        }
    }
    present.retain(|(s, _)| !removed.contains(s));
    ExpectedRecordings {
        present,
        removed: removed.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_changed_byte_is_caught() {
        let cast = b"{\"version\":2}\n[0.1,\"o\",\"hi\"]\n".to_vec();
        let sha = hex::encode(Sha256::digest(&cast));
        assert!(verify_recording("s", &sha, Some(&cast)).is_ok());
        let mut bad = cast.clone();
        bad[20] ^= 1;
        assert!(matches!(
            verify_recording("s", &sha, Some(&bad)),
            Err(RecordingBroken::Altered { .. })
        ));
        assert!(matches!(
            verify_recording("s", &sha, None),
            Err(RecordingBroken::Missing { .. })
        ));
    }
}
