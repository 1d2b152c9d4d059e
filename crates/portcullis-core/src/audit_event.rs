//! Audit events: one for every step of the lifecycle. The audit crate chains and signs them;
//! this module only says what they are and how they read as JSON for a SIEM.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::time::Timestamp;

mod attempts;
pub use attempts::FileOp;

/// What happened. Variants are only ever appended (bincode stores the variant index).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    ApproverStarted {
        version: String,
    },
    ConfigLoaded {
        path: String,
        sha256: String,
    },
    ConfigRefused {
        path: String,
        error: String,
    },
    RequestCreated {
        policy: String,
        duration: Duration,
    },
    RequestApproved {
        approvals: u32,
        needed: u32,
    },
    RequestDenied,
    RequestExpired,
    GrantIssued {
        expires_at: Timestamp,
        approvers: Vec<String>,
        automatic: bool,
    },
    GrantExpired,
    GrantRevoked,
    /// A command refused for lack of permission (wrong group, own request, …).
    Refused {
        command: String,
        error: String,
    },
    SessionStarted {
        session: String,
        gateway: String,
        client: String,
        fingerprint: String,
        channel: String,
    },
    SessionEnded {
        session: String,
        gateway: String,
        bytes_in: u64,
        bytes_out: u64,
        duration: Duration,
        reason: String,
        exit_status: Option<u32>,
        recording_sha256: Option<String>,
        recording_size: Option<u64>,
    },
    SessionKilled {
        session: String,
    },
    TargetHostKeyMismatch {
        session: String,
        presented: String,
    },
    /// Refusals of one actor past the budget of those recorded one by one, counted instead:
    /// a flood of refused commands costs one record per interval, not one flush each.
    RefusedRepeatedly {
        count: u64,
        first: Timestamp,
        last: Timestamp,
    },
    /// A gateway showed a history this store does not have (the store was restored from an
    /// older copy, or replaced): the store took a new identity, and new request and grant ids
    /// start above every id that gateway holds.
    StoreHistoryDiverged {
        gateway: String,
        gateway_rev: u64,
        store_rev: u64,
        old_epoch: u64,
        new_epoch: u64,
        ids_from: u64,
    },
    /// The approver signs with a new key from the next record on. This record is the last one
    /// the old key signs: `audit verify` with the new key pinned follows the chain back through
    /// it (its hash is in the next record, signed by the new key).
    SigningKeyRotated {
        /// `ed25519:BASE64`, as `portcullis keys` prints them.
        old: String,
        new: String,
    },
    /// A live session's grant ended and it went on under another grant (`grant` is the new
    /// one).
    SessionRegranted {
        session: String,
        from: u64,
    },
    /// A session's recording was removed on purpose (`[approver] retention`): `audit verify`
    /// then expects it gone, and says so.
    RecordingRemoved {
        session: String,
        sha256: String,
        why: String,
    },
    /// The requester withdrew a pending request (`cancel`); its reason, if given, is the
    /// event's `reason`.
    RequestCancelled,
    /// A gateway refused a channel of an authenticated user: a forward or a recorded session.
    /// The event's `user` and `target` (when the request named a configured one) are set, and
    /// its `reason` is the short name of why (`no_grant`, `unknown_target`, …).
    SessionRefused {
        gateway: String,
        client: String,
        fingerprint: String,
        channel: String,
        destination: String,
        message: String,
    },
    /// Refusals of one user past the gateway's budget, counted (see [`EventKind::SessionRefused`]).
    SessionRefusedRepeatedly {
        gateway: String,
        /// For refusals counted per source (logins).
        client: Option<String>,
        count: u64,
        first: Timestamp,
        last: Timestamp,
        reasons: Vec<(String, u64)>,
    },
    /// The approver started (replaces [`EventKind::ApproverStarted`], kept for old records).
    ApproverStartedOn {
        version: String,
        /// The listen address as configured.
        listen: String,
        pid: u32,
    },
    /// The approver stopped gracefully; the event's `reason` says why (`SIGTERM`, …).
    ApproverStopped {
        pid: u32,
    },
    /// A gateway started. One that died without stopping shows as a start with no stop
    /// before it.
    GatewayStarted {
        gateway: String,
        instance: String,
        version: String,
        listen: String,
        pid: u32,
        /// When the gateway started (the record's own time is when the approver heard of it).
        started_at: Timestamp,
    },
    /// A gateway stopped gracefully; the event's `reason` says why.
    GatewayStopped {
        gateway: String,
        instance: String,
        stopped_at: Timestamp,
    },
    /// A file operation in a recorded session's SFTP or legacy scp stream.
    FileOperation {
        session: String,
        gateway: String,
        /// When the gateway saw it.
        seen_at: Timestamp,
        op: FileOp,
        outcome: Option<String>,
    },
    /// `session.started` for a login by user certificate (#13): the fields of
    /// [`EventKind::SessionStarted`] and the certificate's CA, key id and serial. A variant of
    /// its own, appended, so records written before it decode and verify unchanged; in JSON it
    /// is `session.started` with three more fields.
    SessionStartedCertified {
        session: String,
        gateway: String,
        client: String,
        fingerprint: String,
        channel: String,
        ca: String,
        key_id: String,
        serial: u64,
    },
}

