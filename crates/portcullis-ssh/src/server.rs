//! The settings the approver's and the gateway's SSH servers share.

use std::borrow::Cow;
use std::time::Duration;

use russh::keys::PrivateKey;
use russh::{MethodKind, MethodSet};

/// Public-key authentication only; the "none" probe OpenSSH sends first answered at once and
/// real rejections delayed; no compression (FIELD-NOTES: zlib bombs); AES-256-GCM preferred;
/// no inactivity timeout (long `wait`s and idle forwards are normal) but keepalives that find
/// dead peers; `nodelay` for interactive latency.
pub fn config(host_key: PrivateKey, keepalive: Duration) -> russh::server::Config {
    russh::server::Config {
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        keys: vec![host_key],
        auth_rejection_time: Duration::from_millis(300),
        auth_rejection_time_initial: Some(Duration::ZERO),
        max_auth_attempts: 6,
        inactivity_timeout: None,
        keepalive_interval: Some(keepalive),
        keepalive_max: 3,
        nodelay: true,
        preferred: russh::Preferred {
            compression: Cow::Borrowed(&[russh::compression::NONE]),
            cipher: Cow::Borrowed(crate::client::CIPHERS),
            ..Default::default()
        },
        ..Default::default()
    }
}
