//! Requests, approvals and grants: the records of the access lifecycle.
//!
//! These are stored with [`crate::codec`] (bincode): no `skip_serializing_if`, `flatten` or
//! tagged enums here, and new fields only ever go at the end of a new format version.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::signing::{Purpose, SignatureError, Signed};
use crate::time::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub by: String,
    pub at: Timestamp,
    pub note: Option<String>,
}

/// Where a request stands. Variants are only ever appended (bincode stores the variant
/// index); `Cancelled` is a request its requester withdrew before anyone decided it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestState {
    Pending,
    Approved { grant: u64 },
    Denied { by: String, note: Option<String> },
    Expired,
    Cancelled { reason: Option<String> },
}

impl RequestState {
    pub fn as_str(&self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Approved { .. } => "approved",
            RequestState::Denied { .. } => "denied",
            RequestState::Expired => "expired",
            RequestState::Cancelled { .. } => "cancelled",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub id: u64,
    pub user: String,
    pub target: String,
    pub policy: String,
    pub duration: Duration,
    pub reason: Option<String>,
    pub created_at: Timestamp,
    /// When an undecided request lapses (`request_ttl` after creation).
    pub expires_at: Timestamp,
    /// Distinct approvers count: one entry per approver.
    pub approvals: Vec<Approval>,
    pub needed: u32,
    pub state: RequestState,
    pub decided_at: Option<Timestamp>,
}

impl Request {
    pub fn is_pending(&self) -> bool {
        self.state == RequestState::Pending
    }
    pub fn approved_by(&self, user: &str) -> bool {
        self.approvals.iter().any(|a| a.by == user)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub at: Timestamp,
    pub by: String,
    pub reason: Option<String>,
}

/// The signed part of a grant: what a gateway enforces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub id: u64,
    pub request: u64,
    pub user: String,
    pub target: String,
    pub policy: String,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    pub approvers: Vec<String>,
    pub revoked: Option<Revocation>,
}

/// Where a grant stands at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantStatus {
    Active,
    Expired,
    Revoked,
}

impl GrantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantStatus::Active => "active",
            GrantStatus::Expired => "expired",
            GrantStatus::Revoked => "revoked",
        }
    }
}

impl Grant {
    /// The instant the grant stops: its expiry or its revocation, whichever came first.
    pub fn ends_at(&self) -> Timestamp {
        match &self.revoked {
            Some(r) => r.at.min(self.expires_at),
            None => self.expires_at,
        }
    }

    /// A revoked grant is over the moment the revocation is known, whatever the local clock
    /// says about the approver's `at` (a gateway whose clock lags must not keep it alive).
    pub fn status(&self, now: Timestamp) -> GrantStatus {
        if self.revoked.is_some() {
            GrantStatus::Revoked
        } else if now >= self.expires_at {
            GrantStatus::Expired
        } else {
            GrantStatus::Active
        }
    }

    pub fn is_active(&self, now: Timestamp) -> bool {
        self.status(now) == GrantStatus::Active
    }

    pub fn remaining(&self, now: Timestamp) -> Duration {
        now.until(self.ends_at())
    }

    pub fn sign(&self, key: &ed25519_dalek::SigningKey) -> SignedGrant {
        SignedGrant(Signed::seal(key, Purpose::Grant, self))
    }
}

/// A grant as the approver signed it. Gateways verify it against the pinned signing key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedGrant(pub Signed);

impl SignedGrant {
    pub fn verify(&self, key: &ed25519_dalek::VerifyingKey) -> Result<Grant, SignatureError> {
        self.0.open(key, Purpose::Grant)
    }
    /// Verified by any of the pinned keys (see [`crate::signing::Signed::open_any`]).
    pub fn verify_any(
        &self,
        keys: &[ed25519_dalek::VerifyingKey],
    ) -> Result<Grant, SignatureError> {
        self.0.open_any(keys, Purpose::Grant)
    }
    /// Decode without verifying: for the approver's own store only.
    pub fn grant(&self) -> Result<Grant, crate::codec::CodecError> {
        self.0.peek()
    }
}

/// What the approver stores per grant: the signed grant plus bookkeeping of its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRecord {
    pub signed: SignedGrant,
    /// Whether the expiry audit event has been written.
    pub end_recorded: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        Grant {
            id: 1,
            request: 1,
            user: "alice".into(),
            target: "db".into(),
            policy: "p".into(),
            issued_at: Timestamp(1_000),
            expires_at: Timestamp(61_000),
            approvers: vec![],
            revoked: None,
        }
    }

    #[test]
    fn status_follows_time_and_revocation() {
        let mut g = grant();
        assert_eq!(g.status(Timestamp(60_999)), GrantStatus::Active);
        assert_eq!(g.status(Timestamp(61_000)), GrantStatus::Expired);
        assert_eq!(g.remaining(Timestamp(1_000)), Duration::from_secs(60));
        g.revoked = Some(Revocation {
            at: Timestamp(5_000),
            by: "root".into(),
            reason: None,
        });
        assert_eq!(g.status(Timestamp(5_000)), GrantStatus::Revoked);
        assert_eq!(g.ends_at(), Timestamp(5_000));
    }

    #[test]
    fn signed_grants_verify_only_unaltered() {
        let k = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        let s = grant().sign(&k);
        assert_eq!(s.verify(&k.verifying_key()).unwrap(), grant());
        let mut forged = s.clone();
        let mut g = grant();
        g.expires_at = Timestamp(u64::MAX);
        forged.0.body = crate::codec::body_bytes(&g);
        assert!(forged.verify(&k.verifying_key()).is_err());
    }
}