/// Every name [`EventKind::name`] gives, for `audit log --kind` to check a filter against.
pub const KIND_NAMES: &[&str] = &[
    "approver.started",
    "approver.stopped",
    "gateway.started",
    "gateway.stopped",
    "config.loaded",
    "config.refused",
    "signing_key.rotated",
    "store.history_diverged",
    "request.created",
    "request.approved",
    "request.denied",
    "request.expired",
    "request.cancelled",
    "grant.issued",
    "grant.expired",
    "grant.revoked",
    "command.refused",
    "session.started",
    "session.ended",
    "session.killed",
    "session.regranted",
    "session.refused",
    "target.host_key_mismatch",
    "recording.removed",
    "sftp.open",
    "sftp.close",
    "sftp.rename",
    "sftp.remove",
    "sftp.mkdir",
    "sftp.rmdir",
    "sftp.setstat",
    "sftp.symlink",
    "sftp.hardlink",
    "sftp.counted",
    "sftp.parse_abandoned",
    "scp.file",
    "scp.dir",
    "scp.parse_abandoned",
];

impl EventKind {
    /// The dotted name a SIEM filters on.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::ApproverStarted { .. } => "approver.started",
            EventKind::ConfigLoaded { .. } => "config.loaded",
            EventKind::ConfigRefused { .. } => "config.refused",
            EventKind::RequestCreated { .. } => "request.created",
            EventKind::RequestApproved { .. } => "request.approved",
            EventKind::RequestDenied => "request.denied",
            EventKind::RequestExpired => "request.expired",
            EventKind::GrantIssued { .. } => "grant.issued",
            EventKind::GrantExpired => "grant.expired",
            EventKind::GrantRevoked => "grant.revoked",
            EventKind::Refused { .. } => "command.refused",
            EventKind::SessionStarted { .. } | EventKind::SessionStartedCertified { .. } => {
                "session.started"
            }
            EventKind::SessionEnded { .. } => "session.ended",
            EventKind::SessionKilled { .. } => "session.killed",
            EventKind::TargetHostKeyMismatch { .. } => "target.host_key_mismatch",
            EventKind::RefusedRepeatedly { .. } => "command.refused",
            EventKind::StoreHistoryDiverged { .. } => "store.history_diverged",
            EventKind::RecordingRemoved { .. } => "recording.removed",
            EventKind::SigningKeyRotated { .. } => "signing_key.rotated",
            EventKind::SessionRegranted { .. } => "session.regranted",
            EventKind::RequestCancelled => "request.cancelled",
            EventKind::SessionRefused { .. } => "session.refused",
            EventKind::SessionRefusedRepeatedly { .. } => "session.refused",
            EventKind::ApproverStartedOn { .. } => "approver.started",
            EventKind::ApproverStopped { .. } => "approver.stopped",
            EventKind::GatewayStarted { .. } => "gateway.started",
            EventKind::GatewayStopped { .. } => "gateway.stopped",
            EventKind::FileOperation { op, .. } => op.name(),
        }
    }

    /// Whether `--kind FILTER` selects events of this kind: its whole name, or a dotted prefix
    /// of it (`session` selects `session.refused`, `sftp` every `sftp.*`).
    pub fn matches(&self, filter: &str) -> bool {
        let name = self.name();
        name == filter
            || name
                .strip_prefix(filter)
                .is_some_and(|rest| rest.starts_with('.'))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Who did it: a user, a gateway, or `approver` for the daemon's own steps.
    pub actor: String,
    pub kind: EventKind,
    /// The user the event is about (the requester, the grant holder).
    pub user: Option<String>,
    pub target: Option<String>,
    pub request: Option<u64>,
    pub grant: Option<u64>,
    pub reason: Option<String>,
    pub note: Option<String>,
}

