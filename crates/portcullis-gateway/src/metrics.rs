//! The gateway's metrics (`[gateway] metrics`), encoded by `prometheus-client` and served at
//! `/metrics` by [`portcullis_ssh::metrics_http`].
//!
//! Nothing here is on the relay's path per byte: counters are atomics bumped where something
//! already happens (a session starts, a cut is signalled, a login is refused), bytes are added
//! from the relay's own counts when a session ends, and what the gateway already knows (live
//! sessions, the spool, the link) is read when scraped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use portcullis_core::locks::lock;
use portcullis_core::Timestamp;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::session::EndReason;
use crate::state::GatewayState;

/// One label, `name="value"`, both fixed strings: label values come from a closed set here,
/// never from what a user typed, so the series cannot multiply.
type Label = [(&'static str, &'static str); 1];

/// Cut delays are a few milliseconds when all is well: buckets from 0.5 ms to 2.5 s.
const CUT_DELAY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// How many revocations' arrival times are kept for the cut delay, and for how long: a
/// revocation is swept within milliseconds of arriving, so these are generous.
const REVOCATIONS_KEPT: usize = 4096;
const REVOCATION_MEMORY: Duration = Duration::from_secs(300);

pub(crate) struct Metrics {
    registry: Registry,
    sessions_live: Gauge,
    sessions_opened: Family<Label, Counter>,
    cuts: Family<Label, Counter>,
    cut_delay: Histogram,
    logins_refused: Family<Label, Counter>,
    relayed_bytes: Family<Label, Counter>,
    spool_depth: Gauge,
    revisions_behind: Gauge,
    approver_silence: Gauge<f64, AtomicU64>,
    link_up: Gauge,
    /// The newest revision the approver announced (hello, heartbeat, or a change applied).
    approver_newest: AtomicU64,
    /// When the approver was last heard from.
    last_heard: Mutex<Option<Instant>>,
    /// When revoked grants arrived, for the delay to their sessions' cuts.
    revocations: Mutex<HashMap<u64, Instant>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("portcullis_gateway");
        let m = Metrics {
            sessions_live: Gauge::default(),
            sessions_opened: Family::default(),
            cuts: Family::default(),
            cut_delay: Histogram::new(CUT_DELAY_BUCKETS),
            logins_refused: Family::default(),
            relayed_bytes: Family::default(),
            spool_depth: Gauge::default(),
            revisions_behind: Gauge::default(),
            approver_silence: Gauge::default(),
            link_up: Gauge::default(),
            approver_newest: AtomicU64::new(0),
            last_heard: Mutex::new(None),
            revocations: Mutex::new(HashMap::new()),
            registry: Registry::default(),
        };
        registry.register(
            "sessions_live",
            "Sessions on the books now (forwards and recorded sessions)",
            m.sessions_live.clone(),
        );
        registry.register(
            "sessions_opened",
            "Sessions started and reported, by kind (forward, recorded)",
            m.sessions_opened.clone(),
        );
        registry.register(
            "cuts",
            "Sessions cut by the gateway, by reason",
            m.cuts.clone(),
        );
        registry.register(
            "cut_delay_seconds",
            "From a grant's end (or its revocation's arrival) to the session's cut being signalled",
            m.cut_delay.clone(),
        );
        registry.register(
            "logins_refused",
            "Connections that tried to log in and never did, by the last reason",
            m.logins_refused.clone(),
        );
        registry.register(
            "relayed_bytes",
            "Bytes relayed by ended sessions, by direction (to_target, to_client)",
            m.relayed_bytes.clone(),
        );
        registry.register(
            "spool_depth",
            "Session reports spooled and not yet acknowledged by the approver",
            m.spool_depth.clone(),
        );
        registry.register(
            "replica_revisions_behind",
            "Revisions the approver announced that the replica has not applied",
            m.revisions_behind.clone(),
        );
        registry.register(
            "approver_silence_seconds",
            "Seconds since the approver was last heard on the stream (heartbeats every 5 s)",
            m.approver_silence.clone(),
        );
        registry.register(
            "approver_link_up",
            "1 while the stream from the approver is up",
            m.link_up.clone(),
        );
        Metrics { registry, ..m }
    }

    /// A session started (its start is spooled). `channel` is what the start report names:
    /// `direct-tcpip` for a forward, the command for a recorded session.
    pub fn session_opened(&self, channel: &str) {
        let kind = if channel == "direct-tcpip" {
            "forward"
        } else {
            "recorded"
        };
        self.sessions_opened.get_or_create(&[("kind", kind)]).inc();
    }

    /// A session ended having relayed these bytes.
    pub fn session_ended(&self, to_target: u64, to_client: u64) {
        self.relayed_bytes
            .get_or_create(&[("direction", "to_target")])
            .inc_by(to_target);
        self.relayed_bytes
            .get_or_create(&[("direction", "to_client")])
            .inc_by(to_client);
    }

    /// A session's cut was signalled.
    pub fn cut(&self, reason: &EndReason) {
        self.cuts.get_or_create(&[("reason", label(reason))]).inc();
    }

    /// A cut signalled `delay` after the grant's end or the revocation's arrival.
    pub fn cut_delay(&self, delay: Duration) {
        self.cut_delay.observe(delay.as_secs_f64());
    }

    /// A connection ended without logging in, last refused for `reason`.
    pub fn login_refused(&self, reason: &'static str) {
        self.logins_refused
            .get_or_create(&[("reason", reason)])
            .inc();
    }

    /// A frame from the approver; `newest` is the newest revision it names.
    pub fn heard(&self, newest: u64) {
        self.approver_newest.fetch_max(newest, Ordering::Relaxed);
        *lock(&self.last_heard) = Some(Instant::now());
    }

    /// A revoked grant arrived on the stream.
    pub fn revocation_arrived(&self, grant: u64) {
        let now = Instant::now();
        let mut r = lock(&self.revocations);
        if r.len() >= REVOCATIONS_KEPT {
            r.retain(|_, at| now.duration_since(*at) < REVOCATION_MEMORY);
        }
        // Past the bound even so (a flood of revocations): the newest is simply not timed.
        if r.len() < REVOCATIONS_KEPT {
            r.entry(grant).or_insert(now);
        }
    }

    /// How long ago revoked `grant` arrived, if it is known.
    pub fn since_revocation(&self, grant: u64, now: Instant) -> Option<Duration> {
        lock(&self.revocations)
            .get(&grant)
            .map(|at| now.duration_since(*at))
    }

    /// The exposition: the gauges read from the gateway now, then everything encoded.
    pub fn render(&self, gw: &GatewayState) -> (&'static str, String) {
        self.sessions_live.set(gw.live_count() as i64);
        match gw.replica().spooled() {
            Ok(s) => {
                self.spool_depth.set(s.len() as i64);
            }
            Err(e) => tracing::warn!("metrics: cannot read the spool: {e}"),
        }
        if let Ok(applied) = gw.replica().rev() {
            let newest = self.approver_newest.load(Ordering::Relaxed);
            self.revisions_behind
                .set(newest.saturating_sub(applied) as i64);
        }
        let last_heard = *lock(&self.last_heard);
        if let Some(at) = last_heard {
            self.approver_silence.set(at.elapsed().as_secs_f64());
        }
        self.link_up.set(i64::from(gw.link().is_up()));
        encode(&self.registry)
    }
}

