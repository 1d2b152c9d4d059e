//! What can go wrong in a command, as the person who ran it should read it.

use portcullis_core::policy::Refusal;

#[derive(Debug, thiserror::Error)]
pub enum ApproverError {
    /// Policy says no.
    #[error("{0}")]
    Refused(#[from] Refusal),
    /// The caller lacks the right; logged as a `command.refused` audit event.
    #[error("{0}")]
    Forbidden(String),
    /// No such thing (or not one the caller may see).
    #[error("{0}")]
    NotFound(String),
    /// The thing is not in a state that allows it (already decided, expired, …).
    #[error("{0}")]
    Conflict(String),
    /// The caller's input is wrong.
    #[error("{0}")]
    BadInput(String),
    #[error("the approver could not record this, so nothing changed: {0}")]
    Store(#[from] portcullis_store::StoreError),
    /// A recording's file could not be read, written or removed.
    #[error("{0}")]
    Recording(#[from] portcullis_store::recordings::RecordingError),
    /// A key file the approver needs is missing, unreadable or not private.
    #[error("{0}")]
    Key(#[from] portcullis_ssh::keyfile::KeyFileError),
    /// The configuration, or the process's own setup (listening, its data directory), is wrong.
    #[error("{0}")]
    Config(String),
}