/// What a gateway reports about a session. Sent in order with a per-gateway sequence number;
/// the approver records each sequence number once, so a report retried after a lost
/// acknowledgement is not counted twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionReport {
    Started {
        session: String,
        user: String,
        target: String,
        grant: u64,
        client: String,
        fingerprint: String,
        /// `direct-tcpip`, `shell`, `exec`, `subsystem:sftp`, …
        channel: String,
        at: Timestamp,
    },
    Ended {
        session: String,
        bytes_in: u64,
        bytes_out: u64,
        duration: Duration,
        /// `closed`, `expired`, `revoked`, `killed`, `gateway restart`, …
        reason: String,
        exit_status: Option<u32>,
        at: Timestamp,
        /// SHA-256 (hex) and size of the recording, when there is one.
        recording: Option<(String, u64)>,
    },
    /// The recording of a finished session. Its bytes follow the report on the wire (see
    /// `portcullis_ssh`-independent framing in the gateway's spool), so the approver holds every
    /// recording and `audit export` works from anywhere.
    Recorded {
        session: String,
        sha256: String,
        size: u64,
        /// `cast` (asciicast v2, pty sessions) or `data` (the raw stream of a channel without a
        /// pty, where `record_data = true`): also the file's extension.
        format: String,
    },
    /// A target presented a host key other than its pin: the session was refused.
    HostKeyMismatch {
        session: String,
        user: String,
        target: String,
        presented: String,
        at: Timestamp,
    },
    /// The grant a live session rested on ended, and the session went on under another live
    /// grant of the same user and target instead of being cut.
    Regranted {
        session: String,
        from: u64,
        to: u64,
        at: Timestamp,
    },
    /// The gateway refused something an authenticated user asked for. No session was numbered.
    Refused(Refusal),
    /// Refusals past the gateway's budget for one user (or, for logins, one source), counted
    /// instead of reported one by one.
    RefusedRepeatedly(RefusalCount),
    /// The gateway started: spooled when it opens its replica, so it reaches the approver
    /// once it is reachable, after whatever the previous run left in the spool.
    GatewayStarted {
        version: String,
        /// The listen address as configured.
        listen: String,
        pid: u32,
        at: Timestamp,
    },
    /// The gateway is stopping gracefully (its sessions' ends are spooled before it).
    GatewayStopped {
        /// What stopped it: `SIGTERM`, `SIGINT`, or the error its accept loop ended with.
        reason: String,
        at: Timestamp,
    },
    /// File operations seen in a recorded session's SFTP (or legacy scp) stream, in the order
    /// they completed. Sent in small groups while the session runs, so a gateway crash loses
    /// at most the last second of them.
    FileOps {
        session: String,
        ops: Vec<FileEvent>,
    },
}

impl SessionReport {
    /// The session the report is about; `None` for a gateway's own reports and refusals
    /// (nothing was numbered for them).
    pub fn session(&self) -> Option<&str> {
        match self {
            SessionReport::Started { session, .. }
            | SessionReport::Ended { session, .. }
            | SessionReport::Recorded { session, .. }
            | SessionReport::HostKeyMismatch { session, .. }
            | SessionReport::Regranted { session, .. }
            | SessionReport::FileOps { session, .. } => Some(session),
            SessionReport::Refused(_)
            | SessionReport::RefusedRepeatedly(_)
            | SessionReport::GatewayStarted { .. }
            | SessionReport::GatewayStopped { .. } => None,
        }
    }
}

/// Something a gateway refused. Today: a channel of an authenticated user (a forward, a
/// recorded session). Shaped so that a refused login can travel the same way: `user` is then
/// the name it tried, `fingerprint` the key it offered (or empty), and `channel` is `login`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub at: Timestamp,
    pub user: String,
    /// The client's address and port.
    pub client: String,
    /// `SHA256:…` of the key the user logged in with.
    pub fingerprint: String,
    /// What was opened: `direct-tcpip` (a forward) or `session` (a recorded login's channel).
    pub channel: String,
    /// The configured target the request named, when it named one.
    pub target: Option<String>,
    /// What was asked for, as the client put it: `host:port` of a forward, the target part of
    /// a `user:target` login.
    pub destination: String,
    /// Why, as a short name to group by: `no_grant`, `unknown_target`, `port_not_allowed`, …
    pub reason: String,
    /// What the user was told.
    pub message: String,
}

/// Refusals counted past a budget: how many, when, and how many for each reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusalCount {
    /// Whose refusals, for channels of an authenticated user.
    pub user: Option<String>,
    /// From where, for refusals counted per source (logins).
    pub client: Option<String>,
    pub count: u64,
    pub first: Timestamp,
    pub last: Timestamp,
    /// `(reason, count)`, one entry per reason seen.
    pub reasons: Vec<(String, u64)>,
}

/// One file operation of a recorded session, as the gateway saw it complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEvent {
    /// When the gateway saw it (the target's answer, for SFTP).
    pub at: Timestamp,
    pub op: crate::audit_event::FileOp,
    /// The target's answer: `ok`, `no such file`, `permission denied`, `failure`, …; `None`
    /// where there is none to give (legacy scp, a parse abandoned).
    pub outcome: Option<String>,
}

/// A session as the approver knows it, for `sessions [--live]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub id: String,
    pub gateway: String,
    pub user: String,
    pub target: String,
    pub grant: u64,
    pub client: String,
    pub fingerprint: String,
    pub channel: String,
    pub started_at: Timestamp,
    pub end: Option<SessionEnd>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEnd {
    pub at: Timestamp,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration: Duration,
    pub reason: String,
    pub exit_status: Option<u32>,
    /// SHA-256 (hex) and size of the session's asciicast recording, for pty sessions.
    pub recording: Option<(String, u64)>,
}
