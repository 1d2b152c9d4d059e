//! `[gateway]`: a gateway's own settings (used by the gateway process).
//!
//! Owns the section's TOML shape and its validated form. Must not touch the catalog: which
//! gateways the approver accepts is `[[gateways]]`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::limits::ConnectionLimits;

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
    /// Where Prometheus scrapes `/metrics` (`metrics`; `None`: no metrics listener).
    pub metrics: Option<SocketAddr>,
}
