//! The connection keys `[approver]` and `[gateway]` share (`max_connections`, `login_grace`, …):
//! what a server admits. Owns their validated form and its checks; each section passes its own
//! defaults.

use std::time::Duration;

use super::problems::Problems;

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

/// The connection keys of one section, as written.
pub(super) struct LimitKeys<'a> {
    pub(super) max_connections: Option<usize>,
    pub(super) per_source: Option<usize>,
    pub(super) startups_per_second: Option<u32>,
    pub(super) startup_burst: Option<u32>,
    pub(super) per_user: Option<usize>,
    pub(super) reserved: Option<usize>,
    pub(super) login_grace: Option<&'a str>,
    pub(super) idle_timeout: Option<&'a str>,
}

/// The connection limits of one section; zero is refused (it would shut the door), and the
/// reserve must leave ordinary users some room.
pub(super) fn validate(
    p: &mut Problems,
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
            p.push(format!("{section}.{key}"), "must be at least 1");
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
            p.push(format!("{section}.{key}"), "must be between 1 and 1000000");
        }
    }
    let mut duration = |key: &str, text: Option<&str>, default: Duration| {
        text.and_then(|t| p.duration(&format!("{section}.{key}"), t))
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
        p.push(
            format!("{section}.reserved_connections"),
            format!(
                "must be below max_connections ({}), or ordinary users could never connect",
                limits.max_connections
            ),
        );
    }
    limits
}