/// Encode a registry in the Prometheus text format (0.0.4), with its content type.
pub(crate) fn encode(registry: &Registry) -> (&'static str, String) {
    let mut body = String::new();
    if let Err(e) = prometheus_text::encode(&mut body, registry) {
        tracing::warn!("metrics: cannot encode: {e}");
    }
    (prometheus_text::CONTENT_TYPE, body)
}

/// The `reason` label of a cut: the end reason in metric-friendly form.
pub(crate) fn label(reason: &EndReason) -> &'static str {
    match reason {
        EndReason::Closed => "closed",
        EndReason::Expired => "expired",
        EndReason::Revoked => "revoked",
        EndReason::Killed => "killed",
        EndReason::Deprovisioned => "deprovisioned",
        EndReason::FailedClosed => "failed_closed",
        EndReason::RecordingFailed => "recording_failed",
        EndReason::GatewayStopping => "gateway_stopping",
        EndReason::Withdrawn => "withdrawn",
    }
}

/// How late a cut signalled at `signalled` is for a grant that ended at `ends` (milliseconds
/// since the epoch); zero if the clocks say it was early.
pub(crate) fn late_by(ends: Timestamp, signalled: SystemTime) -> Duration {
    let ends = UNIX_EPOCH + Duration::from_millis(ends.0);
    signalled.duration_since(ends).unwrap_or_default()
}

