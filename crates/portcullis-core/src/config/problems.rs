//! The collector every section reports into, and the checks of single values that several
//! sections share (names, listen addresses, durations). Owns the wording of those problems;
//! must not know any section.

use std::net::SocketAddr;
use std::time::Duration;

use crate::time::parse_duration;

use super::ConfigError;

/// The rule for user, gateway, target and policy names: 1-64 of `A-Z a-z 0-9 - _ .`. Public
/// for the fuzz target `config`, which checks that every name a valid config holds obeys it.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Every problem found so far, each `field: what`, in the order found.
#[derive(Default)]
pub(super) struct Problems(pub(super) Vec<String>);

impl Problems {
    /// `value` if nothing was found wrong, else every problem.
    pub(super) fn into_result<T>(self, value: T) -> Result<T, ConfigError> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(ConfigError { problems: self.0 })
        }
    }
    pub(super) fn push(&mut self, field: impl std::fmt::Display, what: impl std::fmt::Display) {
        self.0.push(format!("{field}: {what}"));
    }
    /// An IP:PORT to listen on (a host name would leave which interface open to chance).
    pub(super) fn address(&mut self, field: &str, text: &str) -> Option<SocketAddr> {
        match text.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.push(field, format!("{text:?} is not an IP:PORT address"));
                None
            }
        }
    }
    pub(super) fn duration(&mut self, field: &str, text: &str) -> Option<Duration> {
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
    /// A size such as `"128 MiB"` (`words::parse_bytes`), at least `min` bytes.
    pub(super) fn size(&mut self, field: &str, text: &str, min: u64) -> Option<u64> {
        match crate::words::parse_bytes(text) {
            Ok(n) if n < min => {
                self.push(
                    field,
                    format!("must be at least {}", crate::words::bytes(min)),
                );
                None
            }
            Ok(n) => Some(n),
            Err(e) => {
                self.push(field, e);
                None
            }
        }
    }
    pub(super) fn name(&mut self, field: &str, name: &str) {
        if !valid_name(name) {
            self.push(
                field,
                format!("{name:?} is not a valid name (1-64 of A-Z a-z 0-9 - _ .)"),
            );
        }
    }
}
