//! What `portcullis check` warns about: a configuration that is valid but cannot work as
//! written. A policy that needs more approvals than it has approvers, an approver group nobody
//! is in, a requester whose own requests only they could approve (the lone admin): the file
//! still loads, since an operator may be half-way through adding people, but nothing waiting
//! under such a policy is ever granted. And a key listed for a user or gateway that a user CA
//! revokes: it logs in as nobody, and the file loads so that the revocation takes effect.
//!
//! Read from the validated [`Catalog`], with the same rule the approver counts approvals by
//! ([`policy::may_decide`]: members of an approver group, never the requester). Must not refuse
//! a file or change the catalog: refusals are problems, found by the sections.

use std::fmt;

use crate::catalog::{Catalog, Policy, Target, User};
use crate::policy;

/// Something in a valid configuration that cannot work as written.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Warning {
    /// An approver group of a policy has no members.
    EmptyApproverGroup {
        /// The policy's place in the file and its name.
        policy: (usize, String),
        /// The group's place in the policy's `approvers`.
        index: usize,
        group: String,
    },
    /// Fewer users are in a policy's approver groups than the approvals it needs: no request
    /// that waits for them is ever granted, whoever asks.
    TooFewApprovers {
        policy: (usize, String),
        approvals: u32,
        groups: Vec<String>,
        /// Everyone who may approve under it.
        approvers: Vec<String>,
    },
    /// `requester` is one of a policy's approvers, and without them (a requester never
    /// approves their own request) too few are left for the approvals it needs.
    OwnRequestStuck {
        policy: (usize, String),
        requester: String,
        approvals: u32,
        groups: Vec<String>,
        /// Who may approve `requester`'s requests under it.
        others: Vec<String>,
    },
    /// A user or gateway lists a key that a user CA's `revoked_keys` lists too: it logs in as
    /// nobody. A warning, not a problem: refusing the file would keep the catalog of before in
    /// force, where the stolen key still logs in, until someone also removes it from `keys`.
    RevokedKeyListed {
        /// `user alice` or `gateway gw-1`.
        holder: String,
        fingerprint: String,
        ca: String,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::EmptyApproverGroup {
                policy: (at, name),
                index,
                group,
            } => write!(
                f,
                "policies[{at}] ({name}).approvers[{index}]: group {group:?} has no members, so nobody approves through it"
            ),
            Warning::TooFewApprovers {
                policy: (at, name),
                approvals,
                groups,
                approvers,
            } => write!(
                f,
                "policies[{at}] ({name}).approvals: needs {} from members of {}, and {}: no request that waits for its approvers can ever be approved",
                count(*approvals as usize, "approval"),
                groups.join(", "),
                there_are(approvers),
            ),
            Warning::OwnRequestStuck {
                policy: (at, name),
                requester,
                approvals,
                groups,
                others,
            } => write!(
                f,
                "policies[{at}] ({name}): a request by {requester} that waits for its approvers can never be approved: it needs {} from members of {} other than {requester}, and {}",
                count(*approvals as usize, "approval"),
                groups.join(", "),
                there_are(others),
            ),
            Warning::RevokedKeyListed {
                holder,
                fingerprint,
                ca,
            } => write!(
                f,
                "{holder} lists key {fingerprint}, which user CA {ca} revokes (revoked_keys): it logs in as nobody; remove it from {holder}"
            ),
        }
    }
}

fn count(n: usize, what: &str) -> String {
    match n {
        1 => format!("1 {what}"),
        n => format!("{n} {what}s"),
    }
}

fn there_are(who: &[String]) -> String {
    match who.len() {
        0 => "there are none".into(),
        n => format!(
            "there {} only {n} ({})",
            if n == 1 { "is" } else { "are" },
            who.join(", ")
        ),
    }
}

/// Every warning about `catalog`, policy by policy in file order, then revoked keys still
/// listed.
pub fn warnings(catalog: &Catalog) -> Vec<Warning> {
    let mut out = Vec::new();
    for (at, p) in catalog.policies.iter().enumerate() {
        if !p.approvers.is_empty() {
            approval_warnings(catalog, (at, p), &mut out);
        }
    }
    revoked_keys_listed(catalog, &mut out);
    out
}

/// Keys listed for a user or a gateway that a user CA revokes: refused at login anyway.
fn revoked_keys_listed(catalog: &Catalog, out: &mut Vec<Warning>) {
    let users = catalog
        .users
        .values()
        .flat_map(|u| u.keys.iter().map(|k| (format!("user {}", u.name), k)));
    let gateways = catalog
        .gateways
        .values()
        .map(|g| (format!("gateway {}", g.name), &g.key));
    for (holder, key) in users.chain(gateways) {
        let Some(fingerprint) = catalog.listed_fingerprint(key) else {
            continue;
        };
        if let Some(ca) = catalog.certificates.revoking(fingerprint) {
            out.push(Warning::RevokedKeyListed {
                holder,
                fingerprint: fingerprint.to_string(),
                ca: ca.name.clone(),
            });
        }
    }
}

