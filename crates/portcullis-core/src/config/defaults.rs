//! Every default of the configuration file, named once. The validator fills in what a file
//! leaves out from here, the CLI's help prints them from here, and a test holds the key table
//! in docs/operators.md to them. Values only: the rules a value must obey live with its section.

use std::time::Duration;

use super::gateway::FailMode;
use super::limits::ConnectionLimits;

/// `[approver] listen`: the control-plane port (SPEC). Also where the thin clients and a
/// gateway without `approver` look for the approver.
pub const DEFAULT_APPROVER_LISTEN: &str = "127.0.0.1:2223";

/// `[approver] request_ttl`: undecided requests lapse after this.
pub const DEFAULT_REQUEST_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// `[approver] max_pending_requests_per_user`.
pub const DEFAULT_MAX_PENDING_REQUESTS_PER_USER: usize = 10;

/// `[gateway] listen`: the port developers ssh to (SPEC).
pub const DEFAULT_GATEWAY_LISTEN: &str = "0.0.0.0:2222";

/// `[gateway] expiry_warning`: how long before its grant ends a terminal session is told.
pub const DEFAULT_EXPIRY_WARNING: Duration = Duration::from_secs(5 * 60);

/// `[gateway] fail_mode`: a gateway cut off from the approver still honours what it was
/// granted; closing instead is the operator's choice.
pub const DEFAULT_FAIL_MODE: FailMode = FailMode::OpenUntilExpiry;

/// `[gateway] fail_after`: how long the approver link may be down before
/// `fail_mode = "closed"` shuts the gateway.
pub const DEFAULT_FAIL_AFTER: Duration = Duration::from_secs(30);

/// `[gateway] record_input`: keystrokes are recorded unless a file says otherwise.
pub const DEFAULT_RECORD_INPUT: bool = true;

/// `[gateway] max_channels_per_connection`: sessions and forwards open at once on one
/// connection.
pub const DEFAULT_MAX_CHANNELS_PER_CONNECTION: usize = 64;

/// `[gateway] max_channel_memory_per_user`: what one user's open channels may make the gateway
/// hold at worst, all their connections together (`portcullis_gateway`'s `channel_memory`
/// says what each kind of channel counts for): with the connections' own buffers, about
/// 290 MiB for one user at the defaults.
pub const DEFAULT_MAX_CHANNEL_MEMORY_PER_USER: u64 = 128 << 20;

/// The least `max_channel_memory_per_user` accepted: room for one recorded session, the
/// largest kind of channel, and then some.
pub const MIN_CHANNEL_MEMORY_PER_USER: u64 = 8 << 20;

/// `[[policies]] approvals`: distinct approvers needed, the requester never counted.
pub const DEFAULT_APPROVALS: u32 = 1;

/// `[[policies]] default_duration` when absent: the policy's `max_duration`, but no longer
/// than this, so a generous maximum does not become everyone's habit.
pub const DEFAULT_DURATION_CAP: Duration = Duration::from_secs(60 * 60);

impl ConnectionLimits {
    /// `[approver]`'s connection defaults: its clients run one command and go.
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
    /// `[gateway]`'s connection defaults: the approver's, except that an `ssh -N -L` waiting
    /// for its first forward is normal use, and one user holds more connections at once.
    pub const GATEWAY: ConnectionLimits = ConnectionLimits {
        max_connections_per_user: 32,
        idle_timeout: Duration::from_secs(15 * 60),
        ..ConnectionLimits::APPROVER
    };
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::Choice;
    use crate::time::parse_duration;

    /// The operators' key table, which states every default in words.
    const OPERATORS: &str = include_str!("../../../../docs/operators.md");

