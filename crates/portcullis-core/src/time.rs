//! Wall-clock instants and the clock they come from.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, UTC. Grants, requests and audit records carry these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The instant `d` after this one (saturating).
    pub fn plus(self, d: Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(d.as_millis().min(u64::MAX as u128) as u64),
        )
    }

    /// The instant `d` before this one (saturating at the epoch).
    pub fn minus(self, d: Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_sub(d.as_millis().min(u64::MAX as u128) as u64),
        )
    }

    /// How long from `self` until `later`; zero when `later` is not after `self`.
    pub fn until(self, later: Timestamp) -> Duration {
        Duration::from_millis(later.0.saturating_sub(self.0))
    }

    /// Whole seconds since the epoch.
    pub fn secs(self) -> u64 {
        self.0 / 1000
    }

    /// As a `SystemTime`, for formatting.
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0)
    }

    /// RFC 3339 in UTC with second precision, e.g. `2026-11-27T19:36:57Z`.
    pub fn rfc3339(self) -> String {
        // humantime cannot format past year 9999; a timestamp from a peer could be anything.
        const MAX: u64 = 253_402_300_799_000;
        let t = Timestamp(self.0.min(MAX));
        let mut out = String::new();
        let _ = std::fmt::write(
            &mut out,
            format_args!("{}", humantime::format_rfc3339_seconds(t.to_system_time())),
        );
        out
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.rfc3339())
    }
}

/// Where "now" comes from. Every deadline in portcullis is read through this trait so that
/// policy windows and expiry are tested with an injected clock.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis().min(u64::MAX as u128) as u64)
            .unwrap_or(0);
        Timestamp(ms)
    }
}

/// A clock that only moves when told to: for tests and simulations.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn new(at: Timestamp) -> Self {
        ManualClock(AtomicU64::new(at.0))
    }
    pub fn set(&self, at: Timestamp) {
        self.0.store(at.0, Ordering::SeqCst);
    }
    pub fn advance(&self, d: Duration) {
        self.0
            .fetch_add(d.as_millis().min(u64::MAX as u128) as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

/// A clock that never goes backwards: it reports the latest instant it has seen. A wall-clock
/// step back (NTP, an operator, a VM resume) therefore never revives an expired grant or
/// reopens a lapsed request; the time simply stands still until the wall clock catches up.
#[derive(Debug)]
pub struct HighWaterClock<C> {
    inner: C,
    high: AtomicU64,
}

impl<C: Clock> HighWaterClock<C> {
    pub fn new(inner: C) -> Self {
        HighWaterClock {
            inner,
            high: AtomicU64::new(0),
        }
    }

    /// Start no earlier than `at` (for example the newest instant a store has recorded).
    pub fn not_before(self, at: Timestamp) -> Self {
        self.raise(at);
        self
    }

    /// From now on, no earlier than `at` (a gateway told the approver's time by a heartbeat).
    pub fn raise(&self, at: Timestamp) {
        self.high.fetch_max(at.0, Ordering::SeqCst);
    }
}

impl<C: Clock> Clock for HighWaterClock<C> {
    fn now(&self) -> Timestamp {
        let now = self.inner.now().0;
        let prev = self.high.fetch_max(now, Ordering::SeqCst);
        Timestamp(prev.max(now))
    }
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

/// Parse a humantime duration (`90s`, `15m`, `1h30m`) with an error that says what is accepted.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("bad duration {s:?}: {e} (use e.g. 90s, 15m, 1h30m)"))
}

/// A duration the way people read it: `1h 30m`, `59s`, `1 day 3h`; sub-second parts dropped.
/// [`crate::words::duration`]: humantime's own would say `1day` and count months of 30.44 days.
pub fn format_duration(d: Duration) -> String {
    crate::words::duration(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_trip_and_errors_teach() {
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("soon").unwrap_err().contains("15m"));
        assert_eq!(format_duration(Duration::from_millis(90_500)), "1m 30s");
        assert_eq!(
            format_duration(Duration::from_secs(400 * 86_400)),
            "400 days"
        );
    }

    #[test]
    fn a_clock_step_back_never_revives_an_expired_grant() {
        use crate::model::Grant;
        let wall = std::sync::Arc::new(ManualClock::new(Timestamp(10_000)));
        let clock = HighWaterClock::new(wall.clone());
        let grant = Grant {
            id: 1,
            request: 1,
            user: "alice".into(),
            target: "db".into(),
            policy: "p".into(),
            issued_at: Timestamp(10_000),
            expires_at: Timestamp(20_000),
            approvers: vec![],
            revoked: None,
        };
        assert!(grant.is_active(clock.now()));
        wall.set(Timestamp(25_000));
        assert!(!grant.is_active(clock.now()), "expired");
        wall.set(Timestamp(15_000)); // the wall clock jumps back ten seconds
        assert!(
            !grant.is_active(clock.now()),
            "still expired after the jump back"
        );
        assert_eq!(clock.now(), Timestamp(25_000));
        wall.set(Timestamp(26_000));
        assert_eq!(clock.now(), Timestamp(26_000));
        let started = HighWaterClock::new(ManualClock::new(Timestamp(5))).not_before(Timestamp(9));
        assert_eq!(started.now(), Timestamp(9));
    }

    #[test]
    fn far_future_timestamps_format_without_panicking() {
        assert_eq!(Timestamp(u64::MAX).rfc3339(), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(Timestamp(1000));
        assert_eq!(c.now(), Timestamp(1000));
        c.advance(Duration::from_secs(2));
        assert_eq!(c.now(), Timestamp(3000));
    }
}
