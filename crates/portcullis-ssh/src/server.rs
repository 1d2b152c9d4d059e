//! What the approver's and the gateway's SSH servers share: their settings, and an accept
//! loop with admission limits (pre-auth deadline, connection budgets).

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;

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

pub use portcullis_core::config::ConnectionLimits;

/// Releases a connection's place in the budget when it ends.
struct Slot {
    active: Arc<AtomicUsize>,
    sources: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.active.fetch_sub(1, Ordering::SeqCst);
        if let Ok(mut s) = self.sources.lock() {
            if let Some(n) = s.get_mut(&self.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    s.remove(&self.ip);
                }
            }
        }
    }
}

/// Accept connections and run each through russh with the admission limits: accepting never
/// waits on a peer (every connection is its own task), a silent or slow peer is dropped at the
/// pre-auth deadline, and the budgets are enforced with a log line when hit. `make` builds
/// each connection's handler and is told (through the flag) when it has authenticated.
pub async fn serve<H, F>(
    listener: TcpListener,
    config: Arc<russh::server::Config>,
    limits: ConnectionLimits,
    mut make: F,
) -> std::io::Result<()>
where
    H: russh::server::Handler + Send + 'static,
    F: FnMut(SocketAddr, Option<SocketAddr>, Arc<AtomicBool>) -> H,
{
    let active = Arc::new(AtomicUsize::new(0));
    let sources: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    let mut last_budget_log: Option<std::time::Instant> = None;
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let ip = peer.ip();
        let over = if active.load(Ordering::SeqCst) >= limits.max_connections {
            Some(format!(
                "connection budget of {} reached",
                limits.max_connections
            ))
        } else {
            match sources.lock() {
                Ok(mut s) => {
                    let n = s.entry(ip).or_insert(0);
                    if *n >= limits.max_connections_per_source {
                        Some(format!(
                            "{} connections from {ip} already",
                            limits.max_connections_per_source
                        ))
                    } else {
                        *n += 1;
                        None
                    }
                }
                Err(_) => Some("connection table unavailable".into()),
            }
        };
        if let Some(why) = over {
            // One line a second at most, however hard the door is knocked on.
            if last_budget_log.is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
                tracing::warn!("refusing {peer}: {why}");
                last_budget_log = Some(std::time::Instant::now());
            }
            drop(socket);
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        let slot = Slot {
            active: active.clone(),
            sources: sources.clone(),
            ip,
        };
        let _ = socket.set_nodelay(true);
        let local = socket.local_addr().ok();
        let authed = Arc::new(AtomicBool::new(false));
        let handler = make(peer, local, authed.clone());
        let config = config.clone();
        // One task per connection, the login deadline included (a second task per connection
        // would cost every held session its memory for as long as the grace lasts).
        tokio::spawn(async move {
            let _slot = slot;
            let deadline = tokio::time::Instant::now() + limits.login_grace;
            let session = match tokio::time::timeout_at(
                deadline,
                russh::server::run_stream(config, socket, handler),
            )
            .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(_)) => return,
                Err(_) => {
                    tracing::info!(
                        "{peer}: no SSH handshake within {:?}; dropped",
                        limits.login_grace
                    );
                    return;
                }
            };
            let handle = session.handle();
            tokio::pin!(session);
            tokio::select! {
                _ = &mut session => return,
                _ = tokio::time::sleep_until(deadline) => {}
            }
            if !authed.load(Ordering::SeqCst) {
                tracing::info!(
                    "{peer}: not authenticated within {:?}; dropped",
                    limits.login_grace
                );
                let _ = handle
                    .disconnect(
                        russh::Disconnect::ByApplication,
                        "portcullis: authentication took too long".into(),
                        "en".into(),
                    )
                    .await;
            }
            drop(handle);
            let _ = session.await;
        });
    }
}
