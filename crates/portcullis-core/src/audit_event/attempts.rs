//! The events of attempts and of the daemons' lives (issue 18 item 4): refused channels,
//! starts and stops, and the file operations of recorded sessions ([`FileOp`]). Their JSON
//! fields live here; their names and filtering with the other kinds in the parent module.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::EventKind;

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

/// The JSON fields of the kinds of this module (`{}` for any other).
pub(super) fn details(kind: &EventKind) -> Value {
    match kind {
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
        _ => json!({}),
    }
}
