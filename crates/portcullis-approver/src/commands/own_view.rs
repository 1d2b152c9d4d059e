//! A user's own view: `status`, `whoami` and `targets`. Read-only, from the in-memory mirror
//! and the catalog in force; nothing here reads the store.

use portcullis_core::catalog::User;
use portcullis_core::model::{Grant, Request};
use portcullis_core::policy::requestable;

use crate::app::Approver;
use crate::render::view::{Approval, Requestable};
use crate::render::{self, Reply};

/// `status`: active grants with the time they have left, pending requests, what to request.
pub(super) fn status(app: &Approver, user: &User, json: bool) -> Reply {
    let now = app.now();
    let (mut active, pending): (Vec<Grant>, Vec<Request>) = {
        let live = app.live.get();
        (
            live.grants
                .for_user(&user.name)
                .filter(|g| g.is_active(now))
                .cloned()
                .collect(),
            live.pending
                .values()
                .filter(|r| r.user == user.name)
                .cloned()
                .collect(),
        )
    };
    active.sort_by_key(|g| g.id);
    let catalog = app.catalog();
    let targets: Vec<&str> = requestable(&catalog, user, now)
        .map(|(t, _)| t.name.as_str())
        .collect();
    render::view::status(&user.name, &active, &pending, &targets, now, json)
}

/// `whoami`: the user, the key they proved, their groups, the policies they approve for.
pub(super) fn whoami(app: &Approver, key: &str, user: &User, json: bool) -> Reply {
    let catalog = app.catalog();
    let approver_of: Vec<&str> = catalog
        .policies
        .iter()
        .filter(|p| p.is_approver(user))
        .map(|p| p.name.as_str())
        .collect();
    let groups: Vec<&str> = user.groups.iter().map(|g| g.as_str()).collect();
    render::view::whoami(&user.name, key, &groups, &approver_of, json)
}

/// `targets`: what `user` can request, under which policy, approved how.
pub(super) fn targets(app: &Approver, user: &User, json: bool) -> Reply {
    let catalog = app.catalog();
    let rows: Vec<Requestable<'_>> = requestable(&catalog, user, app.now())
        .map(|(target, policy)| {
            let auto = policy
                .auto_approve
                .as_ref()
                .is_some_and(|a| a.groups.iter().any(|g| user.in_group(g)));
            Requestable {
                target,
                policy: &policy.name,
                approval: if auto {
                    Approval::AutoForYou
                } else {
                    Approval::By {
                        approvals: policy.approvals,
                        approvers: &policy.approvers,
                    }
                },
            }
        })
        .collect();
    render::view::targets(&rows, json)
}