fn approval_warnings(catalog: &Catalog, (at, p): (usize, &Policy), out: &mut Vec<Warning>) {
    let policy = (at, p.name.clone());
    for (index, group) in p.approvers.iter().enumerate() {
        if catalog.groups.get(group).is_none_or(|m| m.is_empty()) {
            out.push(Warning::EmptyApproverGroup {
                policy: policy.clone(),
                index,
                group: group.clone(),
            });
        }
    }
    let needed = p.approvals as usize;
    let approvers: Vec<&User> = catalog
        .users
        .values()
        .filter(|u| p.is_approver(u))
        .collect();
    if approvers.len() < needed {
        out.push(Warning::TooFewApprovers {
            policy,
            approvals: p.approvals,
            groups: p.approvers.clone(),
            approvers: approvers.iter().map(|u| u.name.clone()).collect(),
        });
        return;
    }
    // Only an approver can be short of approvers other than themself, and only if some
    // request of theirs would wait under this policy.
    for requester in &approvers {
        let others: Vec<String> = approvers
            .iter()
            .filter(|a| policy::may_decide(p, a, &requester.name))
            .map(|a| a.name.clone())
            .collect();
        if others.len() < needed && may_wait_under(catalog, p, requester) {
            out.push(Warning::OwnRequestStuck {
                policy: policy.clone(),
                requester: requester.name.clone(),
                approvals: p.approvals,
                groups: p.approvers.clone(),
                others,
            });
        }
    }
}

