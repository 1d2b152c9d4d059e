//! The shipped deployment, run as it is described: the systemd units' users, state directories
//! and commands (`deploy/portcullis-*.service`, docs/operators.md "Install"), and the compose
//! demo's steps (`deploy/docker-compose.yml`) without Docker. Both need root (users, setpriv,
//! namespaces); without it they say so and pass, as `.ci/run` runs them as root.

// Test code: unwrap and panic are how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

#[path = "deploy/compose.rs"]
mod compose;
#[path = "deploy/ns.rs"]
mod ns;
#[path = "deploy/units.rs"]
mod units;

/// Not a test of its own: the TCP target the deploy tests start inside their network
/// namespace, by running this test binary again with [`ns::ECHO_ENV`] set (a thread of this
/// process cannot enter another network namespace). Without it, it returns at once.
#[test]
fn echo_child() {
    ns::serve_echo_if_asked();
}
