//! Delivers session reports to the approver in order, each exactly once: a report leaves the
//! spool only after the approver acknowledged it, and the approver records each sequence
//! number once, so a retry after a lost acknowledgement is harmless.

use std::sync::Arc;
use std::time::Duration;

use portcullis_core::codec;
use portcullis_core::model::SessionReport;

use crate::errors::GatewayError;
use crate::state::Gateway;

/// How long a new session waits for its start event to reach the approver before relaying
/// anyway (it is durable in the spool by then).
const START_DELIVERY_WAIT: Duration = Duration::from_secs(5);

pub(crate) async fn run(gw: Arc<Gateway>) {
    let mut link = gw.link.subscribe();
    loop {
        let conn = link.borrow_and_update().clone();
        let Some(conn) = conn else {
            let _ = link.changed().await;
            continue;
        };
        let pending = match gw.replica.spooled() {
            Ok(p) => p,
            Err(e) => {
                tracing::error!("cannot read the spool: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if pending.is_empty() {
            tokio::select! {
                _ = gw.spool_wake.notified() => {}
                _ = link.changed() => {}
            }
            continue;
        }
        for (seq, report) in pending {
            // The framed report, then the recording it announces (read from its file).
            let mut bytes = codec::frame(&codec::encode(&report));
            if let SessionReport::Recorded {
                session, format, ..
            } = &report
            {
                let path = match format.as_str() {
                    "data" => crate::recording::data_path(&gw.recordings_dir(), session),
                    _ => crate::recording::path(&gw.recordings_dir(), session),
                };
                match std::fs::read(&path) {
                    Ok(cast) => bytes.extend_from_slice(&cast),
                    Err(e) => {
                        // Retrying cannot bring it back, and the reports behind it must flow:
                        // the end event still carries its hash, so `audit verify` will name it
                        // as missing.
                        tracing::error!(
                            "recording {} is unreadable ({e}); it cannot be delivered",
                            path.display()
                        );
                        if let Err(e) = gw.replica.delivered(seq).await {
                            tracing::error!("cannot clear report {seq} from the spool: {e}");
                        }
                        continue;
                    }
                }
            }
            match conn
                .run_with_input(
                    &format!("report --seq {seq} --instance {}", gw.instance),
                    &bytes,
                )
                .await
            {
                Ok((r, _, _)) if r.exit_status == Some(0) => {
                    if let Err(e) = gw.replica.delivered(seq).await {
                        tracing::error!("cannot clear report {seq} from the spool: {e}");
                    }
                    gw.delivered.send_replace(seq);
                }
                Ok((_, _, err)) => {
                    tracing::warn!(
                        "approver refused report {seq}: {}",
                        String::from_utf8_lossy(&err).trim()
                    );
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    break;
                }
                Err(e) => {
                    tracing::warn!("report {seq} not delivered ({e}); will retry");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    break;
                }
            }
        }
    }
}

/// Spool a report durably and hand it to the deliverer. Returns its sequence number.
pub(crate) async fn submit(gw: &Gateway, report: &SessionReport) -> Result<u64, GatewayError> {
    let seq = gw.replica.spool(report).await?;
    gw.spool_wake.notify_one();
    Ok(seq)
}

/// Wait until report `seq` reached the approver, if the link is up; with the approver away
/// the spool holds it and the caller goes on.
pub(crate) async fn await_delivery(gw: &Gateway, seq: u64) {
    if gw.link().is_none() {
        return;
    }
    let mut delivered = gw.delivered.subscribe();
    let _ = tokio::time::timeout(START_DELIVERY_WAIT, delivered.wait_for(|d| *d >= seq)).await;
}
