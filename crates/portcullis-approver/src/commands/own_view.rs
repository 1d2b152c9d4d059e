//! A user's own view: `status`, `whoami` and `targets`. Read-only, from the in-memory mirror
//! and the catalog in force; nothing here reads the store.

use portcullis_core::catalog::User;
use portcullis_core::model::{Grant, Request};
use portcullis_core::time::format_duration;
use serde_json::json;

use super::{out, Reply};
use crate::app::Approver;
use crate::render::{self, clean};

/// `status`: active grants with the time they have left, pending requests, what to request.
pub(super) fn status(app: &Approver, user: &User, json: bool) -> Reply {
    let now = app.now();
    let (active, pending): (Vec<Grant>, Vec<Request>) = app
        .live
        .read()
        .map(|l| {
            (
                l.grants
                    .for_user(&user.name)
                    .filter(|g| g.is_active(now))
                    .cloned()
                    .collect(),
                l.pending
                    .values()
                    .filter(|r| r.user == user.name)
                    .cloned()
                    .collect(),
            )
        })
        .unwrap_or_default();
    let mut active = active;
    active.sort_by_key(|g| g.id);
    let targets = requestable(app, user);
    let value = json!({
        "user": user.name,
        "grants": active.iter().map(|g| render::grant_json(g, now)).collect::<Vec<_>>(),
        "pending": pending.iter().map(|r| render::request_json(r, now)).collect::<Vec<_>>(),
        "targets": targets.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>(),
    });
    let mut text = format!("{}\n", user.name);
    if active.is_empty() {
        text.push_str("active grants: none\n");
    } else {
        text.push_str("active grants:\n");
        for g in &active {
            text.push_str(&format!(
                "  {:<16} grant {:<5} {} left (until {})\n",
                clean(&g.target),
                g.id,
                format_duration(g.remaining(now)),
                g.expires_at
            ));
        }
    }
    if !pending.is_empty() {
        text.push_str("pending requests:\n");
        for r in &pending {
            text.push_str(&format!(
                "  {:<16} request {:<5} {}/{} approvals\n",
                clean(&r.target),
                r.id,
                r.approvals.len(),
                r.needed
            ));
        }
    }
    text.push_str(&format!(
        "targets you can request: {}\n",
        if targets.is_empty() {
            "none".to_string()
        } else {
            targets
                .iter()
                .map(|(t, _)| t.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        }
    ));
    out(json, value, text)
}

/// Targets with the policy a request by `user` would fall under (ignoring duration and reason).
fn requestable(app: &Approver, user: &User) -> Vec<(String, String)> {
    let catalog = app.catalog();
    let now = app.now();
    catalog
        .targets
        .values()
        .filter_map(|t| {
            let p = catalog.policies_for(t).find(|p| {
                !p.approvers.is_empty()
                    || p.auto_approve.as_ref().is_some_and(|a| {
                        a.groups.iter().any(|g| user.in_group(g))
                            && (a.windows.is_empty() || a.windows.iter().any(|w| w.contains(now)))
                    })
            })?;
            Some((t.name.clone(), p.name.clone()))
        })
        .collect()
}

/// `whoami`: the user, the key they proved, their groups, the policies they approve for.
pub(super) fn whoami(app: &Approver, key: &str, user: &User, json: bool) -> Reply {
    let catalog = app.catalog();
    let approves: Vec<&str> = catalog
        .policies
        .iter()
        .filter(|p| p.is_approver(user))
        .map(|p| p.name.as_str())
        .collect();
    let groups: Vec<&str> = user.groups.iter().map(|g| g.as_str()).collect();
    out(
        json,
        json!({"user": user.name, "groups": groups, "key": key, "approver_of": approves}),
        format!(
            "{} (key {})\ngroups: {}\napprover of policies: {}\n",
            user.name,
            key,
            if groups.is_empty() {
                "none".into()
            } else {
                groups.join(", ")
            },
            if approves.is_empty() {
                "none".into()
            } else {
                approves.join(", ")
            }
        ),
    )
}

/// `targets`: what `user` can request, under which policy, approved how.
pub(super) fn targets(app: &Approver, user: &User, json: bool) -> Reply {
    let catalog = app.catalog();
    let reachable = requestable(app, user);
    let mut rows = Vec::new();
    let mut text = String::new();
    for t in catalog.targets.values() {
        let policy = reachable
            .iter()
            .find(|(n, _)| n == &t.name)
            .map(|(_, p)| p.clone());
        let Some(policy) = policy else { continue };
        let how = catalog
            .policy(&policy)
            .map(|p| {
                if p.auto_approve
                    .as_ref()
                    .is_some_and(|a| a.groups.iter().any(|g| user.in_group(g)))
                {
                    "auto-approved for you".to_string()
                } else {
                    format!("{} approval(s) from {}", p.approvals, p.approvers.join("/"))
                }
            })
            .unwrap_or_default();
        text.push_str(&format!(
            "{:<16} {:<4} policy {:<20} {}\n",
            t.name,
            t.kind.as_str(),
            policy,
            how
        ));
        rows.push(json!({"name": t.name, "kind": t.kind.as_str(), "labels": t.labels, "policy": policy, "approval": how}));
    }
    if rows.is_empty() {
        text.push_str("no targets you can request\n");
    }
    out(json, json!({"targets": rows}), text)
}
