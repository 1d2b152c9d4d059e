//! The TOML configuration file (SPEC "Configuration"), and its validation into a [`Catalog`]
//! plus the per-process sections.
//!
//! Unknown keys are refused (a typo must never silently drop a rule), and every semantic error
//! names the field it is about: `policies[1] (prod).approvers: unknown group "dba"`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::catalog::{
    AutoApprove, Catalog, Gateway, Policy, Selector, Target, TargetKind, User, BUILTIN_GROUPS,
};
use crate::keys;
use crate::time::parse_duration;
use crate::window::Window;

/// The default control-plane port (SPEC).
pub const DEFAULT_APPROVER_LISTEN: &str = "127.0.0.1:2223";
/// The default gateway port (SPEC).
pub const DEFAULT_GATEWAY_LISTEN: &str = "0.0.0.0:2222";

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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproverFile {
    pub listen: Option<String>,
    pub data_dir: PathBuf,
    pub request_ttl: Option<String>,
    pub retention: Option<String>,
    pub max_connections: Option<usize>,
    pub max_connections_per_source: Option<usize>,
    pub new_connections_per_source_per_second: Option<u32>,
    pub new_connections_per_source_burst: Option<u32>,
    pub max_connections_per_user: Option<usize>,
    pub reserved_connections: Option<usize>,
    pub login_grace: Option<String>,
    pub idle_timeout: Option<String>,
    pub max_pending_requests_per_user: Option<usize>,
    pub metrics: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayFile {
    /// Which `[[gateways]]` entry this gateway is (defaults to the only one).
    pub name: Option<String>,
    pub listen: Option<String>,
    pub data_dir: PathBuf,
    pub approver: Option<String>,
    pub approver_host_key: Option<String>,
    /// One key, or a list while a rotation rolls out (every listed key is accepted).
    pub grant_signing_key: Option<OneOrMany>,
    pub expiry_warning: Option<String>,
    pub fail_mode: Option<String>,
    pub fail_after: Option<String>,
    pub record_input: Option<bool>,
    pub max_connections: Option<usize>,
    pub max_connections_per_source: Option<usize>,
    pub new_connections_per_source_per_second: Option<u32>,
    pub new_connections_per_source_burst: Option<u32>,
    pub max_connections_per_user: Option<usize>,
    pub reserved_connections: Option<usize>,
    pub login_grace: Option<String>,
    pub idle_timeout: Option<String>,
    pub max_channels_per_connection: Option<usize>,
    pub metrics: Option<String>,
}

/// A key that may be given as one string or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayEntry {
    pub name: String,
    pub key: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    pub name: String,
    #[serde(default)]
    pub keys: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupEntry {
    pub name: String,
    #[serde(default)]
    pub members: Vec<String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetEntry {
    pub name: String,
    pub kind: String,
    pub address: String,
    pub login: Option<String>,
    pub host_key: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub record_data: bool,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyEntry {
    pub name: String,
    #[serde(rename = "match", default)]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub targets: Vec<String>,
    #[serde(default)]
    pub approvers: Vec<String>,
    pub approvals: Option<u32>,
    pub max_duration: String,
    pub default_duration: Option<String>,
    #[serde(default)]
    pub require_reason: bool,
    pub auto_approve: Option<AutoApproveEntry>,
    #[serde(default)]
    pub record_data: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoApproveEntry {
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub windows: Vec<String>,
}

/// The approver's own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApproverSettings {
    pub listen: String,
    pub data_dir: PathBuf,
    pub request_ttl: Duration,
    /// Recordings of sessions that ended longer ago are removed, each removal an audit event
    /// (`retention`; `None`: kept forever).
    pub retention: Option<Duration>,
    pub limits: ConnectionLimits,
    /// Requests one user may have waiting for approval at once
    /// (`max_pending_requests_per_user`, default 10).
    pub max_pending_requests_per_user: usize,
    /// Where Prometheus scrapes `/metrics` (`metrics`; `None`: no metrics listener).
    pub metrics: Option<SocketAddr>,
}

/// The default of `[approver] max_pending_requests_per_user`.
pub const DEFAULT_MAX_PENDING_REQUESTS_PER_USER: usize = 10;

/// What a server admits, the same keys in `[approver]` and `[gateway]` (defaults differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once, in all (`max_connections`, default 4096).
    pub max_connections: usize,
    /// Connections open at once from one source address (`max_connections_per_source`,
    /// default 512).
    pub max_connections_per_source: usize,
    /// New connections one source address (an IPv6 /64) may open per second, once its burst
    /// is spent (`new_connections_per_source_per_second`, default 32); more are dropped before
    /// the SSH handshake, against handshake floods.
    pub new_connections_per_source_per_second: u32,
    /// New connections one source may open at once before the rate applies
    /// (`new_connections_per_source_burst`, default 128: a CI job fanning out, or many users
    /// behind one NAT, start many at once).
    pub new_connections_per_source_burst: u32,
    /// Authenticated connections one user (or gateway) holds at once
    /// (`max_connections_per_user`; approver 16, gateway 32): a user's key is not a licence to
    /// fill the server.
    pub max_connections_per_user: usize,
    /// Of `max_connections`, how many ordinary users may never take together
    /// (`reserved_connections`, default 64, or a quarter of a smaller `max_connections`):
    /// admins and gateways always find room.
    pub reserved_connections: usize,
    /// How long a peer has to authenticate before it is dropped (`login_grace`, default 30s,
    /// OpenSSH's `LoginGraceTime`).
    pub login_grace: Duration,
    /// How long an authenticated connection may hold nothing live (no session, forward or
    /// running command) before it is closed (`idle_timeout`; approver 1m, gateway 15m).
    /// Gateways' own connections to the approver are exempt.
    pub idle_timeout: Duration,
}

impl ConnectionLimits {
    /// The approver's defaults: its clients run one command and go.
    pub const APPROVER: ConnectionLimits = ConnectionLimits {
        max_connections: 4096,
        max_connections_per_source: 512,
        new_connections_per_source_per_second: 32,
        new_connections_per_source_burst: 128,
        max_connections_per_user: 16,
        reserved_connections: 64,
        login_grace: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(60),
    };
    /// The gateway's defaults: an `ssh -N -L` waiting for its first forward is normal use.
    pub const GATEWAY: ConnectionLimits = ConnectionLimits {
        max_connections: 4096,
        max_connections_per_source: 512,
        new_connections_per_source_per_second: 32,
        new_connections_per_source_burst: 128,
        max_connections_per_user: 32,
        reserved_connections: 64,
        login_grace: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(15 * 60),
    };
}

/// The connection keys of one section, as written.
struct LimitKeys<'a> {
    max_connections: Option<usize>,
    per_source: Option<usize>,
    startups_per_second: Option<u32>,
    startup_burst: Option<u32>,
    per_user: Option<usize>,
    reserved: Option<usize>,
    login_grace: Option<&'a str>,
    idle_timeout: Option<&'a str>,
}

/// The default cap on channels (sessions, forwards) open at once on one gateway connection.
pub const DEFAULT_MAX_CHANNELS_PER_CONNECTION: usize = 64;

/// A gateway's own settings (used by the gateway process).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewaySettings {
    pub name: Option<String>,
    pub listen: String,
    pub data_dir: PathBuf,
    pub approver: String,
    pub approver_host_key: Option<String>,
    /// Every pinned grant-signing key (none: the gateway will not start).
    pub grant_signing_keys: Vec<String>,
    pub expiry_warning: Duration,
    pub fail_closed: bool,
    pub fail_after: Duration,
    pub record_input: bool,
    pub limits: ConnectionLimits,
    /// Channels (sessions, forwards) open at once on one connection (default 64).
    pub max_channels_per_connection: usize,
    /// Where Prometheus scrapes `/metrics` (`metrics`; `None`: no metrics listener).
    pub metrics: Option<SocketAddr>,
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

/// The rule for user, gateway, target and policy names: 1-64 of `A-Z a-z 0-9 - _ .`. Public
/// for the fuzz target `config`, which checks that every name a valid config holds obeys it.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

struct Problems(Vec<String>);

impl Problems {
    fn push(&mut self, field: impl std::fmt::Display, what: impl std::fmt::Display) {
        self.0.push(format!("{field}: {what}"));
    }
    /// An IP:PORT to listen on (a host name would leave which interface open to chance).
    fn address(&mut self, field: &str, text: &str) -> Option<SocketAddr> {
        match text.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.push(field, format!("{text:?} is not an IP:PORT address"));
                None
            }
        }
    }
    fn duration(&mut self, field: &str, text: &str) -> Option<Duration> {
        match parse_duration(text) {
            Ok(d) if d.is_zero() => {
                self.push(field, "must be longer than zero");
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.push(field, e);
                None
            }
        }
    }
    /// The connection limits of one section; zero is refused (it would shut the door), and the
    /// reserve must leave ordinary users some room.
    fn limits(
        &mut self,
        section: &str,
        keys: LimitKeys<'_>,
        d: ConnectionLimits,
    ) -> ConnectionLimits {
        for (key, v) in [
            ("max_connections", keys.max_connections),
            ("max_connections_per_source", keys.per_source),
            ("max_connections_per_user", keys.per_user),
        ] {
            if v == Some(0) {
                self.push(format!("{section}.{key}"), "must be at least 1");
            }
        }
        for (key, v) in [
            (
                "new_connections_per_source_per_second",
                keys.startups_per_second,
            ),
            ("new_connections_per_source_burst", keys.startup_burst),
        ] {
            // Zero would refuse every connection; past a million a second it limits nothing
            // and the arithmetic of the bucket loses its meaning.
            if v.is_some_and(|v| !(1..=1_000_000).contains(&v)) {
                self.push(format!("{section}.{key}"), "must be between 1 and 1000000");
            }
        }
        let mut duration = |key: &str, text: Option<&str>, default: Duration| {
            text.and_then(|t| self.duration(&format!("{section}.{key}"), t))
                .unwrap_or(default)
        };
        let login_grace = duration("login_grace", keys.login_grace, d.login_grace);
        let idle_timeout = duration("idle_timeout", keys.idle_timeout, d.idle_timeout);
        let limits = ConnectionLimits {
            max_connections: keys.max_connections.unwrap_or(d.max_connections),
            max_connections_per_source: keys.per_source.unwrap_or(d.max_connections_per_source),
            new_connections_per_source_per_second: keys
                .startups_per_second
                .unwrap_or(d.new_connections_per_source_per_second),
            new_connections_per_source_burst: keys
                .startup_burst
                .unwrap_or(d.new_connections_per_source_burst),
            max_connections_per_user: keys.per_user.unwrap_or(d.max_connections_per_user),
            // A small `max_connections` without a reserve of its own keeps a quarter back.
            reserved_connections: keys.reserved.unwrap_or_else(|| {
                d.reserved_connections
                    .min(keys.max_connections.unwrap_or(d.max_connections) / 4)
            }),
            login_grace,
            idle_timeout,
        };
        if limits.reserved_connections >= limits.max_connections {
            self.push(
                format!("{section}.reserved_connections"),
                format!(
                    "must be below max_connections ({}), or ordinary users could never connect",
                    limits.max_connections
                ),
            );
        }
        limits
    }
    fn name(&mut self, field: &str, name: &str) {
        if !valid_name(name) {
            self.push(
                field,
                format!("{name:?} is not a valid name (1-64 of A-Z a-z 0-9 - _ .)"),
            );
        }
    }
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
        let request_ttl = match &a.request_ttl {
            Some(t) => p
                .duration("approver.request_ttl", t)
                .unwrap_or(Duration::from_secs(86_400)),
            None => Duration::from_secs(86_400),
        };
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
        let expiry_warning = match &g.expiry_warning {
            Some(t) => p
                .duration("gateway.expiry_warning", t)
                .unwrap_or(Duration::from_secs(300)),
            None => Duration::from_secs(300),
        };
        let fail_closed = match g.fail_mode.as_deref() {
            None | Some("open-until-expiry") => false,
            Some("closed") => true,
            Some(other) => {
                p.push(
                    "gateway.fail_mode",
                    format!("{other:?} is not one of \"open-until-expiry\", \"closed\""),
                );
                false
            }
        };
        let fail_after = match &g.fail_after {
            Some(t) => p
                .duration("gateway.fail_after", t)
                .unwrap_or(Duration::from_secs(30)),
            None => Duration::from_secs(30),
        };
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
            fail_closed,
            fail_after,
            record_input: g.record_input.unwrap_or(true),
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
        let kind = match t.kind.as_str() {
            "tcp" => TargetKind::Tcp,
            "ssh" => TargetKind::Ssh,
            other => {
                p.push(
                    format!("{field}.kind"),
                    format!("{other:?} is not one of \"tcp\" (forwarding only), \"ssh\""),
                );
                TargetKind::Tcp
            }
        };
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
        let max_duration = max.unwrap_or(Duration::from_secs(3600));
        let default_duration = default.unwrap_or(max_duration.min(Duration::from_secs(3600)));
        if default_duration > max_duration {
            p.push(
                format!("{field}.default_duration"),
                "is longer than max_duration",
            );
        }
        let approvals = match (pe.approvals, pe.approvers.is_empty()) {
            (Some(0), _) => {
                p.push(format!("{field}.approvals"), "must be at least 1");
                1
            }
            (Some(n), true) => {
                p.push(
                    format!("{field}.approvals"),
                    format!("asks for {n} approvals but `approvers` names no group"),
                );
                n
            }
            (Some(n), false) => n,
            (None, _) => 1,
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

/// Split `HOST:PORT` (or `[v6]:PORT`).
pub fn split_host_port(addr: &str) -> Result<(String, u16), String> {
    let err = || format!("{addr:?} is not HOST:PORT");
    let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
        let (h, p) = rest.split_once("]:").ok_or_else(err)?;
        (h, p)
    } else {
        addr.rsplit_once(':').ok_or_else(err)?
    };
    if host.is_empty() || host.contains(':') && !addr.starts_with('[') {
        return Err(err());
    }
    let port: u16 = port.parse().map_err(|_| err())?;
    if port == 0 {
        return Err(err());
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub const ALICE: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGoHkF4rbbzfHvvGr0tPbMM1bFsHr3OxCzNd0R3dTNNb alice";
    pub const BOB: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHwH4DnFWu5s5SxdKbJLxTGIbWKs/x6HZfq9J0zS4DzT bob";

    fn base() -> String {
        format!(
            r#"
[approver]
data_dir = "/tmp/x"
request_ttl = "1h"

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
address = "127.0.0.1:5432"
labels = {{ env = "prod" }}

[[policies]]
name = "prod"
match = {{ env = "prod" }}
approvers = ["dba"]
approvals = 1
max_duration = "4h"
"#
        )
    }

    #[test]
    fn a_good_file_validates() {
        let c = parse(&base()).unwrap();
        assert_eq!(c.catalog.users.len(), 2);
        assert_eq!(
            c.catalog.policies[0].default_duration,
            Duration::from_secs(3600)
        );
        assert_eq!(c.approver.unwrap().request_ttl, Duration::from_secs(3600));
        assert!(c.catalog.groups["dba"].contains("bob"));
    }

    fn problems(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn connection_limits_default_and_validate() {
        let c = parse(&base()).unwrap();
        assert_eq!(c.approver.unwrap().limits, ConnectionLimits::APPROVER);
        let tuned = base().replace(
            "request_ttl = \"1h\"",
            "request_ttl = \"1h\"\nmax_connections = 10\nmax_connections_per_source = 2\nlogin_grace = \"5s\"",
        );
        let limits = parse(&tuned).unwrap().approver.unwrap().limits;
        assert_eq!(limits.max_connections, 10);
        assert_eq!(limits.max_connections_per_source, 2);
        assert_eq!(limits.login_grace, Duration::from_secs(5));
        assert_eq!(
            limits.reserved_connections, 2,
            "a quarter of a small budget"
        );
        let over = base().replace(
            "request_ttl = \"1h\"",
            "request_ttl = \"1h\"\nmax_connections = 10\nreserved_connections = 10\nidle_timeout = \"0s\"",
        );
        let e = problems(&over);
        assert!(
            e.contains("approver.reserved_connections: must be below max_connections (10)"),
            "{e}"
        );
        assert!(
            e.contains("approver.idle_timeout: must be longer than zero"),
            "{e}"
        );
        let rate = base().replace(
            "request_ttl = \"1h\"",
            "request_ttl = \"1h\"\nnew_connections_per_source_per_second = 5\nnew_connections_per_source_burst = 9",
        );
        let limits = parse(&rate).unwrap().approver.unwrap().limits;
        assert_eq!(limits.new_connections_per_source_per_second, 5);
        assert_eq!(limits.new_connections_per_source_burst, 9);
        let e = problems(&base().replace(
            "request_ttl = \"1h\"",
            "request_ttl = \"1h\"\nnew_connections_per_source_per_second = 0\nnew_connections_per_source_burst = 2000000",
        ));
        assert!(
            e.contains(
                "approver.new_connections_per_source_per_second: must be between 1 and 1000000"
            ),
            "{e}"
        );
        assert!(
            e.contains("approver.new_connections_per_source_burst: must be between 1 and 1000000"),
            "{e}"
        );
        let zero = base().replace(
            "request_ttl = \"1h\"",
            "request_ttl = \"1h\"\nmax_connections_per_source = 0\nlogin_grace = \"0s\"",
        );
        let e = problems(&zero);
        assert!(
            e.contains("approver.max_connections_per_source: must be at least 1"),
            "{e}"
        );
        assert!(
            e.contains("approver.login_grace: must be longer than zero"),
            "{e}"
        );
    }

    #[test]
    fn pending_requests_per_user_default_and_validate() {
        let c = parse(&base()).unwrap();
        assert_eq!(c.approver.unwrap().max_pending_requests_per_user, 10);
        let set = |v: &str| {
            base().replace(
                "request_ttl = \"1h\"",
                &format!("request_ttl = \"1h\"\nmax_pending_requests_per_user = {v}"),
            )
        };
        let c = parse(&set("3")).unwrap();
        assert_eq!(c.approver.unwrap().max_pending_requests_per_user, 3);
        let e = problems(&set("0"));
        assert!(
            e.contains("approver.max_pending_requests_per_user: must be at least 1"),
            "{e}"
        );
        assert!(problems(&set("-1")).contains("max_pending_requests_per_user"));
    }

    #[test]
    fn metrics_listeners_are_off_by_default_and_validated() {
        let c = parse(&base()).unwrap();
        assert_eq!(c.approver.unwrap().metrics, None);
        let set = |v: &str| {
            base().replace(
                "request_ttl = \"1h\"",
                &format!("request_ttl = \"1h\"\nmetrics = {v}"),
            )
        };
        let c = parse(&set("\"127.0.0.1:9223\"")).unwrap();
        assert_eq!(
            c.approver.unwrap().metrics,
            Some("127.0.0.1:9223".parse().unwrap())
        );
        let e = problems(&set("\"localhost:9223\""));
        assert!(
            e.contains("approver.metrics: \"localhost:9223\" is not an IP:PORT address"),
            "{e}"
        );
        assert!(problems(&set("9223")).contains("metrics"));
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = problems(&base().replace("approvals = 1", "aprovals = 1"));
        assert!(e.contains("aprovals"), "{e}");
    }

    #[test]
    fn bad_durations_are_named() {
        let e = problems(&base().replace("\"4h\"", "\"four hours\""));
        assert!(
            e.contains("policies[0] (prod).max_duration: bad duration"),
            "{e}"
        );
    }

    #[test]
    fn duplicates_and_shared_keys_are_named() {
        let dup = base().replace("name = \"bob\"", "name = \"alice\"");
        let e = problems(&dup);
        assert!(e.contains("users[1].name: duplicate user \"alice\""), "{e}");
        let shared = base().replace(BOB, ALICE);
        let e = problems(&shared);
        assert!(e.contains("key is already registered to user alice"), "{e}");
    }

    #[test]
    fn unknown_groups_are_named() {
        let e = problems(&base().replace("approvers = [\"dba\"]", "approvers = [\"sre\"]"));
        assert!(e.contains("approvers[0]: unknown group \"sre\""), "{e}");
    }

    #[test]
    fn bad_keys_and_windows_are_named() {
        let e = problems(&base().replace(BOB, "ssh-ed25519 garbage"));
        assert!(
            e.contains("users[1] (bob).keys[0]: invalid public key"),
            "{e}"
        );
        let e = problems(&format!(
            "{}auto_approve = {{ groups = [\"dev\"], windows = [\"Someday\"] }}\n",
            base()
        ));
        assert!(e.contains("auto_approve.windows[0]: bad window"), "{e}");
    }

    #[test]
    fn all_problems_are_reported_at_once() {
        let e = parse(
            &base()
                .replace("\"4h\"", "\"x\"")
                .replace("approvers = [\"dba\"]", "approvers = [\"nope\"]"),
        )
        .unwrap_err();
        assert_eq!(e.problems.len(), 2, "{e}");
    }

    #[test]
    fn host_port() {
        assert_eq!(split_host_port("db:5432"), Ok(("db".into(), 5432)));
        assert_eq!(split_host_port("[::1]:22"), Ok(("::1".into(), 22)));
        assert!(split_host_port("db").is_err());
        assert!(split_host_port("db:0").is_err());
        assert!(split_host_port("::1:22").is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,200}") { let _ = parse(&s); }

        #[test]
        fn mutated_config_never_panics(pos in 0usize..2000, byte in any::<char>()) {
            let mut text: Vec<char> = base().chars().collect();
            let pos = pos % text.len();
            text[pos] = byte;
            let s: String = text.into_iter().collect();
            let _ = parse(&s);
        }
    }
}
