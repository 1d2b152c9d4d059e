//! What the gateway answers by itself while the approver is away: `status`, from its replica
//! (the signed grants and catalog it enforces). Everything else needs the approver and waits.
//! The answer says where it comes from: pending requests live only on the approver, and a
//! grant issued or revoked since the link went down is not in the replica yet.

use portcullis_core::command::{self, ControlCommand};
use portcullis_core::model::Grant;
use portcullis_core::words::duration;
use portcullis_core::Timestamp;
use serde_json::json;

use crate::state::GatewayState;

/// The answer to `line` from the replica, if the gateway can give one: stdout, exit status.
pub(crate) fn answer(gw: &GatewayState, user: &str, line: &str) -> Option<(String, u32)> {
    let parsed = command::parse_line(line).ok()?;
    match parsed.command {
        ControlCommand::Status => Some((status(gw, user, parsed.json), 0)),
        _ => None,
    }
}

/// `status` as the replica has it: the user's active grants with their time left, and the
/// targets they could request once the approver is back.
fn status(gw: &GatewayState, user: &str, json: bool) -> String {
    let now = gw.now();
    let since = gw.link().down_since();
    let grants = gw.active_grants(user);
    let catalog = gw.catalog();
    let targets: Vec<&str> = match catalog
        .as_deref()
        .and_then(|c| Some((c, c.users.get(user)?)))
    {
        Some((c, u)) => portcullis_core::policy::requestable(c, u, now)
            .map(|(t, _)| t.name.as_str())
            .collect(),
        None => Vec::new(),
    };
    if json {
        let value = json!({
            "user": user,
            "source": "gateway replica",
            "approver_unreachable_since": since.map(Timestamp::rfc3339),
            "grants": grants.iter().map(|g| grant_json(g, now)).collect::<Vec<_>>(),
            "pending": null,
            "targets": targets,
        });
        return format!("{value}\n");
    }
    let mut text = match since {
        Some(at) => format!(
            "approver unreachable since {at} ({} ago): shown from the gateway's replica\n",
            duration(at.until(now))
        ),
        None => "approver unreachable: shown from the gateway's replica\n".to_string(),
    };
    text.push_str(&format!("{user}\n"));
    if grants.is_empty() {
        text.push_str("active grants: none\n");
    } else {
        text.push_str("active grants:\n");
        for g in &grants {
            text.push_str(&format!(
                "  {:<16} grant {:<5} {} left (until {})\n",
                g.target,
                g.id,
                duration(g.remaining(now)),
                g.expires_at
            ));
        }
    }
    text.push_str("pending requests: not known here (the approver keeps them)\n");
    text.push_str(&format!(
        "targets you can request once it is back: {}\n",
        if targets.is_empty() {
            "none".to_string()
        } else {
            targets.join(", ")
        }
    ));
    text
}

/// A grant as the approver's `status --json` shows it, from what the replica holds.
fn grant_json(g: &Grant, now: Timestamp) -> serde_json::Value {
    json!({
        "id": g.id,
        "request": g.request,
        "user": g.user,
        "target": g.target,
        "policy": g.policy,
        "status": g.status(now).as_str(),
        "issued_at": g.issued_at.rfc3339(),
        "expires_at": g.expires_at.rfc3339(),
        "expires_at_ms": g.expires_at.0,
        "remaining_secs": g.remaining(now).as_secs(),
        "approvers": g.approvers,
    })
}
