//! End-to-end tests of the control plane: the real `portcullis approver` process, driven with
//! the stock OpenSSH client and with `portcullis admin`. One file per behaviour.

// Test code: unwrap and panic are how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

#[path = "control_plane/abuse.rs"]
mod abuse;
#[path = "control_plane/approvals.rs"]
mod approvals;
#[path = "control_plane/audit_verify.rs"]
mod audit_verify;
#[path = "control_plane/cancel.rs"]
mod cancel;
#[path = "control_plane/crash.rs"]
mod crash;
#[path = "control_plane/escapes.rs"]
mod escapes;
#[path = "control_plane/examples.rs"]
mod examples;
#[path = "control_plane/expiry.rs"]
mod expiry;
#[path = "control_plane/limits.rs"]
mod limits;
#[path = "control_plane/listings.rs"]
mod listings;
#[path = "control_plane/permissions.rs"]
mod permissions;
#[path = "control_plane/profile.rs"]
mod profile;
#[path = "control_plane/recheck.rs"]
mod recheck;
#[path = "control_plane/reload.rs"]
mod reload;
#[path = "control_plane/reports.rs"]
mod reports;
#[path = "control_plane/requests.rs"]
mod requests;
#[path = "control_plane/retention.rs"]
mod retention;
#[path = "control_plane/revoke.rs"]
mod revoke;
#[path = "control_plane/thin_client.rs"]
mod thin_client;
#[path = "control_plane/watch.rs"]
mod watch;
