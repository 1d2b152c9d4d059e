//! The approver's metrics (`[approver] metrics`), encoded by `prometheus-client` and served at
//! `/metrics` by [`portcullis_ssh::metrics_http`].
//!
//! Totals are counted from each committed batch (`Approver::write`, the one writer), so they
//! say what is durably on the books; gauges are read from the in-memory mirror (`Live`) when
//! scraped. SPEC lists an outbox depth and notification failures: there are no notifications
//! yet, so there are no such series (a gauge stuck at zero would claim a queue that is not
//! there).

use std::sync::Arc;

use portcullis_core::audit_event::EventKind;
use portcullis_store::Batch;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::app::Approver;
use crate::errors::ApproverError;

/// One label from a closed set of values (never text a user chose).
type Label = [(&'static str, &'static str); 1];

pub(crate) struct Metrics {
    registry: Registry,
    grants_active: Gauge,
    requests_pending: Gauge,
    requests: Counter,
    decisions: Family<Label, Counter>,
    logins_refused: Family<Label, Counter>,
    audit_records: Counter,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("portcullis_approver");
        let grants_active = Gauge::default();
        let requests_pending = Gauge::default();
        let requests = Counter::default();
        let decisions = Family::<Label, Counter>::default();
        let logins_refused = Family::<Label, Counter>::default();
        let audit_records = Counter::default();
        registry.register(
            "grants_active",
            "Grants issued and not yet expired or revoked",
            grants_active.clone(),
        );
        registry.register(
            "requests_pending",
            "Requests waiting for approval",
            requests_pending.clone(),
        );
        registry.register(
            "requests",
            "Requests made (committed since this approver started)",
            requests.clone(),
        );
        registry.register(
            "decisions",
            "Decisions committed, by kind (granted, denied, expired, cancelled, revoked, grant_expired)",
            decisions.clone(),
        );
        registry.register(
            "logins_refused",
            "Connections that tried to log in and never did, by the last reason",
            logins_refused.clone(),
        );
        registry.register(
            "audit_records",
            "Audit records committed since this approver started",
            audit_records.clone(),
        );
        Metrics {
            registry,
            grants_active,
            requests_pending,
            requests,
            decisions,
            logins_refused,
            audit_records,
        }
    }

    /// A batch was committed: count what it recorded.
    pub fn committed(&self, batch: &Batch) {
        self.audit_records.inc_by(batch.audit.len() as u64);
        for rec in &batch.audit {
            if let EventKind::RequestCreated { .. } = rec.event.kind {
                self.requests.inc();
            }
            if let Some(d) = decision(&rec.event.kind) {
                self.decisions.get_or_create(&[("decision", d)]).inc();
            }
        }
    }

    /// A connection ended without logging in, last refused for `reason`.
    pub fn login_refused(&self, reason: &'static str) {
        self.logins_refused
            .get_or_create(&[("reason", reason)])
            .inc();
    }

    /// The exposition: the gauges read from the mirror now, then everything encoded.
    pub fn render(&self, app: &Approver) -> (&'static str, String) {
        let now = app.now();
        let live = app.live.get();
        self.requests_pending.set(live.pending.len() as i64);
        let active = live.grants.iter().filter(|g| g.is_active(now)).count();
        self.grants_active.set(active as i64);
        drop(live);
        let mut body = String::new();
        if let Err(e) = prometheus_text::encode(&mut body, &self.registry) {
            tracing::warn!("metrics: cannot encode: {e}");
        }
        (prometheus_text::CONTENT_TYPE, body)
    }
}

/// The decision an audit event records, if it is one.
fn decision(kind: &EventKind) -> Option<&'static str> {
    Some(match kind {
        EventKind::GrantIssued { .. } => "granted",
        EventKind::RequestDenied => "denied",
        EventKind::RequestExpired => "expired",
        EventKind::RequestCancelled => "cancelled",
        EventKind::GrantRevoked => "revoked",
        EventKind::GrantExpired => "grant_expired",
        _ => return None,
    })
}

/// Serve `/metrics` on the configured address until the process ends.
pub(crate) async fn serve(app: Arc<Approver>) -> Result<(), ApproverError> {
    let Some(addr) = app.settings.metrics else {
        return Ok(());
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| ApproverError::Config(format!("cannot listen for metrics on {addr}: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| ApproverError::Config(format!("cannot read the bound address: {e}")))?;
    // Like approver.addr: a port of 0 is chosen by the system, and tests read it here.
    let addr_file = app.settings.data_dir.join("metrics.addr");
    std::fs::write(&addr_file, format!("{bound}\n"))
        .map_err(|e| ApproverError::Config(format!("cannot write {}: {e}", addr_file.display())))?;
    tracing::info!("approver metrics at http://{bound}/metrics");
    tokio::spawn(portcullis_ssh::metrics_http::serve(listener, move || {
        app.metrics.render(&app)
    }));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_are_the_deciding_events() {
        assert_eq!(decision(&EventKind::RequestDenied), Some("denied"));
        assert_eq!(decision(&EventKind::GrantRevoked), Some("revoked"));
        assert_eq!(decision(&EventKind::RequestCancelled), Some("cancelled"));
        assert_eq!(
            decision(&EventKind::RequestApproved {
                approvals: 1,
                needed: 2
            }),
            None
        );
    }

    #[test]
    fn series_are_named_by_convention() {
        let m = Metrics::new();
        m.login_refused("unknown_key");
        m.decisions.get_or_create(&[("decision", "granted")]).inc();
        let mut text = String::new();
        prometheus_text::encode(&mut text, &m.registry).unwrap();
        for line in [
            "portcullis_approver_logins_refused_total{reason=\"unknown_key\"} 1",
            "portcullis_approver_decisions_total{decision=\"granted\"} 1",
            "portcullis_approver_requests_total 0",
            "portcullis_approver_audit_records_total 0",
            "# TYPE portcullis_approver_grants_active gauge",
            "# TYPE portcullis_approver_requests_pending gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }
}
