//! The gateway's start and stop as the audit log sees them, and a graceful stop (SIGTERM or
//! SIGINT, as systemd and Ctrl-C send them): the gateway stops accepting and refuses new
//! sessions, tells interactive users, ends every session with the reason `gateway-stopping`
//! (each end reported, each recording closed and announced), reports its stop, then drains
//! the spool to the approver, each step with a bound so that a stop always ends.
//!
//! Start and stop go through the spool like session reports: a start is delivered once the
//! approver is reachable, and a stop the approver did not acknowledge in time is delivered by
//! the next start, before that start's own report. A gateway killed outright reports no stop:
//! its next start follows its previous start in the log with no stop between them.

use std::time::Duration;

use portcullis_core::model::SessionReport;
use tokio::time::Instant;

use crate::errors::GatewayError;
use crate::spool;
use crate::state::GatewayState;

/// How long sessions get to end (write their reason, close their recording, spool their end).
const SESSIONS_WAIT: Duration = Duration::from_secs(5);
/// How long connections get to close once told to.
const CONNECTIONS_WAIT: Duration = Duration::from_secs(2);
/// How long the approver gets to acknowledge what the spool holds. What is left is delivered
/// by the next start.
const SPOOL_WAIT: Duration = Duration::from_secs(10);
/// How often the waits look again: a stop is not a path worth a notification per session.
const POLL: Duration = Duration::from_millis(20);

/// Spool `gateway.started`: before anything else this run spools, after whatever the last
/// run left there.
pub(crate) async fn report_start(gw: &GatewayState) -> Result<(), GatewayError> {
    let report = SessionReport::GatewayStarted {
        version: env!("CARGO_PKG_VERSION").to_string(),
        listen: gw.settings().listen.clone(),
        pid: std::process::id(),
        at: gw.now(),
    };
    spool::submit(gw, &report).await?;
    Ok(())
}

/// Spool `gateway.stopped` with what stopped it.
pub(crate) async fn report_stop(gw: &GatewayState, reason: String) {
    let report = SessionReport::GatewayStopped {
        reason,
        at: gw.now(),
    };
    if let Err(e) = spool::submit(gw, &report).await {
        tracing::error!("cannot record the gateway's stop: {e}");
    }
}

/// Everything after the stop signal (`why` names it), once the listener is gone.
pub(crate) async fn graceful(gw: &GatewayState, why: &str) {
    let cut = gw.begin_stop();
    tracing::info!("gateway stopping: ending {cut} sessions");
    let all_ended = wait_until(SESSIONS_WAIT, || gw.live_count() == 0).await;
    if !all_ended {
        tracing::warn!(
            "{} sessions did not end within {SESSIONS_WAIT:?}; the next start reports them",
            gw.live_count()
        );
    }
    // Their last words written, the connections are closed and waited for: exiting with them
    // open would drop whatever russh had not yet sent. Clients told in-band (on a terminal)
    // get a moment to leave by themselves first (see `session::LINGER`).
    if cut > 0 {
        tokio::time::sleep(crate::session::LINGER).await;
    }
    let open = gw
        .connections()
        .close_all("portcullis: gateway stopping", CONNECTIONS_WAIT)
        .await;
    if open > 0 {
        tracing::warn!("{open} connections still open after {CONNECTIONS_WAIT:?}");
    }
    // After the sessions' ends and the refusals counted so far, so that the log reads as it
    // happened.
    crate::refusals::flush(gw).await;
    report_stop(gw, why.to_string()).await;
    drain_spool(gw).await;
    tracing::info!("gateway stopped");
}

/// Wait for the approver to acknowledge every report spooled so far, if it is reachable.
async fn drain_spool(gw: &GatewayState) {
    let last = match gw.replica().spooled() {
        Ok(pending) => pending.last().map(|(seq, _)| *seq),
        Err(e) => {
            tracing::error!("cannot read the spool: {e}");
            return;
        }
    };
    let Some(last) = last else { return };
    if !gw.link().is_up() {
        tracing::warn!(
            "the approver is away: reports up to {last} stay in the spool for the next start"
        );
        return;
    }
    let drained = gw.delivery().await_acknowledged(last, SPOOL_WAIT).await;
    if drained {
        tracing::info!("spool drained (reports up to {last} delivered)");
    } else {
        tracing::warn!(
            "reports up to {last} not acknowledged within {SPOOL_WAIT:?}; they stay in the spool for the next start"
        );
    }
}

async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
    true
}
