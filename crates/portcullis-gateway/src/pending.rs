//! What a session refused for want of a grant is told when the user has already asked for one:
//! "request 17 is pending … wait for it: ssh -p 2222 alice@HOST wait 17", rather than a
//! suggestion to ask again.
//!
//! The gateway cannot know this by itself: the approver's stream carries the catalog, grants
//! and kills, never requests (a gateway holds what it enforces, nothing it would have to keep
//! in step with every request and decision). So the refusal asks the approver, over the
//! commands connection as the user (`requests --json`: their own, by their rights), bounded by
//! [`ASK_LIMIT`]. Only a refusal waits for it, after the grant's grace period, never a session
//! that has a grant nor any enforcement; and when the approver is away or slow the refusal says
//! what it always said.

use std::time::Duration;

use portcullis_core::words::count;

use crate::command_relay::{self, Asker};
use crate::session::{Denial, Holder};
use crate::state::GatewayState;

/// How long a refusal waits for the approver's answer before it goes without it.
const ASK_LIMIT: Duration = Duration::from_secs(2);

/// What to tell `who` for `denial`: for "no grant", the request they are waiting on if the
/// approver says there is one.
pub(crate) async fn refusal(gw: &GatewayState, who: &Holder, denial: &Denial) -> String {
    let Denial::NoGrant {
        user,
        target,
        reach,
    } = denial
    else {
        return denial.message();
    };
    let asker = Asker {
        user: who.user.clone(),
        fingerprint: who.proof(),
        reach: reach.clone(),
        pty: false,
    };
    let answer = command_relay::ask(gw, &asker, &["requests", "--json"], ASK_LIMIT).await;
    match answer.and_then(|a| pending_on(&a, user, target)) {
        Some(p) => format!(
            "portcullis: no active grant for {user} on {target}: request {} is pending ({}/{}) - wait for it: {reach} wait {}",
            p.id,
            p.approvals,
            count(p.needed, "approval", "approvals"),
            p.id
        ),
        None => denial.message(),
    }
}

/// A pending request, as much of it as a refusal says.
#[derive(Debug, PartialEq, Eq)]
struct Pending {
    id: u64,
    approvals: u64,
    needed: u64,
}

/// The oldest of `user`'s pending requests for `target` in a `requests --json` answer (which
/// also lists requests an approver may decide: only the user's own count).
fn pending_on(answer: &[u8], user: &str, target: &str) -> Option<Pending> {
    let v: serde_json::Value = serde_json::from_slice(answer).ok()?;
    v["requests"]
        .as_array()?
        .iter()
        .filter(|r| r["user"] == user && r["target"] == target && r["state"] == "pending")
        .filter_map(|r| {
            Some(Pending {
                id: r["id"].as_u64()?,
                approvals: r["approvals"].as_array().map_or(0, |a| a.len() as u64),
                needed: r["needed"].as_u64()?,
            })
        })
        .min_by_key(|p| p.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_users_own_pending_request_on_that_target() {
        let answer = serde_json::json!({"requests": [
            {"id": 9, "user": "bob", "target": "db", "state": "pending", "approvals": [], "needed": 2},
            {"id": 11, "user": "alice", "target": "web", "state": "pending", "approvals": [], "needed": 1},
            {"id": 12, "user": "alice", "target": "db", "state": "pending", "approvals": [{"by": "carol"}], "needed": 2},
            {"id": 14, "user": "alice", "target": "db", "state": "pending", "approvals": [], "needed": 2},
        ]})
        .to_string();
        assert_eq!(
            pending_on(answer.as_bytes(), "alice", "db"),
            Some(Pending {
                id: 12,
                approvals: 1,
                needed: 2
            })
        );
        assert_eq!(pending_on(answer.as_bytes(), "dave", "db"), None);
        assert_eq!(pending_on(b"not json", "alice", "db"), None);
    }
}
