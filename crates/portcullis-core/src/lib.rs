//! The domain model of portcullis.
//!
//! This crate owns what every process agrees on: the catalog (users, groups, gateways, targets,
//! policies) and its TOML form, requests, approvals, grants, audit events, policy evaluation
//! (including time windows), grant and change signing, the versioned binary codec shared by the
//! store and the wire, the control-command grammar, and the [`Clock`](time::Clock) every
//! deadline is read from.
//!
//! It must not touch I/O: no files, sockets, threads or the system clock outside
//! [`time::SystemClock`]. Everything here is a pure function of its inputs, so it is unit-tested
//! with an injected clock and property-tested on every decoder.

pub mod audit_event;
pub mod catalog;
mod catalog_v1;
pub mod codec;
pub mod command;
pub mod config;
pub mod grant_index;
pub mod key_index;
pub mod keys;
pub mod locks;
pub mod model;
pub mod policy;
pub mod signing;
pub mod stream;
pub mod time;
pub mod user_ca;
pub mod window;
pub mod words;

pub use catalog::Catalog;
pub use time::{Clock, HighWaterClock, SystemClock, Timestamp};
