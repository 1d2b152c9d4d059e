//! Audit events: one for every step of the lifecycle. The audit crate chains and signs them;
//! this module only says what they are and how they read as JSON for a SIEM.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::time::Timestamp;

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
}

/// A file operation of a recorded session. Variants are only ever appended (bincode stores
/// the variant index). Paths are as the client sent them (lossy UTF-8, capped in length).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileOp {
    /// A file opened; `flags` are `read`, `write`, `append`, `create`, `truncate`, `exclusive`
    /// joined by commas.
    Open {
        path: String,
        flags: String,
    },
    /// A file closed, with the bytes read and written through its handle.
    Close {
        path: String,
        bytes_read: u64,
        bytes_written: u64,
    },
    Rename {
        from: String,
        to: String,
    },
    Remove {
        path: String,
    },
    Mkdir {
        path: String,
    },
    Rmdir {
        path: String,
    },
    /// Attributes (mode, owner, times, size) set on a path.
    Setstat {
        path: String,
    },
    /// `link` made, pointing at `points_to`.
    Symlink {
        link: String,
        points_to: String,
    },
    /// A hard link (`hardlink@openssh.com`).
    Hardlink {
        link: String,
        points_to: String,
    },
    /// The SFTP stream could not be followed further (garbage, or a bound reached); the
    /// session itself went on, unparsed from here.
    SftpAbandoned {
        why: String,
    },
    /// Operations past the session's budget of events, counted by their event name.
    Counted {
        counts: Vec<(String, u64)>,
    },
    /// A file sent by legacy scp (`scp -O`): `upload` (to the target) or `download`.
    ScpFile {
        direction: String,
        path: String,
        size: u64,
        mode: String,
    },
    /// A directory sent by legacy scp (`scp -O -r`).
    ScpDir {
        direction: String,
        path: String,
        mode: String,
    },
    /// The legacy scp stream could not be followed further.
    ScpAbandoned {
        why: String,
    },
}

impl FileOp {
    /// The event's dotted name.
    pub fn name(&self) -> &'static str {
        match self {
            FileOp::Open { .. } => "sftp.open",
            FileOp::Close { .. } => "sftp.close",
            FileOp::Rename { .. } => "sftp.rename",
            FileOp::Remove { .. } => "sftp.remove",
            FileOp::Mkdir { .. } => "sftp.mkdir",
            FileOp::Rmdir { .. } => "sftp.rmdir",
            FileOp::Setstat { .. } => "sftp.setstat",
            FileOp::Symlink { .. } => "sftp.symlink",
            FileOp::Hardlink { .. } => "sftp.hardlink",
            FileOp::SftpAbandoned { .. } => "sftp.parse_abandoned",
            FileOp::Counted { .. } => "sftp.counted",
            FileOp::ScpFile { .. } => "scp.file",
            FileOp::ScpDir { .. } => "scp.dir",
            FileOp::ScpAbandoned { .. } => "scp.parse_abandoned",
        }
    }

    /// Its own fields, for the event's JSON.
    fn to_json(&self) -> Value {
        match self {
            FileOp::Open { path, flags } => json!({ "path": path, "flags": flags }),
            FileOp::Close {
                path,
                bytes_read,
                bytes_written,
            } => json!({
                "path": path, "bytes_read": bytes_read, "bytes_written": bytes_written,
            }),
            FileOp::Rename { from, to } => json!({ "from": from, "to": to }),
            FileOp::Remove { path }
            | FileOp::Mkdir { path }
            | FileOp::Rmdir { path }
            | FileOp::Setstat { path } => json!({ "path": path }),
            FileOp::Symlink { link, points_to } | FileOp::Hardlink { link, points_to } => {
                json!({ "link": link, "points_to": points_to })
            }
            FileOp::SftpAbandoned { why } | FileOp::ScpAbandoned { why } => json!({ "why": why }),
            FileOp::Counted { counts } => json!({ "counts": counts_json(counts) }),
            FileOp::ScpFile {
                direction,
                path,
                size,
                mode,
            } => json!({ "direction": direction, "path": path, "size": size, "mode": mode }),
            FileOp::ScpDir {
                direction,
                path,
                mode,
            } => json!({ "direction": direction, "path": path, "mode": mode }),
        }
    }
}