/// Serve `/metrics` on the configured address until the process ends.
pub(crate) async fn serve(gw: Arc<GatewayState>) -> Result<(), crate::GatewayError> {
    let Some(addr) = gw.settings().metrics else {
        return Ok(());
    };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        crate::GatewayError::Config(format!("cannot listen for metrics on {addr}: {e}"))
    })?;
    let bound = listener
        .local_addr()
        .map_err(crate::GatewayError::io("cannot read the metrics address"))?;
    // Like gateway.addr: a port of 0 is chosen by the system, and tests read it here.
    let addr_file = gw.settings().data_dir.join("metrics.addr");
    std::fs::write(&addr_file, format!("{bound}\n")).map_err(crate::GatewayError::io(format!(
        "cannot write {}",
        addr_file.display()
    )))?;
    tracing::info!("gateway metrics at http://{bound}/metrics");
    tokio::spawn(portcullis_ssh::metrics_http::serve(listener, move || {
        gw.metrics().render(&gw)
    }));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_end_reason_has_a_label_of_metric_characters() {
        for r in [
            EndReason::Closed,
            EndReason::Expired,
            EndReason::Revoked,
            EndReason::Killed,
            EndReason::Deprovisioned,
            EndReason::FailedClosed,
            EndReason::RecordingFailed,
            EndReason::GatewayStopping,
            EndReason::Withdrawn,
        ] {
            let l = label(&r);
            assert!(l.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{l}");
        }
    }

    #[test]
    fn lateness_is_never_negative() {
        let ends = Timestamp(1_000_000);
        let at = UNIX_EPOCH + Duration::from_micros(1_000_000_750);
        assert_eq!(late_by(ends, at), Duration::from_micros(750));
        assert_eq!(late_by(ends, UNIX_EPOCH), Duration::ZERO);
    }

    #[test]
    fn revocations_remembered_are_bounded() {
        let m = Metrics::new();
        for g in 0..(REVOCATIONS_KEPT as u64 + 10) {
            m.revocation_arrived(g);
        }
        assert!(lock(&m.revocations).len() <= REVOCATIONS_KEPT);
        assert!(m.since_revocation(0, Instant::now()).is_some());
        assert!(m.since_revocation(u64::MAX, Instant::now()).is_none());
    }

    #[test]
    fn series_are_named_by_convention() {
        let m = Metrics::new();
        m.session_opened("direct-tcpip");
        m.cut(&EndReason::Revoked);
        m.login_refused("unknown_key");
        m.cut_delay(Duration::from_micros(1500));
        m.session_ended(3, 4);
        let (ct, text) = encode(&m.registry);
        assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
        for line in [
            "portcullis_gateway_sessions_opened_total{kind=\"forward\"} 1",
            "portcullis_gateway_cuts_total{reason=\"revoked\"} 1",
            "portcullis_gateway_logins_refused_total{reason=\"unknown_key\"} 1",
            "portcullis_gateway_cut_delay_seconds_bucket{le=\"0.002\"} 1",
            "portcullis_gateway_cut_delay_seconds_count 1",
            "portcullis_gateway_relayed_bytes_total{direction=\"to_client\"} 4",
            "# TYPE portcullis_gateway_sessions_live gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }
}
