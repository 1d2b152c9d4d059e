//! `[approver]`: the approver's own settings.
//!
//! Owns the section's TOML shape and its validated form. Must not touch other sections: what
//! the gateway needs of `[approver]` it reads from the file itself.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::limits::ConnectionLimits;

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
