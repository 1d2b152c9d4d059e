//! SSH plumbing shared by the portcullis processes and clients.
//!
//! This crate owns key files (made on first start, loaded after), outgoing SSH connections with
//! host-key checking (pinned, or accept-new into a known_hosts file), public-key
//! authentication from a key file or ssh-agent, running one exec command with its output
//! streamed, and the settings every portcullis SSH server shares. It must not hold policy or state: callers decide what to run and what it means.

pub mod algorithms;
pub mod certificate;
pub mod client;
pub mod keyfile;
pub mod login;
pub mod metrics_http;
mod private_agent;
pub mod server;
pub mod startups;

pub use client::{ClientConnection, ConnectOptions, ExecOutput, HostKeyPolicy, Identity, SshError};
