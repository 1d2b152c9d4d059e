//! A token bucket per source address on new connections, checked in the accept loop before
//! russh sees a byte: each handshake costs the server a key exchange (an X25519 or ML-KEM
//! operation and a host-key signature), so a flood of them from one place is refused at the
//! door, as OpenSSH 9.8's `PerSourcePenalties` does for sources that misbehave. Other sources
//! keep their own buckets and are served throughout.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

/// How many sources are tracked at once. A bucket costs some 50 bytes, so the table stays
/// under a few MiB however many addresses a flood comes from.
pub const MAX_TRACKED_SOURCES: usize = 65_536;

/// How often, at most, the table is swept of sources whose bucket has filled again.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// What [`StartupRate::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Within the source's rate.
    Admitted,
    /// Over it: drop the connection.
    Refused,
    /// The table is full of sources still busy, so this new one is not tracked and is let in
    /// (OpenSSH's `PerSourcePenalties overflow=permissive`, its default): refusing every new
    /// source once the table is full would hand an attacker with many addresses a way to lock
    /// everyone else out. The budgets on open connections still apply to it.
    Untracked,
}

/// Buckets by source: `burst` new connections at once, refilled at `per_second`.
pub struct StartupRate {
    per_second: f64,
    burst: f64,
    buckets: HashMap<IpAddr, Bucket>,
    last_sweep: Option<Instant>,
    cap: usize,
}

/// The source a connection is counted under: its address, or for IPv6 its /64 (one host is
/// commonly handed a whole /64, so per-address buckets would be no limit at all).
fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl StartupRate {
    pub fn new(per_second: u32, burst: u32) -> StartupRate {
        Self::with_cap(per_second, burst, MAX_TRACKED_SOURCES)
    }

    fn with_cap(per_second: u32, burst: u32, cap: usize) -> StartupRate {
        StartupRate {
            per_second: f64::from(per_second.max(1)),
            burst: f64::from(burst.max(1)),
            buckets: HashMap::new(),
            last_sweep: None,
            cap,
        }
    }

    /// Take one token from `ip`'s bucket if it has one.
    pub fn admit(&mut self, ip: IpAddr, now: Instant) -> Admission {
        let source = source_of(ip);
        if !self.buckets.contains_key(&source) && self.buckets.len() >= self.cap {
            self.sweep(now);
            if self.buckets.len() >= self.cap {
                return Admission::Untracked;
            }
        } else if self
            .last_sweep
            .is_none_or(|t| now.saturating_duration_since(t) >= SWEEP_EVERY * 10)
        {
            // Now and then even below the cap, so that memory taken by a burst of sources
            // is given back.
            self.sweep(now);
        }
        let (per_second, burst) = (self.per_second, self.burst);
        let bucket = self.buckets.entry(source).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Admission::Admitted
        } else {
            Admission::Refused
        }
    }

    /// Forget the sources whose bucket would be full by now: a full bucket is what an unknown
    /// source gets, so nothing is lost by dropping it. At most once a second.
    fn sweep(&mut self, now: Instant) {
        if self
            .last_sweep
            .is_some_and(|t| now.saturating_duration_since(t) < SWEEP_EVERY)
        {
            return;
        }
        self.last_sweep = Some(now);
        let (per_second, burst) = (self.per_second, self.burst);
        self.buckets.retain(|_, b| {
            b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_second < burst
        });
    }

    /// How many sources are tracked now.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse()
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
    }

    #[test]
    fn a_burst_then_the_rate() {
        let mut r = StartupRate::new(2, 4);
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        for _ in 0..4 {
            assert_eq!(r.admit(a, t0), Admission::Admitted);
        }
        assert_eq!(r.admit(a, t0), Admission::Refused);
        // Another source has its own bucket.
        assert_eq!(r.admit(ip("192.0.2.2"), t0), Admission::Admitted);
        // Half a second later, one more token.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(r.admit(a, t1), Admission::Admitted);
        assert_eq!(r.admit(a, t1), Admission::Refused);
        // Refused attempts cost nothing: after a quiet while the burst is back.
        let t2 = t1 + Duration::from_secs(2);
        for _ in 0..4 {
            assert_eq!(r.admit(a, t2), Admission::Admitted);
        }
    }

    #[test]
    fn ipv6_counts_by_64() {
        let mut r = StartupRate::new(1, 1);
        let t = Instant::now();
        assert_eq!(r.admit(ip("2001:db8::1"), t), Admission::Admitted);
        assert_eq!(r.admit(ip("2001:db8::2"), t), Admission::Refused);
        assert_eq!(r.admit(ip("2001:db8:0:1::1"), t), Admission::Admitted);
        // A v4-mapped address is its v4 source.
        assert_eq!(r.admit(ip("192.0.2.9"), t), Admission::Admitted);
        assert_eq!(r.admit(ip("::ffff:192.0.2.9"), t), Admission::Refused);
    }

    #[test]
    fn the_table_is_bounded_and_idle_sources_are_forgotten() {
        let mut r = StartupRate::with_cap(10, 10, 100);
        let t0 = Instant::now();
        for i in 0..100u32 {
            let a = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            assert_eq!(r.admit(a, t0), Admission::Admitted);
        }
        assert_eq!(r.tracked(), 100);
        // Full of busy sources: a new one is let in untracked, the table does not grow.
        assert_eq!(r.admit(ip("192.0.2.1"), t0), Admission::Untracked);
        assert_eq!(r.tracked(), 100);
        // Once their buckets have filled again they are swept, and new sources tracked.
        let later = t0 + Duration::from_secs(2);
        assert_eq!(r.admit(ip("192.0.2.1"), later), Admission::Admitted);
        assert_eq!(r.tracked(), 1);
    }
}
