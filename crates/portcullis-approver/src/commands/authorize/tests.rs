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
