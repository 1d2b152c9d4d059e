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
mod tests {
    //! One test per row of SPEC's table, allowed and refused, in the table's order.

    use std::collections::BTreeSet;
    use std::time::Duration;

    use portcullis_core::catalog::{Policy, Selector};

    use super::*;

    fn user(name: &str, groups: &[&str]) -> User {
        User {
            name: name.into(),
            keys: Vec::new(),
            groups: groups
                .iter()
                .map(|g| g.to_string())
                .collect::<BTreeSet<_>>(),
        }
    }

    /// `prod` is approved by dba and sre; `staging` auto-approves and has no approvers.
    fn catalog() -> Catalog {
        let policy = |name: &str, approvers: &[&str]| Policy {
            name: name.into(),
            selector: Selector {
                labels: Default::default(),
                targets: vec![format!("{name}-db")],
            },
            approvers: approvers.iter().map(|a| a.to_string()).collect(),
            approvals: 1,
            max_duration: Duration::from_secs(3600),
            default_duration: Duration::from_secs(3600),
            require_reason: false,
            auto_approve: None,
            record_data: false,
        };
        Catalog {
            policies: vec![policy("prod", &["dba", "sre"]), policy("staging", &[])],
            ..Catalog::default()
        }
    }

    fn alice() -> User {
        user("alice", &["dev"])
    }
    fn bob_dba() -> User {
        user("bob", &["dba"])
    }
    fn dave() -> User {
        user("dave", &["dev"])
    }
    fn ada_admin() -> User {
        user("ada", &["admins"])
    }
    fn audrey_auditor() -> User {
        user("audrey", &["auditors"])
    }
    fn everyone() -> Vec<User> {
        vec![alice(), bob_dba(), dave(), ada_admin(), audrey_auditor()]
    }