impl AuditEvent {
    pub fn new(actor: impl Into<String>, kind: EventKind) -> Self {
        AuditEvent {
            actor: actor.into(),
            kind,
            user: None,
            target: None,
            request: None,
            grant: None,
            reason: None,
            note: None,
        }
    }
    pub fn user(mut self, u: impl Into<String>) -> Self {
        self.user = Some(u.into());
        self
    }
    pub fn target(mut self, t: impl Into<String>) -> Self {
        self.target = Some(t.into());
        self
    }
    pub fn request(mut self, id: u64) -> Self {
        self.request = Some(id);
        self
    }
    pub fn grant(mut self, id: u64) -> Self {
        self.grant = Some(id);
        self
    }
    pub fn reason(mut self, r: Option<String>) -> Self {
        self.reason = r;
        self
    }
    pub fn note(mut self, n: Option<String>) -> Self {
        self.note = n;
        self
    }

    /// The session the event is about, if it is about one.
    pub fn session(&self) -> Option<&str> {
        match &self.kind {
            EventKind::SessionStarted { session, .. }
            | EventKind::SessionEnded { session, .. }
            | EventKind::SessionKilled { session }
            | EventKind::TargetHostKeyMismatch { session, .. }
            | EventKind::SessionRegranted { session, .. }
            | EventKind::RecordingRemoved { session, .. }
            | EventKind::FileOperation { session, .. } => Some(session),
            _ => None,
        }
    }

    /// Flat JSON fields (absent values left out), `event` first.
    pub fn to_json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("event".into(), json!(self.kind.name()));
        m.insert("actor".into(), json!(self.actor));
        let mut opt = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.into(), v);
            }
        };
        opt("user", self.user.as_ref().map(|v| json!(v)));
        opt("target", self.target.as_ref().map(|v| json!(v)));
        opt("request", self.request.map(|v| json!(v)));
        opt("grant", self.grant.map(|v| json!(v)));
        opt("reason", self.reason.as_ref().map(|v| json!(v)));
        opt("note", self.note.as_ref().map(|v| json!(v)));
        let details = details(&self.kind);
        if let Value::Object(d) = details {
            for (k, v) in d {
                if !v.is_null() {
                    m.insert(k, v);
                }
            }
        }
        m
    }

    /// One human line: `request.created alice → pg-prod request=17 reason="INC-42"`.
    pub fn summary(&self) -> String {
        let mut s = format!("{:<17} {}", self.kind.name(), self.actor);
        let j = self.to_json();
        for (k, v) in j.iter().filter(|(k, _)| *k != "event" && *k != "actor") {
            match v {
                Value::String(t) => s.push_str(&format!(" {k}={t:?}")),
                other => s.push_str(&format!(" {k}={other}")),
            }
        }
        s
    }
}

