//! The gateway: `portcullis gateway --config FILE`.
//!
//! It owns enforcement. It follows the approver's signed stream into its own replica, lets a
//! channel open only under a live grant that verifies against the pinned signing key, relays
//! it with byte counts, binds each session to its grant and cuts it the moment that grant ends
//! (or moves it to another live grant for the same user and target), and reports every session
//! to the approver's audit log through a durable spool.
//!
//! It must not decide: it holds no policy, never signs anything, and trusts nothing from the
//! approver link that does not verify against the pinned key.

mod channel_memory;
mod command_relay;
mod enforce;
mod errors;
mod forward;
mod link;
mod memory;
mod metrics;
mod offline;
mod pending;
mod recorded;
mod recording;
mod refusals;
mod server;
mod session;
mod spool;
mod state;
mod stop;
pub mod target_ca;

pub use errors::GatewayError;
/// The `user:target` login parser, exposed for fuzzing.
pub use server::split_login;

use std::path::Path;
use std::sync::Arc;

/// Run a gateway until the process ends.
pub async fn run(
    config: &Path,
    clock: Arc<dyn portcullis_core::Clock>,
) -> Result<(), GatewayError> {
    run_until(config, clock, std::future::pending()).await
}

/// Run a gateway until `stop` resolves with what stopped it (the binary passes SIGTERM or
/// SIGINT), then stop gracefully: no new connections or sessions, every session ended with
/// `gateway-stopping`, the stop reported, the spool drained to the approver (each with a
/// bound).
pub async fn run_until(
    config: &Path,
    clock: Arc<dyn portcullis_core::Clock>,
    stop: impl std::future::Future<Output = &'static str>,
) -> Result<(), GatewayError> {
    let gw = state::GatewayState::open(config, clock).await?;
    target_ca::init(&gw.settings().data_dir).map_err(|e| GatewayError::Config(e.to_string()))?;
    stop::report_start(&gw).await?;
    gw.recover().await?;
    metrics::serve(gw.clone()).await?;
    tokio::spawn(link::run(gw.clone()));
    tokio::spawn(spool::run(gw.clone()));
    tokio::spawn(refusals::run(gw.clone()));
    tokio::spawn(enforce::run(gw.clone()));
    tokio::spawn(enforce::fail_closed(gw.clone()));
    tokio::spawn(enforce::keep_clock_floor(gw.clone()));
    tokio::spawn(gw.trimmer().clone().run());
    tokio::select! {
        served = server::serve(gw.clone()) => {
            if let Err(e) = &served {
                // Delivered now if it can be, else by the next start.
                stop::report_stop(&gw, format!("failed: {e}")).await;
            }
            served
        }
        why = stop => {
            // The listener went with the accept loop: nobody new gets in.
            stop::graceful(&gw, why).await;
            Ok(())
        }
    }
}
