//! `[gateway]`: a gateway's own settings (used by the gateway process).
//!
//! Owns the section's TOML shape and its validated form. Must not touch the catalog: which
//! gateways the approver accepts is `[[gateways]]`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::keys;

use super::approver::ApproverFile;
use super::defaults::{
    DEFAULT_APPROVER_LISTEN, DEFAULT_EXPIRY_WARNING, DEFAULT_FAIL_AFTER, DEFAULT_FAIL_MODE,
    DEFAULT_GATEWAY_LISTEN, DEFAULT_MAX_CHANNELS_PER_CONNECTION,
    DEFAULT_MAX_CHANNEL_MEMORY_PER_USER, DEFAULT_RECORD_INPUT, MIN_CHANNEL_MEMORY_PER_USER,
};
use super::gateways::GatewayEntry;
use super::limits::{self, ConnectionLimits, LimitKeys};
use super::problems::Problems;

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
    pub max_channel_memory_per_user: Option<String>,
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

/// What a gateway does while the approver is away (`fail_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// Enforce the signed grants the replica holds to their end; new requests wait.
    OpenUntilExpiry,
    /// Once the link has been down longer than `fail_after`, cut every session and refuse new
    /// ones until it is back.
    Closed,
}

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
    pub fail_mode: FailMode,
    pub fail_after: Duration,
    pub record_input: bool,
    pub limits: ConnectionLimits,
    /// Channels (sessions, forwards) open at once on one connection (default 64).
    pub max_channels_per_connection: usize,
    /// Bytes one user's open channels may make the gateway hold at worst, over all their
    /// connections (default 128 MiB): each channel counts for what its kind can hold.
    pub max_channel_memory_per_user: u64,
    /// Where Prometheus scrapes `/metrics` (`metrics`; `None`: no metrics listener).
    pub metrics: Option<SocketAddr>,
}

/// `[gateway]` with its defaults filled in. The approver it connects to defaults to the
/// `[approver]` of the same file, and its `name` must be one of `entries` where any are listed.
pub(super) fn validate(
    p: &mut Problems,
    g: &GatewayFile,
    approver: Option<&ApproverFile>,
    entries: &[GatewayEntry],
) -> GatewaySettings {
    let listen = g
        .listen
        .clone()
        .unwrap_or_else(|| DEFAULT_GATEWAY_LISTEN.to_string());
    p.address("gateway.listen", &listen);
    let approver = g
        .approver
        .clone()
        .or_else(|| approver.and_then(|a| a.listen.clone()))
        .unwrap_or_else(|| DEFAULT_APPROVER_LISTEN.to_string());
    let grant_signing_keys = pinned_keys(p, g);
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
        if !entries.is_empty() && !entries.iter().any(|e| &e.name == name) {
            p.push(
                "gateway.name",
                format!("{name:?} is not one of the [[gateways]] entries"),
            );
        }
    }
    let limits = limits::validate(
        p,
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
    let max_channel_memory_per_user = g
        .max_channel_memory_per_user
        .as_deref()
        .and_then(|t| {
            p.size(
                "gateway.max_channel_memory_per_user",
                t,
                MIN_CHANNEL_MEMORY_PER_USER,
            )
        })
        .unwrap_or(DEFAULT_MAX_CHANNEL_MEMORY_PER_USER);
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
        max_channel_memory_per_user,
        metrics: g
            .metrics
            .as_deref()
            .and_then(|m| p.address("gateway.metrics", m)),
    }
}

/// The approver's keys the gateway pins: its host key, and every grant-signing key listed.
fn pinned_keys(p: &mut Problems, g: &GatewayFile) -> Vec<String> {
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
    grant_signing_keys
}
