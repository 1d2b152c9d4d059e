//! What someone who connects without a command sees (`ssh alice@approver`, `ssh -p 2222
//! alice@bastion`, or `help`): the commands *they* may run, as the permission table
//! ([`authorize()`]) says, one line each. `--help` and `COMMAND --help` stay clap's full usage.

use portcullis_core::catalog::{Catalog, User};

use super::authorize::{authorize, Action, RequestFacts};
use crate::render::help::Entry;

/// Whether `words` ask for this listing: nothing at all, or `help` alone (either with
/// `--json`). `Some(json)` if they do.
pub(super) fn asked(words: &[String]) -> Option<bool> {
    let json = words.iter().any(|w| w == "--json");
    let mut rest = words.iter().filter(|w| *w != "--json");
    match (rest.next(), rest.next()) {
        (None, _) => Some(json),
        (Some(w), None) if w == "help" => Some(json),
        _ => None,
    }
}

/// The commands `user` may run under `catalog`, in the order someone new needs them.
pub(super) fn entries(user: &User, catalog: &Catalog) -> Vec<Entry> {
    let may = |action: Action<'_>| authorize(user, &action, catalog).is_ok();
    // A decision needs a request; a request by someone else under any policy stands for all.
    let decides = catalog.policies.iter().any(|p| {
        may(Action::Approve(RequestFacts {
            id: 0,
            requester: "",
            policy: &p.name,
        }))
    });
    let others_grants = may(Action::ListGrants {
        of: Some("another user"),
    });
    let mut out = Vec::new();
    let mut add = |allowed: bool, usage: &'static str, about: &'static str| {
        if allowed {
            out.push(Entry { usage, about });
        }
    };
    add(
        may(Action::Request),
        "request TARGET [--for DUR] [--reason TEXT]",
        "ask for access to a target",
    );
    add(true, "wait ID", "block until request ID is decided");
    add(
        may(Action::OwnView),
        "status",
        "your grants, their time left, pending requests",
    );
    add(
        may(Action::OwnView),
        "targets",
        "what you can request, and who approves it",
    );
    add(
        may(Action::OwnView),
        "whoami",
        "your key, groups and the policies you approve for",
    );
    add(
        true,
        "requests [--all]",
        if decides {
            "your requests, and those you may decide"
        } else {
            "your requests"
        },
    );
    add(
        true,
        "cancel ID [--reason TEXT]",
        "withdraw a request of yours",
    );
    if others_grants {
        add(
            true,
            "grants [--active] [--user U] [--target T]",
            "grants and their time left",
        );
    } else {
        add(
            may(Action::ListGrants { of: None }),
            "grants [--active] [--target T]",
            "your grants and their time left",
        );
    }
    add(
        true,
        "revoke GRANT_ID [--reason TEXT]",
        if decides || user.is_admin() {
            "end a grant now: yours, or one you oversee"
        } else {
            "give a grant of yours up early"
        },
    );
    add(decides, "approve ID [--note TEXT]", "approve a request");
    add(decides, "deny ID [--note TEXT]", "deny a request");
    add(
        may(Action::Sessions),
        "sessions [--live]",
        "sessions through the gateways",
    );
    add(may(Action::Kill), "kill SESSION_ID", "cut one session now");
    add(
        may(Action::Reload),
        "reload",
        "re-read the config file (a bad one is refused)",
    );
    add(
        may(Action::Audit),
        "audit log|sessions|replay|export|verify",
        "the audit trail",
    );
    out
}

#[cfg(test)]
mod tests {
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

    fn catalog() -> Catalog {
        Catalog {
            policies: vec![Policy {
                name: "prod".into(),
                selector: Selector {
                    labels: Default::default(),
                    targets: vec!["db".into()],
                },
                approvers: vec!["dba".into()],
                approvals: 1,
                max_duration: Duration::from_secs(3600),
                default_duration: Duration::from_secs(3600),
                require_reason: false,
                auto_approve: None,
                record_data: false,
            }],
            ..Catalog::default()
        }
    }

    fn commands(u: &User) -> Vec<&'static str> {
        entries(u, &catalog())
            .iter()
            .map(|e| e.usage.split(' ').next().unwrap_or(""))
            .collect()
    }

    #[test]
    fn each_user_sees_what_the_table_lets_them_run() {
        let everyone = [
            "request", "wait", "status", "targets", "whoami", "requests", "cancel", "grants",
            "revoke",
        ];
        assert_eq!(commands(&user("alice", &["dev"])), everyone);
        let bob = commands(&user("bob", &["dba"]));
        assert_eq!(bob[..everyone.len()], everyone);
        assert_eq!(bob[everyone.len()..], ["approve", "deny"]);
        let ada = commands(&user("ada", &["admins"]));
        assert_eq!(
            ada[everyone.len()..],
            ["sessions", "kill", "reload", "audit"]
        );
        let audrey = commands(&user("audrey", &["auditors"]));
        assert_eq!(audrey[everyone.len()..], ["sessions", "audit"]);
        // Only admins are shown the --user filter.
        let grants = |u: &User| {
            entries(u, &catalog())
                .into_iter()
                .find(|e| e.usage.starts_with("grants"))
                .map(|e| e.usage)
        };
        assert!(grants(&user("ada", &["admins"])).is_some_and(|g| g.contains("--user")));
        assert!(grants(&user("alice", &["dev"])).is_some_and(|g| !g.contains("--user")));
    }

    #[test]
    fn only_nothing_or_help_alone_asks_for_the_listing() {
        let w = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(asked(&w(&[])), Some(false));
        assert_eq!(asked(&w(&["help"])), Some(false));
        assert_eq!(asked(&w(&["help", "--json"])), Some(true));
        assert_eq!(asked(&w(&["--json"])), Some(true));
        assert_eq!(asked(&w(&["help", "request"])), None);
        assert_eq!(asked(&w(&["--help"])), None);
        assert_eq!(asked(&w(&["status"])), None);
    }
}