    /// `[section] key` → (its default as the table writes it in backticks, the whole cell).
    /// A row naming several keys with as many backticked defaults gives each its own.
    fn documented() -> HashMap<String, (String, String)> {
        let ticked = |cell: &str| -> Vec<String> {
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect()
        };
        let mut out = HashMap::new();
        for line in OPERATORS.lines().filter(|l| l.starts_with("| `[")) {
            let cells: Vec<&str> = line.split(" | ").collect();
            let (keys, defaults) = (ticked(cells[0]), ticked(cells[1]));
            let Some((section, _)) = keys[0].split_once(' ') else {
                continue;
            };
            for (i, key) in keys.iter().enumerate() {
                let key = match i {
                    0 => key.clone(),
                    _ => format!("{section} {key}"),
                };
                let value = match defaults.len() == keys.len() {
                    true => defaults[i].clone(),
                    false => defaults.first().cloned().unwrap_or_default(),
                };
                out.insert(key, (value, cells[1].to_string()));
            }
        }
        out
    }

    #[test]
    fn the_operators_guide_states_these_defaults() {
        let d = documented();
        let text = |key: &str| d[key].0.clone();
        let duration = |key: &str| parse_duration(&d[key].0).unwrap();
        assert_eq!(text("[approver] listen"), DEFAULT_APPROVER_LISTEN);
        assert_eq!(duration("[approver] request_ttl"), DEFAULT_REQUEST_TTL);
        assert_eq!(
            text("[approver] max_pending_requests_per_user"),
            DEFAULT_MAX_PENDING_REQUESTS_PER_USER.to_string()
        );
        assert_eq!(text("[gateway] listen"), DEFAULT_GATEWAY_LISTEN);
        assert!(d["[gateway] approver"].1.contains(DEFAULT_APPROVER_LISTEN));
        assert_eq!(duration("[gateway] expiry_warning"), DEFAULT_EXPIRY_WARNING);
        assert_eq!(text("[gateway] fail_mode"), DEFAULT_FAIL_MODE.spelling());
        assert_eq!(duration("[gateway] fail_after"), DEFAULT_FAIL_AFTER);
        assert_eq!(
            text("[gateway] record_input"),
            DEFAULT_RECORD_INPUT.to_string()
        );
        assert_eq!(
            text("[gateway] max_channels_per_connection"),
            DEFAULT_MAX_CHANNELS_PER_CONNECTION.to_string()
        );
        assert_eq!(
            crate::words::parse_bytes(&text("[gateway] max_channel_memory_per_user")),
            Ok(DEFAULT_MAX_CHANNEL_MEMORY_PER_USER)
        );
        assert_eq!(
            text("[[policies]] approvals"),
            DEFAULT_APPROVALS.to_string()
        );
        let cap = &d["[[policies]] default_duration"].1;
        let stated = cap.rsplit('`').nth(1).unwrap();
        assert_eq!(
            parse_duration(stated).unwrap(),
            DEFAULT_DURATION_CAP,
            "{cap}"
        );
        for (section, l) in [
            ("[approver]", ConnectionLimits::APPROVER),
            ("[gateway]", ConnectionLimits::GATEWAY),
        ] {
            let key = |k: &str| format!("{section} {k}");
            for (k, v) in [
                ("max_connections", l.max_connections),
                ("max_connections_per_source", l.max_connections_per_source),
                ("max_connections_per_user", l.max_connections_per_user),
                ("reserved_connections", l.reserved_connections),
            ] {
                assert_eq!(text(&key(k)), v.to_string(), "{section} {k}");
            }
            for (k, v) in [
                (
                    "new_connections_per_source_per_second",
                    l.new_connections_per_source_per_second,
                ),
                (
                    "new_connections_per_source_burst",
                    l.new_connections_per_source_burst,
                ),
            ] {
                assert_eq!(text(&key(k)), v.to_string(), "{section} {k}");
            }
            assert_eq!(duration(&key("login_grace")), l.login_grace, "{section}");
            assert_eq!(duration(&key("idle_timeout")), l.idle_timeout, "{section}");
        }
    }
}