/// Whether a request by `user` could wait for approvers under `p`: it covers a target that no
/// policy auto-approves `user` for at all times. (Which of several covering policies a request
/// lands under also depends on its duration and reason, so any covering one may be it.)
fn may_wait_under(catalog: &Catalog, p: &Policy, user: &User) -> bool {
    let always_approved = |t: &Target| {
        catalog.policies_for(t).any(|q| {
            q.auto_approve
                .as_ref()
                .is_some_and(|a| a.windows.is_empty() && a.groups.iter().any(|g| user.in_group(g)))
        })
    };
    catalog
        .targets
        .values()
        .any(|t| p.selector.matches(t) && !always_approved(t))
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;
    use crate::config::parse;

    /// A valid OpenSSH ed25519 public key line, a different one for each `n`.
    fn key(n: u8) -> String {
        let pk = ed25519_dalek::SigningKey::from_bytes(&[n; 32]).verifying_key();
        let mut blob = Vec::new();
        for part in [b"ssh-ed25519".as_slice(), pk.as_bytes()] {
            blob.extend_from_slice(&(part.len() as u32).to_be_bytes());
            blob.extend_from_slice(part);
        }
        let b64 = base64::engine::general_purpose::STANDARD.encode(blob);
        format!("ssh-ed25519 {b64}")
    }

    /// Users with their groups, one target `db` (env = prod), and `policies` as written.
    fn config(users: &[(&str, &[&str])], rest: &str) -> Catalog {
        let mut t = String::new();
        for (i, (name, groups)) in users.iter().enumerate() {
            let groups = groups
                .iter()
                .map(|g| format!("{g:?}"))
                .collect::<Vec<_>>()
                .join(", ");
            t.push_str(&format!(
                "[[users]]\nname = {name:?}\nkeys = [{:?}]\ngroups = [{groups}]\n",
                key(i as u8 + 1)
            ));
        }
        t.push_str(
            "[[targets]]\nname = \"db\"\nkind = \"tcp\"\naddress = \"10.0.0.5:5432\"\nlabels = { env = \"prod\" }\n",
        );
        t.push_str(rest);
        parse(&t).unwrap().catalog
    }

    const PROD: &str =
        "[[policies]]\nname = \"prod\"\nmatch = { env = \"prod\" }\nmax_duration = \"1h\"\n";

    fn texts(c: &Catalog) -> Vec<String> {
        warnings(c).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_policy_its_approvers_can_satisfy_is_quiet() {
        let c = config(
            &[("bob", &["dba"]), ("carol", &["dba"]), ("dan", &["dba"])],
            &format!("{PROD}approvers = [\"dba\"]\napprovals = 2\n"),
        );
        assert_eq!(texts(&c), Vec::<String>::new());
    }

    #[test]
    fn more_approvals_than_approvers_is_named() {
        let c = config(
            &[("bob", &["dba"]), ("alice", &["dev"])],
            &format!("{PROD}approvers = [\"dba\"]\napprovals = 2\n"),
        );
        assert_eq!(
            warnings(&c),
            [Warning::TooFewApprovers {
                policy: (0, "prod".into()),
                approvals: 2,
                groups: vec!["dba".into()],
                approvers: vec!["bob".into()],
            }]
        );
        assert_eq!(
            texts(&c),
            ["policies[0] (prod).approvals: needs 2 approvals from members of dba, and there is only 1 (bob): no request that waits for its approvers can ever be approved"]
        );
    }

    #[test]
    fn an_empty_approver_group_is_named() {
        let c = config(
            &[("bob", &["dba"])],
            &format!("{PROD}approvers = [\"dba\", \"sre\"]\n[[groups]]\nname = \"sre\"\n"),
        );
        assert_eq!(
            texts(&c),
            ["policies[0] (prod).approvers[1]: group \"sre\" has no members, so nobody approves through it",
             "policies[0] (prod): a request by bob that waits for its approvers can never be approved: it needs 1 approval from members of dba, sre other than bob, and there are none"]
        );
        // Nobody at all: the policy is named once, not once per user.
        let c = config(
            &[("alice", &["dev"])],
            &format!("{PROD}approvers = [\"sre\"]\n[[groups]]\nname = \"sre\"\n"),
        );
        assert_eq!(
            texts(&c),
            ["policies[0] (prod).approvers[0]: group \"sre\" has no members, so nobody approves through it",
             "policies[0] (prod).approvals: needs 1 approval from members of sre, and there are none: no request that waits for its approvers can ever be approved"]
        );
    }

    #[test]
    fn the_lone_admin_cannot_approve_their_own_request() {
        let c = config(
            &[("ada", &["admins"]), ("alice", &["dev"])],
            &format!("{PROD}approvers = [\"admins\"]\n"),
        );
        assert_eq!(
            warnings(&c),
            [Warning::OwnRequestStuck {
                policy: (0, "prod".into()),
                requester: "ada".into(),
                approvals: 1,
                groups: vec!["admins".into()],
                others: vec![],
            }]
        );
        assert_eq!(
            texts(&c),
            ["policies[0] (prod): a request by ada that waits for its approvers can never be approved: it needs 1 approval from members of admins other than ada, and there are none"]
        );
    }

    #[test]
    fn every_approver_short_of_others_is_named() {
        // Two dbas, two approvals: each dba's own request has one other approver.
        let c = config(
            &[("bob", &["dba"]), ("carol", &["dba"]), ("alice", &["dev"])],
            &format!("{PROD}approvers = [\"dba\"]\napprovals = 2\n"),
        );
        assert_eq!(
            texts(&c),
            ["policies[0] (prod): a request by bob that waits for its approvers can never be approved: it needs 2 approvals from members of dba other than bob, and there is only 1 (carol)",
             "policies[0] (prod): a request by carol that waits for its approvers can never be approved: it needs 2 approvals from members of dba other than carol, and there is only 1 (bob)"]
        );
    }

    #[test]
    fn a_requester_always_auto_approved_is_not_stuck() {
        let always = "auto_approve = { groups = [\"admins\"] }\n";
        let c = config(
            &[("ada", &["admins"])],
            &format!("{PROD}approvers = [\"admins\"]\n{always}"),
        );
        assert_eq!(texts(&c), Vec::<String>::new());
        // Only in office hours: outside them the request waits, and nobody else can approve.
        let hours =
            "auto_approve = { groups = [\"admins\"], windows = [\"Mon-Fri 08:00-18:00 UTC\"] }\n";
        let c = config(
            &[("ada", &["admins"])],
            &format!("{PROD}approvers = [\"admins\"]\n{hours}"),
        );
        assert_eq!(texts(&c).len(), 1, "{:?}", texts(&c));
        // A policy covering no target holds no request.
        let c = config(
            &[("ada", &["admins"])],
            "[[policies]]\nname = \"none\"\nmatch = { env = \"nowhere\" }\nmax_duration = \"1h\"\napprovers = [\"admins\"]\n",
        );
        assert_eq!(texts(&c), Vec::<String>::new());
    }

    #[test]
    fn a_listed_key_that_a_ca_revokes_is_named() {
        let ca = key(9);
        let alice = key(1);
        let fp = crate::keys::fingerprint(&crate::keys::parse_public_key(&alice).unwrap());
        let c = config(
            &[("alice", &["dev"]), ("bob", &["dev"])],
            &format!("[[user_cas]]\nname = \"corp\"\nkey = {ca:?}\nrevoked_keys = [{alice:?}]\n"),
        );
        assert_eq!(
            warnings(&c),
            [Warning::RevokedKeyListed {
                holder: "user alice".into(),
                fingerprint: fp.clone(),
                ca: "corp".into(),
            }]
        );
        assert_eq!(
            texts(&c),
            [format!("user alice lists key {fp}, which user CA corp revokes (revoked_keys): it logs in as nobody; remove it from user alice")]
        );
        assert_eq!(c.authenticate("alice", &alice), None, "and it is refused");
    }

    #[test]
    fn warnings_never_refuse_the_file() {
        let c = config(
            &[],
            &format!("{PROD}approvers = [\"admins\"]\napprovals = 3\n"),
        );
        assert_eq!(c.policies.len(), 1);
        assert_eq!(warnings(&c).len(), 2);
    }
}