/// `[(name, n)]` as `{"name": n}`.
fn counts_json(counts: &[(String, u64)]) -> Value {
    Value::Object(counts.iter().map(|(k, n)| (k.clone(), json!(n))).collect())
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
            EventKind::SessionStarted { .. } => "session.started",
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
        let details = match &self.kind {
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
            EventKind::SessionRefused {
                gateway,
                client,
                fingerprint,
                channel,
                destination,
                message,
            } => json!({
                "gateway": gateway, "client": client, "fingerprint": fingerprint,
                "channel": channel, "destination": destination, "message": message,
            }),
            EventKind::SessionRefusedRepeatedly {
                gateway,
                client,
                count,
                first,
                last,
                reasons,
            } => json!({
                "gateway": gateway, "client": client, "count": count,
                "first_at": first.rfc3339(), "last_at": last.rfc3339(),
                "reasons": counts_json(reasons),
            }),
            EventKind::ApproverStartedOn {
                version,
                listen,
                pid,
            } => json!({ "version": version, "listen": listen, "pid": pid }),
            EventKind::ApproverStopped { pid } => json!({ "pid": pid }),
            EventKind::GatewayStarted {
                gateway,
                instance,
                version,
                listen,
                pid,
                started_at,
            } => json!({
                "gateway": gateway, "instance": instance, "version": version,
                "listen": listen, "pid": pid, "started_at": started_at.rfc3339(),
            }),
            EventKind::GatewayStopped {
                gateway,
                instance,
                stopped_at,
            } => json!({
                "gateway": gateway, "instance": instance, "stopped_at": stopped_at.rfc3339(),
            }),
            EventKind::FileOperation {
                session,
                gateway,
                seen_at,
                op,
                outcome,
            } => {
                let mut d = json!({
                    "session": session, "gateway": gateway, "seen_at": seen_at.rfc3339(),
                    "outcome": outcome,
                });
                if let (Value::Object(d), Value::Object(o)) = (&mut d, op.to_json()) {
                    d.extend(o);
                }
                d
            }
            EventKind::RequestDenied
            | EventKind::RequestExpired
            | EventKind::RequestCancelled
            | EventKind::GrantExpired
            | EventKind::GrantRevoked => json!({}),
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_flat_and_named() {
        let e = AuditEvent::new("alice", EventKind::RequestDenied)
            .user("alice")
            .request(3)
            .note(Some("no".into()));
        let j = e.to_json();
        assert_eq!(j["event"], "request.denied");
        assert_eq!(j["request"], 3);
        assert!(!j.contains_key("grant"));
        assert!(e.summary().contains("note=\"no\""));
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Records written before the variants of refusals, starts and stops, and file operations
    /// were appended still decode to what they were: `audit verify` re-hashes the decoded
    /// event, so a shifted variant index would fail every old record.
    #[test]
    fn records_encoded_before_new_kinds_still_decode() {
        let golden = [
            (
                "010800000000000000617070726f766572000000000500000000000000302e312e30000000000000",
                AuditEvent::new(
                    "approver",
                    EventKind::ApproverStarted {
                        version: "0.1.0".into(),
                    },
                ),
            ),
            (
                "010500000000000000616c69636514000000010500000000000000616c6963650001070000000000000000010400000000000000646f6e6500",
                AuditEvent::new("alice", EventKind::RequestCancelled)
                    .user("alice")
                    .request(7)
                    .reason(Some("done".into())),
            ),
            (
                "01040000000000000067772d310c000000090000000000000067772d312d61622d31040000000000000067772d310100000000000000020000000000000001000000000000000065cd1d0600000000000000636c6f73656401000000000000010500000000000000616c6963650105000000000000007765622d31000103000000000000000000",
                AuditEvent::new(
                    "gw-1",
                    EventKind::SessionEnded {
                        session: "gw-1-ab-1".into(),
                        gateway: "gw-1".into(),
                        bytes_in: 1,
                        bytes_out: 2,
                        duration: Duration::from_millis(1500),
                        reason: "closed".into(),
                        exit_status: Some(0),
                        recording_sha256: None,
                        recording_size: None,
                    },
                )
                .user("alice")
                .target("web-1")
                .grant(3),
            ),
        ];
        for (bytes, event) in golden {
            let decoded: AuditEvent = crate::codec::decode(&hex(bytes)).unwrap();
            assert_eq!(decoded, event);
            assert_eq!(crate::codec::encode(&event), hex(bytes));
        }
    }

    /// One event of every kind (and every file operation).
    fn every_kind() -> Vec<EventKind> {
        let s = || String::from("x");
        let t = Timestamp(0);
        let ops = vec![
            FileOp::Open {
                path: s(),
                flags: s(),
            },
            FileOp::Close {
                path: s(),
                bytes_read: 0,
                bytes_written: 0,
            },
            FileOp::Rename { from: s(), to: s() },
            FileOp::Remove { path: s() },
            FileOp::Mkdir { path: s() },
            FileOp::Rmdir { path: s() },
            FileOp::Setstat { path: s() },
            FileOp::Symlink {
                link: s(),
                points_to: s(),
            },
            FileOp::Hardlink {
                link: s(),
                points_to: s(),
            },
            FileOp::SftpAbandoned { why: s() },
            FileOp::Counted { counts: vec![] },
            FileOp::ScpFile {
                direction: s(),
                path: s(),
                size: 0,
                mode: s(),
            },
            FileOp::ScpDir {
                direction: s(),
                path: s(),
                mode: s(),
            },
            FileOp::ScpAbandoned { why: s() },
        ];
        let mut kinds = vec![
            EventKind::ApproverStarted { version: s() },
            EventKind::ConfigLoaded {
                path: s(),
                sha256: s(),
            },
            EventKind::ConfigRefused {
                path: s(),
                error: s(),
            },
            EventKind::RequestCreated {
                policy: s(),
                duration: Duration::ZERO,
            },
            EventKind::RequestApproved {
                approvals: 0,
                needed: 0,
            },
            EventKind::RequestDenied,
            EventKind::RequestExpired,
            EventKind::GrantIssued {
                expires_at: t,
                approvers: vec![],
                automatic: false,
            },
            EventKind::GrantExpired,
            EventKind::GrantRevoked,
            EventKind::Refused {
                command: s(),
                error: s(),
            },
            EventKind::SessionStarted {
                session: s(),
                gateway: s(),
                client: s(),
                fingerprint: s(),
                channel: s(),
            },
            EventKind::SessionEnded {
                session: s(),
                gateway: s(),
                bytes_in: 0,
                bytes_out: 0,
                duration: Duration::ZERO,
                reason: s(),
                exit_status: None,
                recording_sha256: None,
                recording_size: None,
            },
            EventKind::SessionKilled { session: s() },
            EventKind::TargetHostKeyMismatch {
                session: s(),
                presented: s(),
            },
            EventKind::RefusedRepeatedly {
                count: 0,
                first: t,
                last: t,
            },
            EventKind::StoreHistoryDiverged {
                gateway: s(),
                gateway_rev: 0,
                store_rev: 0,
                old_epoch: 0,
                new_epoch: 0,
                ids_from: 0,
            },
            EventKind::SigningKeyRotated { old: s(), new: s() },
            EventKind::SessionRegranted {
                session: s(),
                from: 0,
            },
            EventKind::RecordingRemoved {
                session: s(),
                sha256: s(),
                why: s(),
            },
            EventKind::RequestCancelled,
            EventKind::SessionRefused {
                gateway: s(),
                client: s(),
                fingerprint: s(),
                channel: s(),
                destination: s(),
                message: s(),
            },
            EventKind::SessionRefusedRepeatedly {
                gateway: s(),
                client: None,
                count: 0,
                first: t,
                last: t,
                reasons: vec![],
            },
            EventKind::ApproverStartedOn {
                version: s(),
                listen: s(),
                pid: 0,
            },
            EventKind::ApproverStopped { pid: 0 },
            EventKind::GatewayStarted {
                gateway: s(),
                instance: s(),
                version: s(),
                listen: s(),
                pid: 0,
                started_at: t,
            },
            EventKind::GatewayStopped {
                gateway: s(),
                instance: s(),
                stopped_at: t,
            },
        ];
        kinds.extend(ops.into_iter().map(|op| EventKind::FileOperation {
            session: s(),
            gateway: s(),
            seen_at: t,
            op,
            outcome: None,
        }));
        kinds
    }

    #[test]
    fn every_kind_is_listed_for_the_filter_and_every_listed_kind_exists() {
        let names: std::collections::BTreeSet<&str> =
            every_kind().iter().map(EventKind::name).collect();
        let listed: std::collections::BTreeSet<&str> = KIND_NAMES.iter().copied().collect();
        assert_eq!(names, listed);
        assert_eq!(listed.len(), KIND_NAMES.len(), "a name listed twice");
    }

    #[test]
    fn kinds_filter_by_name_or_dotted_prefix() {
        let open = EventKind::FileOperation {
            session: "gw-1-ab-1".into(),
            gateway: "gw-1".into(),
            seen_at: Timestamp(1_000),
            op: FileOp::Open {
                path: "/tmp/x".into(),
                flags: "write,create,truncate".into(),
            },
            outcome: Some("ok".into()),
        };
        assert_eq!(open.name(), "sftp.open");
        for yes in ["sftp", "sftp.open"] {
            assert!(open.matches(yes), "{yes}");
        }
        for no in ["sft", "sftp.op", "sftp.open.x", "", "session"] {
            assert!(!open.matches(no), "{no}");
        }
        let counted = EventKind::SessionRefusedRepeatedly {
            gateway: "gw-1".into(),
            client: None,
            count: 3,
            first: Timestamp(0),
            last: Timestamp(1),
            reasons: vec![("no_grant".into(), 3)],
        };
        assert!(counted.matches("session.refused") && counted.matches("session"));
        assert!(!counted.matches("command.refused"));
    }

    #[test]
    fn a_file_operation_reads_flat() {
        let e = AuditEvent::new(
            "gw-1",
            EventKind::FileOperation {
                session: "gw-1-ab-1".into(),
                gateway: "gw-1".into(),
                seen_at: Timestamp(1_000),
                op: FileOp::Close {
                    path: "/tmp/x".into(),
                    bytes_read: 0,
                    bytes_written: 5,
                },
                outcome: Some("ok".into()),
            },
        )
        .user("alice")
        .target("web-1");
        let j = e.to_json();
        assert_eq!(j["event"], "sftp.close");
        assert_eq!(j["path"], "/tmp/x");
        assert_eq!(j["bytes_written"], 5);
        assert_eq!(j["outcome"], "ok");
        assert_eq!(j["target"], "web-1");
        let back: AuditEvent = crate::codec::decode(&crate::codec::encode(&e)).unwrap();
        assert_eq!(back, e);
    }
}