/// Each kind's own fields (null values are left out by the caller).
fn details(kind: &EventKind) -> Value {
    match kind {
        EventKind::ApproverStarted { version } => json!({ "version": version }),
        EventKind::ConfigLoaded { path, sha256 } => json!({ "path": path, "sha256": sha256 }),
        EventKind::ConfigRefused { path, error } => json!({ "path": path, "error": error }),
        EventKind::RequestCreated { policy, duration } => {
            json!({ "policy": policy, "duration_secs": duration.as_secs() })
        }
        EventKind::RequestApproved { approvals, needed } => {
            json!({ "approvals": approvals, "needed": needed })
        }
        EventKind::GrantIssued {
            expires_at,
            approvers,
            automatic,
        } => json!({
            "expires_at": expires_at.rfc3339(),
            "approvers": approvers,
            "automatic": automatic,
        }),
        EventKind::Refused { command, error } => json!({ "command": command, "error": error }),
        EventKind::SessionStarted {
            session,
            gateway,
            client,
            fingerprint,
            channel,
        } => json!({
            "session": session, "gateway": gateway, "client": client,
            "fingerprint": fingerprint, "channel": channel,
        }),
        EventKind::SessionStartedCertified {
            session,
            gateway,
            client,
            fingerprint,
            channel,
            ca,
            key_id,
            serial,
        } => json!({
            "session": session, "gateway": gateway, "client": client,
            "fingerprint": fingerprint, "channel": channel,
            "ca": ca, "key_id": key_id, "serial": serial,
        }),
        EventKind::SessionEnded {
            session,
            gateway,
            bytes_in,
            bytes_out,
            duration,
            reason,
            exit_status,
            recording_sha256,
            recording_size,
        } => json!({
            "session": session, "gateway": gateway, "bytes_in": bytes_in,
            "bytes_out": bytes_out, "duration_ms": duration.as_millis() as u64,
            "end_reason": reason, "exit_status": exit_status,
            "recording_sha256": recording_sha256, "recording_size": recording_size,
        }),
        EventKind::SessionKilled { session } => json!({ "session": session }),
        EventKind::TargetHostKeyMismatch { session, presented } => {
            json!({ "session": session, "presented": presented })
        }
        EventKind::RefusedRepeatedly { count, first, last } => json!({
            "count": count, "first_at": first.rfc3339(), "last_at": last.rfc3339(),
        }),
        EventKind::StoreHistoryDiverged {
            gateway,
            gateway_rev,
            store_rev,
            old_epoch,
            new_epoch,
            ids_from,
        } => json!({
            "gateway": gateway, "gateway_rev": gateway_rev, "store_rev": store_rev,
            "old_epoch": format!("{old_epoch:016x}"), "new_epoch": format!("{new_epoch:016x}"),
            "ids_from": ids_from,
        }),
        EventKind::SigningKeyRotated { old, new } => json!({ "old_key": old, "new_key": new }),
        EventKind::SessionRegranted { session, from } => json!({
            "session": session, "from_grant": from,
        }),
        EventKind::RecordingRemoved {
            session,
            sha256,
            why,
        } => json!({
            "session": session, "recording_sha256": sha256, "removed_because": why,
        }),
        EventKind::SessionRefused { .. }
        | EventKind::SessionRefusedRepeatedly { .. }
        | EventKind::ApproverStartedOn { .. }
        | EventKind::ApproverStopped { .. }
        | EventKind::GatewayStarted { .. }
        | EventKind::GatewayStopped { .. }
        | EventKind::FileOperation { .. } => attempts::details(kind),
        EventKind::RequestDenied
        | EventKind::RequestExpired
        | EventKind::RequestCancelled
        | EventKind::GrantExpired
        | EventKind::GrantRevoked => json!({}),
    }
}

#[cfg(test)]
mod tests;
