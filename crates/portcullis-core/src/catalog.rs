//! The catalog: who exists, what can be reached, and the rules for asking. It is what the
//! approver loads from its config and streams, signed, to every gateway.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::key_index::KeyIndex;
use crate::user_ca::Certificates;
use crate::window::Window;

/// Groups every deployment has. `admins` run the show; `auditors` read the audit trail.
pub const BUILTIN_GROUPS: [&str; 2] = ["admins", "auditors"];
pub const ADMINS: &str = "admins";
pub const AUDITORS: &str = "auditors";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    /// Normalised OpenSSH public keys (no comment).
    pub keys: Vec<String>,
    pub groups: BTreeSet<String>,
}

impl User {
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.contains(group)
    }
    pub fn is_admin(&self) -> bool {
        self.in_group(ADMINS)
    }
    pub fn is_auditor(&self) -> bool {
        self.in_group(AUDITORS) || self.is_admin()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gateway {
    pub name: String,
    pub key: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TargetKind {
    /// Port forwarding only (databases and other TCP services).
    Tcp,
    /// Port forwarding and recorded sessions.
    Ssh,
}

impl TargetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Tcp => "tcp",
            TargetKind::Ssh => "ssh",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub name: String,
    pub kind: TargetKind,
    /// As configured, `HOST:PORT`.
    pub address: String,
    pub host: String,
    pub port: u16,
    pub login: Option<String>,
    pub host_key: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub record_data: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selector {
    pub labels: BTreeMap<String, String>,
    pub targets: Vec<String>,
}

impl Selector {
    /// A target matches when it is named, or when it carries every label asked for.
    pub fn matches(&self, target: &Target) -> bool {
        self.targets.iter().any(|t| t == &target.name)
            || (!self.labels.is_empty()
                && self
                    .labels
                    .iter()
                    .all(|(k, v)| target.labels.get(k) == Some(v)))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoApprove {
    pub groups: Vec<String>,
    /// Empty means "at any time".
    pub windows: Vec<Window>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub name: String,
    pub selector: Selector,
    pub approvers: Vec<String>,
    pub approvals: u32,
    pub max_duration: Duration,
    pub default_duration: Duration,
    pub require_reason: bool,
    pub auto_approve: Option<AutoApprove>,
    pub record_data: bool,
}

impl Policy {
    /// Whether `user` may approve requests under this policy (never their own: checked apart).
    pub fn is_approver(&self, user: &User) -> bool {
        self.approvers.iter().any(|g| user.in_group(g))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    pub users: BTreeMap<String, User>,
    /// Group name to its members, built-in groups included.
    pub groups: BTreeMap<String, BTreeSet<String>>,
    pub gateways: BTreeMap<String, Gateway>,
    pub targets: BTreeMap<String, Target>,
    /// In file order: the order ties are broken in.
    pub policies: Vec<Policy>,
    /// User CAs and certificate targets (#13). Last, and left out of the encoding while
    /// empty: see `crate::catalog_v1`.
    #[serde(default, skip_serializing_if = "Certificates::is_empty")]
    pub certificates: Certificates,
    /// The listed keys' fingerprints, taken on first use (`crate::key_index`). Never encoded.
    #[serde(skip)]
    pub key_index: KeyIndex,
}

/// Who an authenticated SSH key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    User(String),
    Gateway(String),
}

impl Catalog {
    /// The identity a verified key proves for the login name it was offered under.
    /// A user's key never logs in under another name, and a key any user CA revoked logs in
    /// as nobody ([`Catalog::holds_key`]).
    pub fn authenticate(&self, login: &str, normalized_key: &str) -> Option<Principal> {
        [
            self.users
                .get(login)
                .map(|u| Principal::User(u.name.clone())),
            self.gateways
                .get(login)
                .map(|g| Principal::Gateway(g.name.clone())),
        ]
        .into_iter()
        .flatten()
        .find(|p| self.holds_key(p, normalized_key))
    }

    pub fn policy(&self, name: &str) -> Option<&Policy> {
        self.policies.iter().find(|p| p.name == name)
    }

    /// Policies covering a target, in file order.
    pub fn policies_for<'a>(&'a self, target: &'a Target) -> impl Iterator<Item = &'a Policy> {
        self.policies.iter().filter(|p| p.selector.matches(target))
    }

    /// A target by its name or by its exact configured address (`HOST:PORT`).
    pub fn target_by_name_or_address(&self, host: &str, port: u16) -> Option<&Target> {
        self.targets
            .get(host)
            .filter(|t| t.port == port)
            .or_else(|| {
                self.targets
                    .values()
                    .find(|t| t.host == host && t.port == port)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(labels: &[(&str, &str)]) -> Target {
        Target {
            name: "db".into(),
            kind: TargetKind::Tcp,
            address: "10.0.0.5:5432".into(),
            host: "10.0.0.5".into(),
            port: 5432,
            login: None,
            host_key: None,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            record_data: false,
        }
    }

    #[test]
    fn selectors_match_by_name_or_all_labels() {
        let by_label = Selector {
            labels: [("env".to_string(), "prod".to_string())].into(),
            targets: vec![],
        };
        assert!(by_label.matches(&target(&[("env", "prod"), ("team", "x")])));
        assert!(!by_label.matches(&target(&[("env", "staging")])));
        assert!(!by_label.matches(&target(&[])));
        let by_name = Selector {
            labels: Default::default(),
            targets: vec!["db".into()],
        };
        assert!(by_name.matches(&target(&[])));
        let empty = Selector {
            labels: Default::default(),
            targets: vec![],
        };
        assert!(!empty.matches(&target(&[])), "deny by default");
    }

    #[test]
    fn targets_found_by_name_or_exact_address() {
        let mut c = Catalog::default();
        c.targets.insert("db".into(), target(&[]));
        assert!(c.target_by_name_or_address("db", 5432).is_some());
        assert!(c.target_by_name_or_address("db", 5433).is_none());
        assert!(c.target_by_name_or_address("10.0.0.5", 5432).is_some());
        assert!(c.target_by_name_or_address("10.0.0.6", 5432).is_none());
    }
}
