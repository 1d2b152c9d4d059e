//! A user's own view: `status`, `whoami`, `targets`.

use portcullis_core::catalog::Target;
use portcullis_core::model::{Grant, Request};
use portcullis_core::Timestamp;
use serde_json::json;

use super::words::{count, duration};
use super::{clean, grant_json, out, request_json, Reply};

/// `status`: `user`'s active grants, pending requests, and the targets they can request.
pub fn status(
    user: &str,
    active: &[Grant],
    pending: &[Request],
    targets: &[&str],
    now: Timestamp,
    json: bool,
) -> Reply {
    let value = json!({
        "user": user,
        "grants": active.iter().map(|g| grant_json(g, now)).collect::<Vec<_>>(),
        "pending": pending.iter().map(|r| request_json(r, now)).collect::<Vec<_>>(),
        "targets": targets,
    });
    let mut text = format!("{user}\n");
    if active.is_empty() {
        text.push_str("active grants: none\n");
    } else {
        text.push_str("active grants:\n");
        for g in active {
            text.push_str(&format!(
                "  {:<16} grant {:<5} {} left (until {})\n",
                clean(&g.target),
                g.id,
                duration(g.remaining(now)),
                g.expires_at
            ));
        }
    }
    if !pending.is_empty() {
        text.push_str("pending requests:\n");
        for r in pending {
            text.push_str(&format!(
                "  {:<16} request {:<5} {}/{}\n",
                clean(&r.target),
                r.id,
                r.approvals.len(),
                count(r.needed.into(), "approval", "approvals")
            ));
        }
    }
    text.push_str(&format!(
        "targets you can request: {}\n",
        none_or_joined(targets, ", ")
    ));
    out(json, value, text)
}

/// `whoami`: the user, the key they proved, their groups, the policies they approve for.
pub fn whoami(user: &str, key: &str, groups: &[&str], approver_of: &[&str], json: bool) -> Reply {
    out(
        json,
        json!({"user": user, "groups": groups, "key": key, "approver_of": approver_of}),
        format!(
            "{user} (key {key})\ngroups: {}\napprover of policies: {}\n",
            none_or_joined(groups, ", "),
            none_or_joined(approver_of, ", ")
        ),
    )
}

/// How a request for a target would be approved, for the user asking.
pub enum Approval<'a> {
    /// The policy auto-approves one of the user's groups.
    AutoForYou,
    By {
        approvals: u32,
        approvers: &'a [String],
    },
}

impl Approval<'_> {
    fn describe(&self) -> String {
        match self {
            Approval::AutoForYou => "auto-approved for you".to_string(),
            Approval::By {
                approvals,
                approvers,
            } => format!(
                "{} from {}",
                count((*approvals).into(), "approval", "approvals"),
                approvers.join("/")
            ),
        }
    }
}

/// One target a user can request, under the policy that covers it.
pub struct Requestable<'a> {
    pub target: &'a Target,
    pub policy: &'a str,
    pub approval: Approval<'a>,
}

/// `targets`.
pub fn targets(rows: &[Requestable<'_>], json: bool) -> Reply {
    let mut text = String::new();
    let mut values = Vec::with_capacity(rows.len());
    for row in rows {
        let t = row.target;
        let how = row.approval.describe();
        text.push_str(&format!(
            "{:<16} {:<4} policy {:<20} {}\n",
            t.name,
            t.kind.as_str(),
            row.policy,
            how
        ));
        values.push(json!({"name": t.name, "kind": t.kind.as_str(), "labels": t.labels, "policy": row.policy, "approval": how}));
    }
    if rows.is_empty() {
        text.push_str("no targets you can request\n");
    }
    out(json, json!({"targets": values}), text)
}

fn none_or_joined(items: &[&str], sep: &str) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(sep)
    }
}
