//! Policy evaluation: which policy a request falls under, for how long, and whether it is
//! approved at once. Deny by default: a target no policy covers cannot be requested.

use std::time::Duration;

use crate::catalog::{Catalog, Policy, User};
use crate::model::{Approval, Request};
use crate::time::{format_duration, Timestamp};

/// What a new request becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission<'a> {
    /// Approved by policy on the spot.
    AutoApproved {
        policy: &'a Policy,
        duration: Duration,
    },
    /// Waits for `approvals` distinct approvers from the policy's groups.
    NeedsApproval {
        policy: &'a Policy,
        duration: Duration,
    },
}

impl<'a> Admission<'a> {
    pub fn policy(&self) -> &'a Policy {
        match self {
            Admission::AutoApproved { policy, .. } | Admission::NeedsApproval { policy, .. } => {
                policy
            }
        }
    }
    pub fn duration(&self) -> Duration {
        match self {
            Admission::AutoApproved { duration, .. }
            | Admission::NeedsApproval { duration, .. } => *duration,
        }
    }
}

/// Why a request is refused; each says what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("unknown target {target:?} — run `targets` to list the ones you can request")]
    UnknownTarget { target: String },
    #[error("no policy allows requests for {target:?} — ask an admin to add one")]
    NoPolicy { target: String },
    #[error(
        "{requested} is over the {max} maximum of policy {policy:?} — ask for --for {max_flag} or less"
    )]
    OverMaxDuration {
        policy: String,
        requested: String,
        max: String,
        /// `max` as `--for` takes it ("1d" where `max` says "1 day").
        max_flag: String,
    },
    #[error("the duration must be longer than zero")]
    ZeroDuration,
    #[error("policy {policy:?} requires a reason — add --reason \"…\" (a ticket or incident id)")]
    ReasonRequired { policy: String },
    #[error("policy {policy:?} only auto-approves {who}{when}, and it has no approvers")]
    NotAutoApproved {
        policy: String,
        who: String,
        when: String,
    },
    #[error("the requester {user} is no longer configured")]
    RequesterGone { user: String },
    #[error("policy {policy:?} no longer exists")]
    PolicyGone { policy: String },
    #[error("policy {policy:?} no longer covers {target:?}")]
    PolicyNoLongerCovers { policy: String, target: String },
    #[error("policy {policy:?} no longer takes approvals")]
    NoApprovers { policy: String },
    /// A pending request that the config now in force would not admit: it is closed.
    #[error(
        "request {request} no longer qualifies under the config in force: {why}; it is closed — ask again if the access is still needed"
    )]
    NoLongerQualifies { request: u64, why: Box<Refusal> },
}

fn auto_approves(policy: &Policy, user: &User, now: Timestamp) -> bool {
    policy.auto_approve.as_ref().is_some_and(|a| {
        a.groups.iter().any(|g| user.in_group(g))
            && (a.windows.is_empty() || a.windows.iter().any(|w| w.contains(now)))
    })
}

/// The limits a policy puts on any request under it, new or pending: a duration above zero
/// and within `max_duration` (refused, never shortened), and a reason where one is required.
fn within_limits(policy: &Policy, duration: Duration, reason: Option<&str>) -> Result<(), Refusal> {
    if duration.is_zero() {
        return Err(Refusal::ZeroDuration);
    }
    if duration > policy.max_duration {
        return Err(Refusal::OverMaxDuration {
            policy: policy.name.clone(),
            requested: format_duration(duration),
            max: format_duration(policy.max_duration),
            max_flag: crate::words::duration_flag(policy.max_duration),
        });
    }
    if policy.require_reason && reason.is_none_or(|r| r.trim().is_empty()) {
        return Err(Refusal::ReasonRequired {
            policy: policy.name.clone(),
        });
    }
    Ok(())
}

