//! Who may run what: SPEC's permission table ("Control-plane commands"), and nothing else.
//!
//! [`authorize`] is pure. It takes the user as the catalog in force has them, the action with
//! the facts about its object that the table's rows depend on (a request's requester and
//! policy, a grant's holder and policy), and the catalog for the policies. It does no I/O,
//! takes no lock and reads no store: the handlers fetch the object (under the writer where a
//! decision follows) and ask here. Whether the object is in a state that allows the action
//! (already decided, already ended, policy gone for a denial) is the handler's question, not
//! this one's.
//!
//! Listings are filtered row by row with the same rules ([`Action::SeeRequest`],
//! [`Action::SeeGrant`]), so what a listing shows and what `wait` or `revoke` accepts cannot
//! drift apart.

use portcullis_core::catalog::{Catalog, Principal, User};
use portcullis_core::command::ControlCommand;
use portcullis_core::model::{Grant, Request};
use portcullis_core::policy;

use crate::errors::ApproverError;

/// What the table's request rows need to know about a request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestFacts<'a> {
    pub id: u64,
    pub requester: &'a str,
    pub policy: &'a str,
}

impl<'a> From<&'a Request> for RequestFacts<'a> {
    fn from(r: &'a Request) -> Self {
        RequestFacts {
            id: r.id,
            requester: &r.user,
            policy: &r.policy,
        }
    }
}

/// What the table's grant rows need to know about a grant.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GrantFacts<'a> {
    pub id: u64,
    pub holder: &'a str,
    pub policy: &'a str,
}

impl<'a> From<&'a Grant> for GrantFacts<'a> {
    fn from(g: &'a Grant) -> Self {
        GrantFacts {
            id: g.id,
            holder: &g.user,
            policy: &g.policy,
        }
    }
}

