//! End-to-end tests of the gateway: the real approver and gateway processes, the stock OpenSSH
//! client (`ssh -L`, `ssh -J`, `ssh -W`), and real targets (PostgreSQL, sshd, a TCP echo
//! server). One file per behaviour.

// Test code: unwrap and panic are how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

#[path = "gateway/abuse.rs"]
mod abuse;
#[path = "gateway/algorithms.rs"]
mod algorithms;
#[path = "gateway/approver_down.rs"]
mod approver_down;
#[path = "gateway/authentication.rs"]
mod authentication;
#[path = "gateway/certificates.rs"]
mod certificates;
#[path = "gateway/channel_memory.rs"]
mod channel_memory;
#[path = "gateway/common.rs"]
mod common;
#[path = "gateway/compliance.rs"]
mod compliance;
#[path = "gateway/connection_budget.rs"]
mod connection_budget;
#[path = "gateway/cuts.rs"]
mod cuts;
#[path = "gateway/docs_followed.rs"]
mod docs_followed;
#[path = "gateway/fido.rs"]
mod fido;
#[path = "gateway/file_operations.rs"]
mod file_operations;
#[path = "gateway/forwarding.rs"]
mod forwarding;
#[path = "gateway/graceful_stop.rs"]
mod graceful_stop;
#[path = "gateway/key_kinds.rs"]
mod key_kinds;
#[path = "gateway/logs.rs"]
mod logs;
#[path = "gateway/metrics.rs"]
mod metrics;
#[path = "gateway/preopened.rs"]
mod preopened;
#[path = "gateway/private_files.rs"]
mod private_files;
#[path = "gateway/quickstart.rs"]
mod quickstart;
#[path = "gateway/recorded.rs"]
mod recorded;
#[path = "gateway/refusals.rs"]
mod refusals;
#[path = "gateway/refused_channels.rs"]
mod refused_channels;
#[path = "gateway/refused_logins.rs"]
mod refused_logins;
#[path = "gateway/relayed_commands.rs"]
mod relayed_commands;
#[path = "gateway/restore.rs"]
mod restore;
#[path = "gateway/rotation.rs"]
mod rotation;
#[path = "gateway/stalled_reader.rs"]
mod stalled_reader;
#[path = "gateway/start_stop.rs"]
mod start_stop;
#[path = "gateway/target_ca.rs"]
mod target_ca;
#[path = "gateway/users_doc.rs"]
mod users_doc;