fn admit<'a>(
    policy: &'a Policy,
    user: &User,
    requested: Option<Duration>,
    reason: Option<&str>,
    now: Timestamp,
) -> Result<Admission<'a>, Refusal> {
    let duration = requested.unwrap_or(policy.default_duration);
    within_limits(policy, duration, reason)?;
    if auto_approves(policy, user, now) {
        return Ok(Admission::AutoApproved { policy, duration });
    }
    if !policy.approvers.is_empty() {
        return Ok(Admission::NeedsApproval { policy, duration });
    }
    let (who, when) = match &policy.auto_approve {
        Some(a) => (
            format!("groups {}", a.groups.join(", ")),
            if a.windows.is_empty() {
                String::new()
            } else {
                format!(
                    " during {}",
                    a.windows
                        .iter()
                        .map(|w| w.text.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
        ),
        None => ("nobody".into(), String::new()),
    };
    Err(Refusal::NotAutoApproved {
        policy: policy.name.clone(),
        who,
        when,
    })
}

/// Decide what a request by `user` for `target` becomes at `now`.
///
/// Among the policies covering the target (in file order), the first that approves the request
/// on the spot wins; failing that, the first under which approvers can grant it; failing that,
/// the first policy's refusal is returned, since it is the one an operator most likely meant.
pub fn evaluate<'a>(
    catalog: &'a Catalog,
    user: &User,
    target: &str,
    requested: Option<Duration>,
    reason: Option<&str>,
    now: Timestamp,
) -> Result<Admission<'a>, Refusal> {
    let target = catalog
        .targets
        .get(target)
        .ok_or_else(|| Refusal::UnknownTarget {
            target: target.to_string(),
        })?;
    let mut first_refusal = None;
    let mut needs_approval = None;
    for policy in catalog.policies_for(target) {
        match admit(policy, user, requested, reason, now) {
            Ok(a @ Admission::AutoApproved { .. }) => return Ok(a),
            Ok(a) => {
                needs_approval.get_or_insert(a);
            }
            Err(r) => {
                first_refusal.get_or_insert(r);
            }
        }
    }
    if let Some(a) = needs_approval {
        return Ok(a);
    }
    Err(first_refusal.unwrap_or(Refusal::NoPolicy {
        target: target.name.clone(),
    }))
}

/// Re-check a pending request against `catalog`, the config in force at a decision: its
/// requester still configured, its policy still there and still covering its target, its
/// duration and reason within that policy's limits now, and approvers still able to grant it.
/// The policy it is decided under is returned; a refusal closes the request, since the rules
/// it was made under are no longer the ones in force.
pub fn recheck<'a>(catalog: &'a Catalog, request: &Request) -> Result<&'a Policy, Refusal> {
    if !catalog.users.contains_key(&request.user) {
        return Err(Refusal::RequesterGone {
            user: request.user.clone(),
        });
    }
    let target = catalog
        .targets
        .get(&request.target)
        .ok_or_else(|| Refusal::UnknownTarget {
            target: request.target.clone(),
        })?;
    let policy = catalog
        .policy(&request.policy)
        .ok_or_else(|| Refusal::PolicyGone {
            policy: request.policy.clone(),
        })?;
    if !policy.selector.matches(target) {
        return Err(Refusal::PolicyNoLongerCovers {
            policy: policy.name.clone(),
            target: target.name.clone(),
        });
    }
    within_limits(policy, request.duration, request.reason.as_deref())?;
    if policy.approvers.is_empty() {
        return Err(Refusal::NoApprovers {
            policy: policy.name.clone(),
        });
    }
    Ok(policy)
}

/// The approvals of `request` that count under `policy` now: from approvers still configured
/// and still in one of its approver groups, never the requester's own.
pub fn counted_approvals<'r>(
    catalog: &Catalog,
    policy: &Policy,
    request: &'r Request,
) -> Vec<&'r Approval> {
    request
        .approvals
        .iter()
        .filter(|a| {
            catalog
                .users
                .get(&a.by)
                .is_some_and(|u| may_decide(policy, u, &request.user))
        })
        .collect()
}

/// The targets `user` can request now, each with the policy a request would fall under
/// (ignoring duration and reason): the first covering policy that has approvers or
/// auto-approves them at this time. What `status` and `targets` list, on the approver and on a
/// gateway answering from its replica.
pub fn requestable<'c>(
    catalog: &'c Catalog,
    user: &'c User,
    now: Timestamp,
) -> impl Iterator<Item = (&'c crate::catalog::Target, &'c Policy)> {
    catalog.targets.values().filter_map(move |t| {
        let p = catalog
            .policies_for(t)
            .find(|p| !p.approvers.is_empty() || auto_approves(p, user, now))?;
        Some((t, p))
    })
}

