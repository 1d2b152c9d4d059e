//! The audit log's integrity: records chained by SHA-256 and signed by the approver, and the
//! verifier that proves a log untouched or names the first bad record.
//!
//! This crate owns the record format and the chain rules. It must not touch storage or the
//! network: the store keeps the bytes, the approver decides when to seal, and both hand this
//! crate plain values. It also owns the signed head, the key schedule across signing-key
//! rotations, and how recordings are checked, converted (`RawCast`) and replayed.
//!
//! One module per concern: `chain` (the record format, sealing), `head` (the signed end of the
//! log), `schedule` (which key signed which records), `verify` (the verdict), `recordings`
//! (recordings against the log), `raw` (raw data streams to asciicast) and `replay` (an
//! asciicast's output with its timing). They are private and everything is re-exported here,
//! so there is one name for each thing (`portcullis_audit::Chain`).

mod chain;
mod head;
mod raw;
mod recordings;
mod replay;
mod schedule;
mod verify;

pub use chain::{AuditRecord, Chain, GENESIS};
pub use head::{Head, SignedHead};
pub use raw::{raw_to_cast, RawCast, RAW_MAX_RECORD};
pub use recordings::{
    expected_recordings, recording_hashes, verify_recording, verify_recording_hash,
    ExpectedRecordings, RecordingBroken,
};
pub use replay::{replay_events, Replay, REPLAY_MAX_PAUSE};
pub use schedule::KeySchedule;
pub use verify::{verify, verify_scheduled, Broken, End, Verified, UNSIGNED_HEAD};
