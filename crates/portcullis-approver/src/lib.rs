//! The approval daemon: `portcullis approver --config FILE`.
//!
//! It owns the authoritative store and is the only process that decides: it evaluates policy,
//! counts approvals, issues and signs grants, expires requests and grants on time, writes the
//! hash-chained audit log, and streams signed changes to gateways. It serves all of this as
//! SSH exec commands on its control port.
//!
//! It must not forward traffic or hold sessions (that is the gateway's job), and it never
//! trusts a gateway with more than the gateway's own stream.

mod app;
mod commands;
mod errors;
mod exec;
mod intake;
mod limits;
mod live;
mod locks;
mod metrics;
mod playback;
mod refusals;
mod render;
mod retention;
mod scheduler;
mod server;
mod sessions;
mod watch;

pub use app::{read_config, Approver, ApproverKeys};
pub use errors::ApproverError;
pub use server::{serve, serve_until};
