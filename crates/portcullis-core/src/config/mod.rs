//! The TOML configuration file (SPEC "Configuration"), and its validation into a [`Catalog`]
//! plus the per-process sections.
//!
//! Unknown keys are refused (a typo must never silently drop a rule), and every semantic error
//! names the field it is about: `policies[1] (prod).approvers: unknown group "dba"`.
//!
//! Each section of the file has a module of its own, holding its TOML shape and its validated
//! form; this module holds the file as a whole, the validated [`Config`] and the error.

mod approver;
mod choice;
mod defaults;
mod gateway;
mod gateways;
mod groups;
mod limits;
mod policies;
mod problems;
mod targets;
mod users;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;

use serde::Deserialize;

use crate::catalog::{
    AutoApprove, Catalog, Gateway, Policy, Selector, Target, TargetKind, User, BUILTIN_GROUPS,
};
use crate::keys;
use crate::window::Window;

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
pub use users::UserEntry;

use limits::LimitKeys;
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
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub approver: Option<ApproverSettings>,
    pub gateway: Option<GatewaySettings>,
    pub catalog: Catalog,
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
pub fn validate(file: ConfigFile) -> Result<Config, ConfigError> {
    let mut p = Problems(Vec::new());

    let approver = file.approver.as_ref().map(|a| {
        let listen = a
            .listen
            .clone()
            .unwrap_or_else(|| DEFAULT_APPROVER_LISTEN.to_string());
        if listen.parse::<SocketAddr>().is_err() {
            p.push(
                "approver.listen",
                format!("{listen:?} is not an IP:PORT address"),
            );
        }
        let request_ttl = a
            .request_ttl
            .as_deref()
            .and_then(|t| p.duration("approver.request_ttl", t))
            .unwrap_or(DEFAULT_REQUEST_TTL);
        let limits = p.limits(
            "approver",
            LimitKeys {
                max_connections: a.max_connections,
                per_source: a.max_connections_per_source,
                startups_per_second: a.new_connections_per_source_per_second,
                startup_burst: a.new_connections_per_source_burst,
                per_user: a.max_connections_per_user,
                reserved: a.reserved_connections,
                login_grace: a.login_grace.as_deref(),
                idle_timeout: a.idle_timeout.as_deref(),
            },
            ConnectionLimits::APPROVER,
        );
        if a.max_pending_requests_per_user == Some(0) {
            p.push(
                "approver.max_pending_requests_per_user",
                "must be at least 1",
            );
        }
        ApproverSettings {
            listen,
            data_dir: a.data_dir.clone(),
            request_ttl,
            retention: a
                .retention
                .as_deref()
                .and_then(|t| p.duration("approver.retention", t)),
            limits,
            max_pending_requests_per_user: a
                .max_pending_requests_per_user
                .unwrap_or(DEFAULT_MAX_PENDING_REQUESTS_PER_USER),
            metrics: a
                .metrics
                .as_deref()
                .and_then(|m| p.address("approver.metrics", m)),
        }
    });

    let gateway = file.gateway.as_ref().map(|g| {
        let listen = g
            .listen
            .clone()
            .unwrap_or_else(|| DEFAULT_GATEWAY_LISTEN.to_string());
        if listen.parse::<SocketAddr>().is_err() {
            p.push(
                "gateway.listen",
                format!("{listen:?} is not an IP:PORT address"),
            );
        }
        let approver = g
            .approver
            .clone()
            .or_else(|| file.approver.as_ref().and_then(|a| a.listen.clone()))
            .unwrap_or_else(|| DEFAULT_APPROVER_LISTEN.to_string());
        if let Some(k) = &g.approver_host_key {
            if let Err(e) = keys::parse_public_key(k) {
                p.push("gateway.approver_host_key", e);
            }
        }
        let grant_signing_keys = g
            .grant_signing_key
            .as_ref()
            .map(OneOrMany::to_vec)
            .unwrap_or_default();
        for (i, k) in grant_signing_keys.iter().enumerate() {
            if let Err(e) = keys::parse_signing_key(k) {
                p.push(format!("gateway.grant_signing_key[{i}]"), e);
            }
        }
        if g.grant_signing_key.is_some() && grant_signing_keys.is_empty() {
            p.push("gateway.grant_signing_key", "an empty list pins no key");
        }
        let expiry_warning = g
            .expiry_warning
            .as_deref()
            .and_then(|t| p.duration("gateway.expiry_warning", t))
            .unwrap_or(DEFAULT_EXPIRY_WARNING);
        let fail_mode = g
            .fail_mode
            .as_deref()
            .and_then(|m| p.choice("gateway.fail_mode", m))
            .unwrap_or(DEFAULT_FAIL_MODE);
        let fail_after = g
            .fail_after
            .as_deref()
            .and_then(|t| p.duration("gateway.fail_after", t))
            .unwrap_or(DEFAULT_FAIL_AFTER);
        if let Some(name) = &g.name {
            // A gateway-only file need not list [[gateways]]; where it does, the name must be one.
            if !file.gateways.is_empty() && !file.gateways.iter().any(|e| &e.name == name) {
                p.push(
                    "gateway.name",
                    format!("{name:?} is not one of the [[gateways]] entries"),
                );
            }
        }
        let limits = p.limits(
            "gateway",
            LimitKeys {
                max_connections: g.max_connections,
                per_source: g.max_connections_per_source,
                startups_per_second: g.new_connections_per_source_per_second,
                startup_burst: g.new_connections_per_source_burst,
                per_user: g.max_connections_per_user,
                reserved: g.reserved_connections,
                login_grace: g.login_grace.as_deref(),
                idle_timeout: g.idle_timeout.as_deref(),
            },
            ConnectionLimits::GATEWAY,
        );
        if g.max_channels_per_connection == Some(0) {
            p.push("gateway.max_channels_per_connection", "must be at least 1");
        }
        GatewaySettings {
            name: g.name.clone(),
            listen,
            data_dir: g.data_dir.clone(),
            approver,
            approver_host_key: g.approver_host_key.clone(),
            grant_signing_keys,
            expiry_warning,
            fail_mode,
            fail_after,
            record_input: g.record_input.unwrap_or(DEFAULT_RECORD_INPUT),
            limits,
            max_channels_per_connection: g
                .max_channels_per_connection
                .unwrap_or(DEFAULT_MAX_CHANNELS_PER_CONNECTION),
            metrics: g
                .metrics
                .as_deref()
                .and_then(|m| p.address("gateway.metrics", m)),
        }
    });

    // Who holds which key: one key, one identity.
    let mut key_owner: HashMap<String, String> = HashMap::new();
    let mut claim_key =
        |p: &mut Problems, field: String, owner: String, line: &str| match keys::parse_public_key(
            line,
        ) {
            Ok(k) => {
                let norm = keys::normalize(&k);
                if let Some(prev) = key_owner.get(&norm) {
                    if prev != &owner {
                        p.push(&field, format!("key is already registered to {prev}"));
                    }
                } else {
                    key_owner.insert(norm.clone(), owner);
                }
                Some(norm)
            }
            Err(e) => {
                p.push(&field, e);
                None
            }
        };

    let mut gateways = BTreeMap::new();
    for (i, g) in file.gateways.iter().enumerate() {
        let field = format!("gateways[{i}]");
        p.name(&format!("{field}.name"), &g.name);
        let key = claim_key(
            &mut p,
            format!("{field} ({}).key", g.name),
            format!("gateway {}", g.name),
            &g.key,
        );
        if gateways.contains_key(&g.name) {
            p.push(
                format!("{field}.name"),
                format!("duplicate gateway {:?}", g.name),
            );
        }
        if let Some(key) = key {
            gateways.insert(
                g.name.clone(),
                Gateway {
                    name: g.name.clone(),
                    key,
                },
            );
        }
    }

    let mut groups: BTreeMap<String, BTreeSet<String>> = BUILTIN_GROUPS
        .iter()
        .map(|g| (g.to_string(), BTreeSet::new()))
        .collect();
    let mut users = BTreeMap::new();
    for (i, u) in file.users.iter().enumerate() {
        let field = format!("users[{i}]");
        p.name(&format!("{field}.name"), &u.name);
        if users.contains_key(&u.name) {
            p.push(
                format!("{field}.name"),
                format!("duplicate user {:?}", u.name),
            );
        }
        if gateways.contains_key(&u.name) {
            p.push(
                format!("{field}.name"),
                format!("{:?} is also a gateway's name", u.name),
            );
        }
        if u.keys.is_empty() {
            p.push(
                format!("{field} ({}).keys", u.name),
                "a user needs at least one public key",
            );
        }
        let mut keys = Vec::new();
        for (j, k) in u.keys.iter().enumerate() {
            if let Some(norm) = claim_key(
                &mut p,
                format!("{field} ({}).keys[{j}]", u.name),
                format!("user {}", u.name),
                k,
            ) {
                keys.push(norm);
            }
        }
        let mut user_groups = BTreeSet::new();
        for (j, g) in u.groups.iter().enumerate() {
            p.name(&format!("{field} ({}).groups[{j}]", u.name), g);
            groups.entry(g.clone()).or_default().insert(u.name.clone());
            user_groups.insert(g.clone());
        }
        users.insert(
            u.name.clone(),
            User {
                name: u.name.clone(),
                keys,
                groups: user_groups,
            },
        );
    }
    let mut declared = BTreeSet::new();
    for (i, g) in file.groups.iter().enumerate() {
        let field = format!("groups[{i}]");
        p.name(&format!("{field}.name"), &g.name);
        if !declared.insert(g.name.clone()) {
            p.push(
                format!("{field}.name"),
                format!("duplicate group {:?}", g.name),
            );
        }
        groups.entry(g.name.clone()).or_default();
        for (j, m) in g.members.iter().enumerate() {
            match users.get_mut(m) {
                Some(u) => {
                    u.groups.insert(g.name.clone());
                    groups.entry(g.name.clone()).or_default().insert(m.clone());
                }
                None => p.push(
                    format!("{field} ({}).members[{j}]", g.name),
                    format!("unknown user {m:?}"),
                ),
            }
        }
    }

    let mut targets = BTreeMap::new();
    for (i, t) in file.targets.iter().enumerate() {
        let field = format!("targets[{i}] ({})", t.name);
        p.name(&format!("targets[{i}].name"), &t.name);
        if targets.contains_key(&t.name) {
            p.push(
                format!("targets[{i}].name"),
                format!("duplicate target {:?}", t.name),
            );
        }
        // An unknown kind is already a problem; tcp stands in for it so that the checks after
        // it still run.
        let kind = p
            .choice(&format!("{field}.kind"), &t.kind)
            .unwrap_or(TargetKind::Tcp);
        let (host, port) = match split_host_port(&t.address) {
            Ok(hp) => hp,
            Err(e) => {
                p.push(format!("{field}.address"), e);
                (String::new(), 0)
            }
        };
        if kind == TargetKind::Ssh {
            if t.login.is_none() {
                p.push(
                    format!("{field}.login"),
                    "an ssh target needs the login the gateway uses on it",
                );
            }
            match &t.host_key {
                None => p.push(
                    format!("{field}.host_key"),
                    "an ssh target needs its pinned host key (ssh-keyscan -t ed25519 HOST)",
                ),
                Some(k) => {
                    if let Err(e) = keys::parse_public_key(k) {
                        p.push(format!("{field}.host_key"), e);
                    }
                }
            }
        } else if t.login.is_some() || t.host_key.is_some() {
            p.push(
                field.to_string(),
                "login and host_key only apply to kind = \"ssh\"",
            );
        }
        targets.insert(
            t.name.clone(),
            Target {
                name: t.name.clone(),
                kind,
                address: t.address.clone(),
                host,
                port,
                login: t.login.clone(),
                host_key: t.host_key.clone(),
                labels: t.labels.clone(),
                record_data: t.record_data,
            },
        );
    }

    let mut policies: Vec<Policy> = Vec::new();
    for (i, pe) in file.policies.iter().enumerate() {
        let field = format!("policies[{i}] ({})", pe.name);
        p.name(&format!("policies[{i}].name"), &pe.name);
        if policies.iter().any(|q| q.name == pe.name) {
            p.push(
                format!("policies[{i}].name"),
                format!("duplicate policy {:?}", pe.name),
            );
        }
        if pe.match_labels.is_empty() && pe.targets.is_empty() {
            p.push(
                &field,
                "needs `match = { label = \"value\" }` or `targets = [\"name\"]` to say what it covers",
            );
        }
        for (j, t) in pe.targets.iter().enumerate() {
            if !targets.contains_key(t) {
                p.push(
                    format!("{field}.targets[{j}]"),
                    format!("unknown target {t:?}"),
                );
            }
        }
        let known = |g: &String| groups.contains_key(g);
        let group_list = || groups.keys().cloned().collect::<Vec<_>>().join(", ");
        for (j, g) in pe.approvers.iter().enumerate() {
            if !known(g) {
                p.push(
                    format!("{field}.approvers[{j}]"),
                    format!("unknown group {g:?} (known groups: {})", group_list()),
                );
            }
        }
        let max = p.duration(&format!("{field}.max_duration"), &pe.max_duration);
        let default = pe
            .default_duration
            .as_ref()
            .and_then(|d| p.duration(&format!("{field}.default_duration"), d));
        // A bad max_duration is already a problem; the cap stands in for it so that the checks
        // after it still run.
        let max_duration = max.unwrap_or(DEFAULT_DURATION_CAP);
        let default_duration = default.unwrap_or(max_duration.min(DEFAULT_DURATION_CAP));
        if default_duration > max_duration {
            p.push(
                format!("{field}.default_duration"),
                "is longer than max_duration",
            );
        }
        let approvals = match (pe.approvals, pe.approvers.is_empty()) {
            (Some(0), _) => {
                p.push(format!("{field}.approvals"), "must be at least 1");
                DEFAULT_APPROVALS
            }
            (Some(n), true) => {
                p.push(
                    format!("{field}.approvals"),
                    format!("asks for {n} approvals but `approvers` names no group"),
                );
                n
            }
            (Some(n), false) => n,
            (None, _) => DEFAULT_APPROVALS,
        };
        let auto_approve = pe.auto_approve.as_ref().map(|a| {
            for (j, g) in a.groups.iter().enumerate() {
                if !known(g) {
                    p.push(
                        format!("{field}.auto_approve.groups[{j}]"),
                        format!("unknown group {g:?} (known groups: {})", group_list()),
                    );
                }
            }
            let mut windows = Vec::new();
            for (j, w) in a.windows.iter().enumerate() {
                match Window::parse(w) {
                    Ok(w) => windows.push(w),
                    Err(e) => p.push(format!("{field}.auto_approve.windows[{j}]"), e),
                }
            }
            AutoApprove {
                groups: a.groups.clone(),
                windows,
            }
        });
        if pe.approvers.is_empty() && auto_approve.is_none() {
            p.push(
                &field,
                "can never grant anything: give it `approvers` or `auto_approve`",
            );
        }
        policies.push(Policy {
            name: pe.name.clone(),
            selector: Selector {
                labels: pe.match_labels.clone(),
                targets: pe.targets.clone(),
            },
            approvers: pe.approvers.clone(),
            approvals,
            max_duration,
            default_duration,
            require_reason: pe.require_reason,
            auto_approve,
            record_data: pe.record_data,
        });
    }

    if !p.0.is_empty() {
        return Err(ConfigError { problems: p.0 });
    }
    Ok(Config {
        approver,
        gateway,
        catalog: Catalog {
            users,
            groups,
            gateways,
            targets,
            policies,
        },
    })
}