    fn alices_request(policy: &str) -> RequestFacts<'_> {
        RequestFacts {
            id: 17,
            requester: "alice",
            policy,
        }
    }
    fn alices_grant(policy: &str) -> GrantFacts<'_> {
        GrantFacts {
            id: 17,
            holder: "alice",
            policy,
        }
    }

    fn may(u: &User, action: Action<'_>) -> Result<(), Denied> {
        authorize(u, &action, &catalog())
    }

    #[test]
    fn request_any_user() {
        for u in everyone() {
            assert_eq!(may(&u, Action::Request), Ok(()), "{}", u.name);
        }
    }

    #[test]
    fn requests_requester_sees_own_and_approvers_those_they_may_decide() {
        let prod = alices_request("prod");
        assert_eq!(may(&alice(), Action::SeeRequest(prod)), Ok(()));
        assert_eq!(may(&bob_dba(), Action::SeeRequest(prod)), Ok(()));
        assert_eq!(may(&ada_admin(), Action::SeeRequest(prod)), Ok(()));
        assert_eq!(
            may(&dave(), Action::SeeRequest(prod)),
            Err(Denied::UnseenRequest { id: 17 })
        );
        assert!(may(&audrey_auditor(), Action::SeeRequest(prod)).is_err());
        // An approver's own request is not one they may decide, but it is their own.
        let bobs = RequestFacts {
            requester: "bob",
            ..prod
        };
        assert_eq!(may(&bob_dba(), Action::SeeRequest(bobs)), Ok(()));
        // Approvers of another policy see nothing of this one.
        assert!(may(&bob_dba(), Action::SeeRequest(alices_request("staging"))).is_err());
        // A policy gone takes its approvers' view with it.
        assert!(may(&bob_dba(), Action::SeeRequest(alices_request("gone"))).is_err());
        assert_eq!(
            may(&alice(), Action::SeeRequest(alices_request("gone"))),
            Ok(())
        );
    }

    #[test]
    fn approve_an_approver_of_the_matching_policy_never_the_requester() {
        let prod = alices_request("prod");
        assert_eq!(may(&bob_dba(), Action::Approve(prod)), Ok(()));
        assert_eq!(may(&user("sam", &["sre"]), Action::Approve(prod)), Ok(()));
        let own = may(&alice(), Action::Approve(prod)).unwrap_err();
        assert!(own
            .to_string()
            .starts_with("you cannot approve your own request 17"));
        // Being an approver does not make one's own request approvable.
        let alice_in_dba = user("alice", &["dba"]);
        assert!(matches!(
            may(&alice_in_dba, Action::Approve(prod)),
            Err(Denied::OwnRequest { .. })
        ));
        // Admins are not approvers unless a policy names their group.
        for u in [dave(), ada_admin(), audrey_auditor()] {
            let e = may(&u, Action::Approve(prod)).unwrap_err();
            assert_eq!(
                e.to_string(),
                "not an approver: requests under policy \"prod\" are decided by members of dba, sre"
            );
        }
        // A policy without approvers has nobody who may approve.
        assert!(may(&bob_dba(), Action::Approve(alices_request("staging"))).is_err());
        // A policy gone: the write path closes the request, so the table does not refuse.
        assert_eq!(
            may(&dave(), Action::Approve(alices_request("gone"))),
            Ok(())
        );
        assert!(may(&alice(), Action::Approve(alices_request("gone"))).is_err());
    }

    #[test]
    fn deny_as_approve() {
        let prod = alices_request("prod");
        assert_eq!(may(&bob_dba(), Action::Deny(prod)), Ok(()));
        let own = may(&alice(), Action::Deny(prod)).unwrap_err();
        assert!(own
            .to_string()
            .starts_with("you cannot deny your own request 17"));
        assert!(matches!(
            may(&ada_admin(), Action::Deny(prod)),
            Err(Denied::NotApprover { .. })
        ));
    }

    #[test]
    fn cancel_the_requester_only() {
        let prod = alices_request("prod");
        assert_eq!(may(&alice(), Action::Cancel(prod)), Ok(()));
        // Those who may see it are told who may; the rest are told nothing of it.
        for u in [bob_dba(), ada_admin()] {
            let e = may(&u, Action::Cancel(prod)).unwrap_err();
            assert_eq!(
                e.to_string(),
                "only its requester may cancel request 17 (alice's); approvers decide it with `deny`"
            );
        }
        for u in [dave(), audrey_auditor()] {
            assert_eq!(
                may(&u, Action::Cancel(prod)),
                Err(Denied::UnseenRequest { id: 17 })
            );
        }
        // A policy gone does not stop the requester withdrawing.
        assert_eq!(
            may(&alice(), Action::Cancel(alices_request("gone"))),
            Ok(())
        );
    }

    #[test]
    fn wait_requester_and_approvers() {
        let prod = alices_request("prod");
        assert_eq!(may(&alice(), Action::Wait(prod)), Ok(()));
        assert_eq!(may(&bob_dba(), Action::Wait(prod)), Ok(()));
        assert_eq!(may(&ada_admin(), Action::Wait(prod)), Ok(()));
        let e = may(&dave(), Action::Wait(prod)).unwrap_err();
        assert!(matches!(
            ApproverError::from(e),
            ApproverError::NotFound(m) if m.starts_with("no request 17 that you can see")
        ));
    }

    #[test]
    fn grants_own_admins_all() {
        for u in everyone() {
            assert_eq!(may(&u, Action::ListGrants { of: None }), Ok(()));
            let name = u.name.clone();
            assert_eq!(may(&u, Action::ListGrants { of: Some(&name) }), Ok(()));
        }
        assert_eq!(
            may(&ada_admin(), Action::ListGrants { of: Some("bob") }),
            Ok(())
        );
        let e = may(&alice(), Action::ListGrants { of: Some("bob") }).unwrap_err();
        assert_eq!(
            e.to_string(),
            "only admins may list another user's grants (alice asked for bob)"
        );
        // Rows: the holder, admins, and approvers of the grant's policy.
        let prod = alices_grant("prod");
        for u in [alice(), ada_admin(), bob_dba()] {
            assert_eq!(may(&u, Action::SeeGrant(prod)), Ok(()), "{}", u.name);
        }
        for u in [dave(), audrey_auditor()] {
            assert_eq!(
                may(&u, Action::SeeGrant(prod)),
                Err(Denied::UnseenGrant { id: 17 })
            );
        }
    }

    #[test]
    fn revoke_admins_approvers_of_that_policy_and_the_holder() {
        let prod = alices_grant("prod");
        for u in [ada_admin(), bob_dba(), alice()] {
            assert_eq!(may(&u, Action::Revoke(prod)), Ok(()), "{}", u.name);
        }
        for u in [dave(), audrey_auditor()] {
            let e = may(&u, Action::Revoke(prod)).unwrap_err();
            assert_eq!(
                e.to_string(),
                "`revoke` of grant 17 is for admins and approvers of policy \"prod\""
            );
        }
        // Approvers of another policy are not approvers of this one.
        assert!(may(&bob_dba(), Action::Revoke(alices_grant("staging"))).is_err());
        assert!(may(&bob_dba(), Action::Revoke(alices_grant("gone"))).is_err());
        assert_eq!(
            may(&ada_admin(), Action::Revoke(alices_grant("gone"))),
            Ok(())
        );
    }

    #[test]
    fn sessions_admins_and_auditors() {
        for u in [ada_admin(), audrey_auditor()] {
            assert_eq!(may(&u, Action::Sessions), Ok(()));
        }
        for u in [alice(), bob_dba(), dave()] {
            let e = may(&u, Action::Sessions).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "`sessions` is for members of admins or auditors; {} is neither",
                    u.name
                )
            );
        }
    }

    #[test]
    fn kill_admins() {
        assert_eq!(may(&ada_admin(), Action::Kill), Ok(()));
        for u in [alice(), bob_dba(), audrey_auditor()] {
            let e = may(&u, Action::Kill).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("`kill` is for members of admins; {} is not one", u.name)
            );
        }
    }

    #[test]
    fn status_whoami_targets_any_user() {
        for u in everyone() {
            assert_eq!(may(&u, Action::OwnView), Ok(()));
        }
    }

    #[test]
    fn reload_admins() {
        assert_eq!(may(&ada_admin(), Action::Reload), Ok(()));
        for u in [alice(), bob_dba(), audrey_auditor()] {
            assert!(matches!(
                may(&u, Action::Reload),
                Err(Denied::NotAdmin { what: "reload", .. })
            ));
        }
    }

    #[test]
    fn audit_admins_and_auditors() {
        for u in [ada_admin(), audrey_auditor()] {
            assert_eq!(may(&u, Action::Audit), Ok(()));
        }
        for u in [alice(), bob_dba(), dave()] {
            assert!(matches!(
                may(&u, Action::Audit),
                Err(Denied::NotAuditor { what: "audit", .. })
            ));
        }
    }

    #[test]
    fn refusals_are_forbidden_and_unseen_objects_not_found() {
        let forbidden = ApproverError::from(Denied::GatewaysOnly);
        assert!(matches!(forbidden, ApproverError::Forbidden(_)));
        let unseen = ApproverError::from(Denied::UnseenGrant { id: 3 });
        assert!(matches!(unseen, ApproverError::NotFound(_)));
    }

    #[test]
    fn gateways_run_their_stream_reports_and_relays_users_everything_else() {
        let gateway = Principal::Gateway("gw-1".into());
        let alice = Principal::User("alice".into());
        let watch = ControlCommand::Watch {
            since: 0,
            epoch: None,
            after: None,
            max_grant: None,
        };
        let report = ControlCommand::Report {
            seq: 1,
            instance: "0".into(),
        };
        let relay = ControlCommand::As {
            user: "alice".into(),
            key: "SHA256:x".into(),
            reach: None,
            words: vec!["status".into()],
        };
        for c in [&watch, &report, &relay] {
            assert_eq!(authorize_identity(&gateway, c), Ok(()));
            assert_eq!(authorize_identity(&alice, c), Err(Denied::GatewaysOnly));
        }
        let e = authorize_identity(&gateway, &ControlCommand::Status).unwrap_err();
        assert!(e.to_string().starts_with("gateway gw-1 may only `watch`"));
        assert_eq!(authorize_identity(&alice, &ControlCommand::Status), Ok(()));
    }
}
