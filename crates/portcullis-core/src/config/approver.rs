//! `[approver]`: the approver's own settings.
//!
//! Owns the section's TOML shape and its validated form. Must not touch other sections: what
//! the gateway needs of `[approver]` it reads from the file itself.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::defaults::{
    DEFAULT_APPROVER_LISTEN, DEFAULT_MAX_PENDING_REQUESTS_PER_USER, DEFAULT_REQUEST_TTL,
};
use super::limits::{self, ConnectionLimits, LimitKeys};
use super::problems::Problems;

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

/// `[approver]` with its defaults filled in.
pub(super) fn validate(p: &mut Problems, a: &ApproverFile) -> ApproverSettings {
    let listen = a
        .listen
        .clone()
        .unwrap_or_else(|| DEFAULT_APPROVER_LISTEN.to_string());
    p.address("approver.listen", &listen);
    let request_ttl = a
        .request_ttl
        .as_deref()
        .and_then(|t| p.duration("approver.request_ttl", t))
        .unwrap_or(DEFAULT_REQUEST_TTL);
    let limits = limits::validate(
        p,
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
}
