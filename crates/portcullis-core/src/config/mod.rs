//! The TOML configuration file (SPEC "Configuration"), and its validation into a [`Catalog`]
//! plus the per-process sections.
//!
//! Unknown keys are refused (a typo must never silently drop a rule), and every semantic error
//! names the field it is about: `policies[1] (prod).approvers: unknown group "dba"`.
//!
//! Each section of the file has a module of its own, holding its TOML shape, its validated form
//! and the one function that validates it (a new section is a new module and one line in
//! [`validate`]). Defaults are named in `defaults`, string-typed choices parsed in `choice`,
//! and every problem goes to one `Problems` collector; `warnings` reads the validated catalog
//! for what is valid but cannot work. This module holds the file as a whole,
//! the validated [`Config`] and the error; it must not hold any section's rules.

mod approver;
mod choice;
mod defaults;
mod gateway;
mod gateways;
mod groups;
mod identity;
mod limits;
mod policies;
mod problems;
mod targets;
mod user_cas;
mod users;
mod warnings;

#[cfg(test)]
mod tests;

use serde::Deserialize;

use crate::catalog::Catalog;

pub use approver::{ApproverFile, ApproverSettings};
pub use choice::Choice;
pub use defaults::*;
pub use gateway::{FailMode, GatewayFile, GatewaySettings, OneOrMany};
pub use gateways::GatewayEntry;
pub use groups::GroupEntry;
pub use limits::ConnectionLimits;
pub use policies::{AutoApproveEntry, PolicyEntry};
pub use problems::valid_name;
pub use targets::{split_host_port, TargetEntry};
pub use user_cas::UserCaEntry;
pub use users::UserEntry;
pub use warnings::{warnings, Warning};

use identity::KeyOwners;
use problems::Problems;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub approver: Option<ApproverFile>,
    pub gateway: Option<GatewayFile>,
    #[serde(default)]
    pub gateways: Vec<GatewayEntry>,
    #[serde(default)]
    pub users: Vec<UserEntry>,
    #[serde(default)]
    pub groups: Vec<GroupEntry>,
    #[serde(default)]
    pub targets: Vec<TargetEntry>,
    #[serde(default)]
    pub policies: Vec<PolicyEntry>,
    #[serde(default)]
    pub user_cas: Vec<UserCaEntry>,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub approver: Option<ApproverSettings>,
    pub gateway: Option<GatewaySettings>,
    pub catalog: Catalog,
}

impl Config {
    /// What is valid but cannot work as written (`portcullis check` prints these).
    pub fn warnings(&self) -> Vec<Warning> {
        warnings(&self.catalog)
    }
}

/// Every problem found in a configuration, one a line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl ConfigError {
    fn one(p: String) -> Self {
        ConfigError { problems: vec![p] }
    }
}

/// Parse and validate configuration text.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    let file: ConfigFile = toml::from_str(text)
        .map_err(|e| ConfigError::one(e.to_string().trim_end().replace("\n\n", "\n")))?;
    validate(file)
}

/// Validate a parsed file: every problem is collected, not just the first.
///
/// One function per section, in file order, each over the same `Problems`; a section reads
/// what those before it built (users their gateways' names, policies the targets and groups).
pub fn validate(file: ConfigFile) -> Result<Config, ConfigError> {
    let mut p = Problems::default();
    let approver = file
        .approver
        .as_ref()
        .map(|a| approver::validate(&mut p, a));
    let gateway = file
        .gateway
        .as_ref()
        .map(|g| gateway::validate(&mut p, g, file.approver.as_ref(), &file.gateways));
    let mut owners = KeyOwners::default();
    let gateways = gateways::validate(&mut p, &mut owners, &file.gateways);
    let mut groups = groups::builtin();
    let certificates_trusted = !file.user_cas.is_empty();
    let mut users = users::validate(
        &mut p,
        &mut owners,
        &file.users,
        &gateways,
        &mut groups,
        certificates_trusted,
    );
    groups::validate(&mut p, &file.groups, &mut users, &mut groups);
    let targets = targets::validate(&mut p, &file.targets);
    let policies = policies::validate(&mut p, &file.policies, &targets, &groups);
    let certificates =
        user_cas::validate(&mut p, &mut owners, &file.user_cas, &file.targets, &targets);
    p.into_result(Config {
        approver,
        gateway,
        catalog: Catalog {
            users,
            groups,
            gateways,
            targets,
            policies,
            certificates,
            key_index: Default::default(),
        },
    })
}