/// Whether `approver` may decide a request by `requester` under `policy`.
pub fn may_decide(policy: &Policy, approver: &User, requester: &str) -> bool {
    approver.name != requester && policy.is_approver(approver)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::time::{Clock, ManualClock};

    const ALICE: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGoHkF4rbbzfHvvGr0tPbMM1bFsHr3OxCzNd0R3dTNNb";
    const BOB: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHwH4DnFWu5s5SxdKbJLxTGIbWKs/x6HZfq9J0zS4DzT";

    fn catalog() -> Catalog {
        config::parse(&format!(
            r#"
[[users]]
name = "alice"
keys = ["{ALICE}"]
groups = ["dev"]
[[users]]
name = "bob"
keys = ["{BOB}"]
groups = ["dba"]
[[targets]]
name = "pg-prod"
kind = "tcp"
address = "10.0.0.5:5432"
labels = {{ env = "prod" }}
[[targets]]
name = "pg-staging"
kind = "tcp"
address = "10.0.0.6:5432"
labels = {{ env = "staging" }}
[[targets]]
name = "lonely"
kind = "tcp"
address = "10.0.0.9:5432"
[[policies]]
name = "prod"
match = {{ env = "prod" }}
approvers = ["dba"]
approvals = 2
max_duration = "4h"
default_duration = "1h"
require_reason = true
[[policies]]
name = "staging"
match = {{ env = "staging" }}
auto_approve = {{ groups = ["dev"], windows = ["Mon-Fri 08:00-18:00 UTC"] }}
max_duration = "8h"
default_duration = "2h"
"#
        ))
        .unwrap()
        .catalog
    }

    // 2026-11-23 is a Monday.
    const MONDAY_NOON: Timestamp = Timestamp(1_795_392_000_000 + 12 * 3_600_000);
    const SATURDAY_NOON: Timestamp = Timestamp(1_795_392_000_000 + (5 * 24 + 12) * 3_600_000);

    #[test]
    fn deny_by_default() {
        let c = catalog();
        let alice = &c.users["alice"];
        assert!(matches!(
            evaluate(&c, alice, "lonely", None, None, MONDAY_NOON),
            Err(Refusal::NoPolicy { .. })
        ));
        assert!(matches!(
            evaluate(&c, alice, "nope", None, None, MONDAY_NOON),
            Err(Refusal::UnknownTarget { .. })
        ));
    }

    #[test]
    fn max_duration_refused_not_shortened() {
        let c = catalog();
        let alice = &c.users["alice"];
        let e = evaluate(
            &c,
            alice,
            "pg-prod",
            Some(Duration::from_secs(5 * 3600)),
            Some("INC-1"),
            MONDAY_NOON,
        )
        .unwrap_err();
        assert!(e.to_string().contains("over the 4h maximum"), "{e}");
        let ok = evaluate(&c, alice, "pg-prod", None, Some("INC-1"), MONDAY_NOON).unwrap();
        assert_eq!(ok.duration(), Duration::from_secs(3600), "default_duration");
    }

    #[test]
    fn a_max_of_days_reads_in_words_and_suggests_a_flag_that_parses() {
        let mut c = catalog();
        c.policies[0].max_duration = Duration::from_secs(86_400);
        let alice = &c.users["alice"];
        let e = evaluate(
            &c,
            alice,
            "pg-prod",
            Some(Duration::from_secs(25 * 3600)),
            Some("INC-1"),
            MONDAY_NOON,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("1 day 1h is over the 1 day maximum") && e.contains("--for 1d or less"),
            "{e}"
        );
    }

    #[test]
    fn reason_required() {
        let c = catalog();
        let alice = &c.users["alice"];
        for reason in [None, Some("  ")] {
            assert!(matches!(
                evaluate(&c, alice, "pg-prod", None, reason, MONDAY_NOON),
                Err(Refusal::ReasonRequired { .. })
            ));
        }
    }

    #[test]
    fn auto_approval_follows_the_window_and_the_group() {
        let c = catalog();
        let clock = ManualClock::new(MONDAY_NOON);
        let alice = &c.users["alice"];
        let bob = &c.users["bob"];
        assert!(matches!(
            evaluate(&c, alice, "pg-staging", None, None, clock.now()),
            Ok(Admission::AutoApproved { .. })
        ));
        clock.set(SATURDAY_NOON);
        let e = evaluate(&c, alice, "pg-staging", None, None, clock.now()).unwrap_err();
        assert!(e.to_string().contains("Mon-Fri 08:00-18:00 UTC"), "{e}");
        clock.set(MONDAY_NOON);
        assert!(matches!(
            evaluate(&c, bob, "pg-staging", None, None, clock.now()),
            Err(Refusal::NotAutoApproved { .. })
        ));
    }

    #[test]
    fn approvers_exclude_the_requester() {
        let c = catalog();
        let prod = c.policy("prod").unwrap();
        assert!(may_decide(prod, &c.users["bob"], "alice"));
        assert!(!may_decide(prod, &c.users["bob"], "bob"));
        assert!(!may_decide(prod, &c.users["alice"], "bob"));
    }

    #[test]
    fn auto_approving_policy_wins_over_an_earlier_manual_one() {
        let mut c = catalog();
        let mut auto = c.policy("staging").unwrap().clone();
        auto.name = "prod-oncall".into();
        auto.selector = c.policy("prod").unwrap().selector.clone();
        auto.auto_approve.as_mut().unwrap().windows.clear();
        c.policies.push(auto);
        let a = evaluate(&c, &c.users["alice"], "pg-prod", None, None, MONDAY_NOON).unwrap();
        assert_eq!(a.policy().name, "prod-oncall");
    }

    fn pending(c: &Catalog, approvers: &[&str]) -> Request {
        let a = evaluate(
            c,
            &c.users["alice"],
            "pg-prod",
            None,
            Some("INC-1"),
            MONDAY_NOON,
        )
        .unwrap();
        Request {
            id: 7,
            user: "alice".into(),
            target: "pg-prod".into(),
            policy: a.policy().name.clone(),
            duration: a.duration(),
            reason: Some("INC-1".into()),
            created_at: MONDAY_NOON,
            expires_at: MONDAY_NOON.plus(Duration::from_secs(3600)),
            approvals: approvers
                .iter()
                .map(|by| Approval {
                    by: (*by).into(),
                    at: MONDAY_NOON,
                    note: None,
                })
                .collect(),
            needed: a.policy().approvals,
            state: crate::model::RequestState::Pending,
            decided_at: None,
        }
    }

    #[test]
    fn a_pending_request_is_rechecked_against_the_catalog_in_force() {
        let c = catalog();
        let r = pending(&c, &[]);
        assert_eq!(recheck(&c, &r).unwrap().name, "prod");

        // Tighter limits under the same policy: refused, never shortened.
        let mut tighter = c.clone();
        tighter.policies[0].max_duration = Duration::from_secs(600);
        let e = recheck(&tighter, &r).unwrap_err();
        assert!(matches!(e, Refusal::OverMaxDuration { .. }), "{e}");
        let mut no_reason = r.clone();
        no_reason.reason = None;
        assert!(matches!(
            recheck(&c, &no_reason),
            Err(Refusal::ReasonRequired { .. })
        ));

        // The target relabelled out of the policy, the policy gone, its approvers gone.
        let mut moved = c.clone();
        if let Some(t) = moved.targets.get_mut("pg-prod") {
            t.labels.insert("env".into(), "staging".into());
        }
        assert!(matches!(
            recheck(&moved, &r),
            Err(Refusal::PolicyNoLongerCovers { .. })
        ));
        let mut gone = c.clone();
        gone.policies.remove(0);
        assert!(matches!(
            recheck(&gone, &r),
            Err(Refusal::PolicyGone { .. })
        ));
        let mut nobody = c.clone();
        nobody.policies[0].approvers.clear();
        assert!(matches!(
            recheck(&nobody, &r),
            Err(Refusal::NoApprovers { .. })
        ));

        // The requester removed.
        let mut left = c.clone();
        left.users.remove("alice");
        let e = recheck(&left, &r).unwrap_err();
        assert_eq!(e.to_string(), "the requester alice is no longer configured");
    }

    #[test]
    fn only_approvals_from_current_approvers_count() {
        let c = catalog();
        // bob is a dba; alice is the requester; nobody is not configured.
        let r = pending(&c, &["bob", "alice", "nobody"]);
        let prod = c.policy("prod").unwrap();
        let counted: Vec<&str> = counted_approvals(&c, prod, &r)
            .iter()
            .map(|a| a.by.as_str())
            .collect();
        assert_eq!(counted, vec!["bob"]);
        // bob moved out of dba: his approval no longer counts.
        let mut moved = c.clone();
        if let Some(b) = moved.users.get_mut("bob") {
            b.groups = ["dev".to_string()].into_iter().collect();
        }
        assert!(counted_approvals(&moved, moved.policy("prod").unwrap(), &r).is_empty());
    }
}