/// A user's command as the permission table sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Action<'a> {
    /// `request TARGET`: any user (policy then decides what they get).
    Request,
    /// One request in `requests`: the requester; those who may decide it; admins.
    SeeRequest(RequestFacts<'a>),
    /// `wait ID`: the requester, approvers (who may decide it), admins.
    Wait(RequestFacts<'a>),
    /// `approve ID`: a member of an approver group of the request's policy; never the
    /// requester.
    Approve(RequestFacts<'a>),
    /// `deny ID`: as `approve`.
    Deny(RequestFacts<'a>),
    /// `cancel ID`: the requester only. Closing someone else's request is a decision, which
    /// is `deny`'s and its approvers'; admins who are not approvers of it have no say there
    /// either.
    Cancel(RequestFacts<'a>),
    /// `grants [--user U]`: one's own; admins anyone's.
    ListGrants { of: Option<&'a str> },
    /// One grant in `grants`: its holder, approvers of its policy, admins.
    SeeGrant(GrantFacts<'a>),
    /// `revoke GRANT_ID`: admins, approvers of that policy, and the holder (giving access up
    /// is always safe; see ARCHITECTURE "Decisions and their reasons").
    Revoke(GrantFacts<'a>),
    /// `sessions [--live]`: admins, auditors.
    Sessions,
    /// `kill SESSION_ID`: admins.
    Kill,
    /// `status`, `whoami`, `targets`: any user, about themselves.
    OwnView,
    /// `reload`: admins.
    Reload,
    /// `audit log|sessions|replay|export|verify`: admins, auditors.
    Audit,
}

/// Why the table says no. The texts are what the caller reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Denied {
    #[error("`{what}` is for members of admins; {user} is not one")]
    NotAdmin { what: &'static str, user: String },
    #[error("`{what}` is for members of admins or auditors; {user} is neither")]
    NotAuditor { what: &'static str, user: String },
    #[error(
        "you cannot {verb} your own request {id} — another approver of policy {policy:?} must"
    )]
    OwnRequest {
        verb: &'static str,
        id: u64,
        policy: String,
    },
    #[error(
        "not an approver: requests under policy {policy:?} are decided by members of {groups}"
    )]
    NotApprover { policy: String, groups: String },
    #[error("only its requester may cancel request {id} ({requester}'s); approvers decide it with `deny`")]
    NotRequester { id: u64, requester: String },
    #[error("only admins may list another user's grants ({user} asked for {other})")]
    OthersGrants { user: String, other: String },
    #[error("`revoke` of grant {id} is for admins and approvers of policy {policy:?}")]
    Revoke { id: u64, policy: String },
    /// Said as "not found": who may not see a request is not told that it exists.
    #[error(
        "no request {id} that you can see — `requests --all` lists yours and those you may decide"
    )]
    UnseenRequest { id: u64 },
    /// Said as "not found", like a request.
    #[error("no grant {id} that you can see — `grants` lists yours")]
    UnseenGrant { id: u64 },
    #[error("gateway {gateway} may only `watch`, `report` and `as`; commands run as the users it authenticated")]
    GatewayCommandsOnly { gateway: String },
    #[error("`watch`, `report` and `as` are only for [[gateways]] identities")]
    GatewaysOnly,
}

impl From<Denied> for ApproverError {
    fn from(d: Denied) -> Self {
        match d {
            Denied::UnseenRequest { .. } | Denied::UnseenGrant { .. } => {
                ApproverError::NotFound(d.to_string())
            }
            _ => ApproverError::Forbidden(d.to_string()),
        }
    }
}

/// Whether `user` may take `action`, under `catalog`'s policies.
pub(crate) fn authorize(user: &User, action: &Action<'_>, catalog: &Catalog) -> Result<(), Denied> {
    let admins = |what| allow(user.is_admin(), || not_admin(user, what));
    let auditors = |what| allow(user.is_auditor(), || not_auditor(user, what));
    match *action {
        Action::Request | Action::OwnView => Ok(()),
        Action::SeeRequest(r) | Action::Wait(r) => allow(may_see_request(user, r, catalog), || {
            Denied::UnseenRequest { id: r.id }
        }),
        Action::Approve(r) => decide(user, r, catalog, "approve"),
        Action::Deny(r) => decide(user, r, catalog, "deny"),
        Action::Cancel(r) if r.requester == user.name => Ok(()),
        // Who may not see it is not told that it exists.
        Action::Cancel(r) => Err(if may_see_request(user, r, catalog) {
            Denied::NotRequester {
                id: r.id,
                requester: r.requester.to_string(),
            }
        } else {
            Denied::UnseenRequest { id: r.id }
        }),
        Action::ListGrants { of } => match of {
            Some(other) if other != user.name && !user.is_admin() => Err(Denied::OthersGrants {
                user: user.name.clone(),
                other: other.to_string(),
            }),
            _ => Ok(()),
        },
        Action::SeeGrant(g) => allow(holds_or_oversees(user, g, catalog), || {
            Denied::UnseenGrant { id: g.id }
        }),
        Action::Revoke(g) => allow(holds_or_oversees(user, g, catalog), || Denied::Revoke {
            id: g.id,
            policy: g.policy.to_string(),
        }),
        Action::Sessions => auditors("sessions"),
        Action::Kill => admins("kill"),
        Action::Reload => admins("reload"),
        Action::Audit => auditors("audit"),
    }
}

/// Which kind of identity may run `command` at all: a gateway only its stream, its reports
/// and the envelope it relays users' commands in; a user everything else.
pub(crate) fn authorize_identity(
    principal: &Principal,
    command: &ControlCommand,
) -> Result<(), Denied> {
    let gateway_command = matches!(
        command,
        ControlCommand::Watch { .. } | ControlCommand::Report { .. } | ControlCommand::As { .. }
    );
    match principal {
        Principal::Gateway(_) if gateway_command => Ok(()),
        Principal::Gateway(gateway) => Err(Denied::GatewayCommandsOnly {
            gateway: gateway.clone(),
        }),
        Principal::User(_) if gateway_command => Err(Denied::GatewaysOnly),
        Principal::User(_) => Ok(()),
    }
}

fn allow(yes: bool, no: impl FnOnce() -> Denied) -> Result<(), Denied> {
    if yes {
        Ok(())
    } else {
        Err(no())
    }
}

fn not_admin(user: &User, what: &'static str) -> Denied {
    Denied::NotAdmin {
        what,
        user: user.name.clone(),
    }
}

fn not_auditor(user: &User, what: &'static str) -> Denied {
    Denied::NotAuditor {
        what,
        user: user.name.clone(),
    }
}

fn may_see_request(user: &User, r: RequestFacts<'_>, catalog: &Catalog) -> bool {
    r.requester == user.name
        || user.is_admin()
        || catalog
            .policy(r.policy)
            .is_some_and(|p| policy::may_decide(p, user, r.requester))
}

/// The requester never decides; otherwise an approver group of the policy does. A policy
/// that is gone leaves nobody to refuse here: the write path then closes the request on an
/// approval (it no longer qualifies) and refuses a denial as having nothing to decide under.
fn decide(
    user: &User,
    r: RequestFacts<'_>,
    catalog: &Catalog,
    verb: &'static str,
) -> Result<(), Denied> {
    if r.requester == user.name {
        return Err(Denied::OwnRequest {
            verb,
            id: r.id,
            policy: r.policy.to_string(),
        });
    }
    match catalog.policy(r.policy) {
        Some(p) if !p.is_approver(user) => Err(Denied::NotApprover {
            policy: r.policy.to_string(),
            groups: p.approvers.join(", "),
        }),
        Some(_) | None => Ok(()),
    }
}

fn holds_or_oversees(user: &User, g: GrantFacts<'_>, catalog: &Catalog) -> bool {
    g.holder == user.name
        || user.is_admin()
        || catalog
            .policy(g.policy)
            .is_some_and(|p| p.is_approver(user))
}

#[cfg(test)]
mod tests;
