//! What the approver's and the gateway's SSH servers share: their settings, and an accept
//! loop with admission limits ([`serve`]: the handshake rate and the connection budgets at the
//! door, then one task per connection with its pre-auth deadline and idle close), and the set
//! of a server's connections a graceful stop closes ([`ServerConnections`]).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_core::locks::lock;
use tokio::net::TcpListener;

use russh::keys::PrivateKey;
use russh::{MethodKind, MethodSet};

/// How many messages russh queues for one channel on its way to the code that consumes it.
/// russh re-opens a channel's window as soon as data arrives, not when it is consumed, so this
/// queue, not the window, is what bounds the bytes a peer can make us hold for a channel whose
/// consumer is stalled (a target that does not read): at most this many packets of at most
/// [`MAX_PACKET`] bytes (the gateway disconnects a peer that sends larger ones), and the
/// gateway caps channels per connection (`max_channels_per_connection`, 64). russh's default of
/// 100 let one connection park 64 x 100 x 32 KiB = 200 MiB; 16 keeps it under 34 MiB (measured:
/// 60 stalled channels, +190 MiB before, +3 to +29 MiB after) with forward throughput within
/// the noise (`versus_openssh`: sshd/portcullis ratio 1.10-1.19 at 100, 1.12-1.36 at 16; 8 was
/// no faster). A relay must keep taking a channel's input while its output waits for window,
/// or a full queue stops the whole connection (docs/reliability.md).
pub const CHANNEL_QUEUE: usize = 16;

/// The largest channel data packet we accept (and advertise): russh's default, OpenSSH's
/// `CHAN_TCP_PACKET_DEFAULT`.
pub const MAX_PACKET: u32 = 32 * 1024;

/// Refuse channel data larger than the packet size we advertised. russh does not check it
/// (the transport takes packets up to 256 KiB), and every such packet would sit in a channel's
/// queue at eight times the size [`CHANNEL_QUEUE`] is sized for. OpenSSH treats it as a
/// protocol error too ("rcvd big packet").
pub fn check_channel_data(len: usize) -> Result<(), russh::Error> {
    if len > MAX_PACKET as usize {
        tracing::warn!(
            "peer sent {len} bytes of channel data in one packet, over the {MAX_PACKET} advertised; disconnecting"
        );
        return Err(russh::Error::PacketSize(len));
    }
    Ok(())
}

/// How long, from the moment an attempt arrives, every refused public-key attempt waits
/// before its answer. Its point is that no refusal comes back sooner than another (a user who
/// exists and one who does not, a key known and one not: the lookups are microseconds apart),
/// so that timing tells nothing; a floor a hundred times that work does it, and a client
/// trying keys in turn pays almost nothing. OpenSSH's is of the same order (5-9 ms per user).
/// It was 300 ms, and stock ssh, which offers the plain key of `-i id` before `id-cert.pub`,
/// waited that long on every certificate login (6.5x an ed25519 login; 1.08x at 1 ms with
/// plain keys refused at their offer: `bench/run --only key_kinds`). Keys are not guessed;
/// online attempts are bounded by `max_auth_attempts` per connection and the handshake rate
/// per source instead.
pub const AUTH_REFUSAL_FLOOR: Duration = Duration::from_millis(1);

/// Public-key authentication only; the "none" probe OpenSSH sends first answered at once and
/// real rejections after [`AUTH_REFUSAL_FLOOR`]; certificates checked by our handlers alone
/// (validity window and CA signature included, so a refusal's log line can say why); the
/// algorithms of [`crate::algorithms`] (no SHA-1, no small DH groups, encrypt-then-MAC only,
/// no compression); no inactivity timeout (long `wait`s and idle
/// forwards are normal) but keepalives that find dead peers; `nodelay` for interactive
/// latency; a short queue per channel ([`CHANNEL_QUEUE`]).
pub fn config(host_key: PrivateKey, keepalive: Duration) -> russh::server::Config {
    russh::server::Config {
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        keys: vec![host_key],
        auth_rejection_time: AUTH_REFUSAL_FLOOR,
        auth_rejection_time_initial: Some(Duration::ZERO),
        max_auth_attempts: 6,
        inactivity_timeout: None,
        keepalive_interval: Some(keepalive),
        keepalive_max: 3,
        nodelay: true,
        channel_buffer_size: CHANNEL_QUEUE,
        maximum_packet_size: MAX_PACKET,
        preferred: crate::algorithms::server_preferred(),
        // Our russh patch: `certificate::check` makes russh's certificate checks itself.
        handler_checks_certificates: true,
        ..Default::default()
    }
}

pub use portcullis_core::config::ConnectionLimits;

/// How a connection's principal counts against the budgets once authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// An ordinary user: within their own cap, and within the budget less the reserve.
    Ordinary,
    /// An admin: within their own cap, and may use the reserve.
    Reserved,
    /// A gateway's own connection: may use the reserve and is never closed for idleness (its
    /// report and command connections sit idle between uses).
    Service,
}

/// Authenticated connections by principal, shared by every connection of one server.
#[derive(Default)]
struct Holders {
    by_principal: HashMap<String, usize>,
    ordinary: usize,
}

/// What the accept loop and one connection's handler share about that connection.
pub struct ConnState {
    limits: ConnectionLimits,
    holders: Arc<Mutex<Holders>>,
    /// Who it authenticated as, once it has.
    principal: Mutex<Option<(String, Standing)>>,
    /// Sessions, forwards and commands running on it now.
    busy: AtomicUsize,
    /// When it last became idle (or was accepted).
    idle_since: Mutex<tokio::time::Instant>,
    became_idle: tokio::sync::Notify,
    /// Told once when it authenticates, so the idle watch starts then, not at the login grace.
    on_authenticated: tokio::sync::Notify,
}

impl ConnState {
    fn new(limits: ConnectionLimits, holders: Arc<Mutex<Holders>>) -> ConnState {
        ConnState {
            limits,
            holders,
            principal: Mutex::new(None),
            busy: AtomicUsize::new(0),
            idle_since: Mutex::new(tokio::time::Instant::now()),
            became_idle: tokio::sync::Notify::new(),
            on_authenticated: tokio::sync::Notify::new(),
        }
    }

    /// Record that the connection authenticated as `who`. Refused, with the reason to log, when
    /// `who` holds their maximum of connections already, or (for an ordinary user) when ordinary
    /// users together hold all but the reserve. The handler then rejects the authentication.
    pub fn authenticate(&self, who: &str, standing: Standing) -> Result<(), Refused> {
        let mut principal = lock(&self.principal);
        if principal.is_some() {
            return Ok(());
        }
        let mut holders = lock(&self.holders);
        let held = holders.by_principal.get(who).copied().unwrap_or(0);
        if standing != Standing::Service && held >= self.limits.max_connections_per_user {
            return Err(Refused::UserCap {
                who: who.to_string(),
                held,
            });
        }
        let shared = self
            .limits
            .max_connections
            .saturating_sub(self.limits.reserved_connections);
        if standing == Standing::Ordinary && holders.ordinary >= shared {
            return Err(Refused::Reserve {
                held: holders.ordinary,
                reserved: self.limits.reserved_connections,
            });
        }
        *holders.by_principal.entry(who.to_string()).or_insert(0) += 1;
        if standing == Standing::Ordinary {
            holders.ordinary += 1;
        }
        *principal = Some((who.to_string(), standing));
        *lock(&self.idle_since) = tokio::time::Instant::now();
        self.on_authenticated.notify_one();
        Ok(())
    }

    /// Whether it has authenticated.
    pub fn authenticated(&self) -> bool {
        lock(&self.principal).is_some()
    }

    /// Mark something live on the connection (a session, a forward, a running command) for as
    /// long as the guard is held: a connection with nothing live is closed after
    /// `idle_timeout`.
    pub fn busy(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::SeqCst);
        Busy(self.clone())
    }

    fn exempt_from_idle(&self) -> bool {
        matches!(*lock(&self.principal), Some((_, Standing::Service)))
    }

    /// Give back the connection's place among its principal's.
    fn release(&self) {
        if let Some((who, standing)) = lock(&self.principal).take() {
            let mut holders = lock(&self.holders);
            if let Some(n) = holders.by_principal.get_mut(&who) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    holders.by_principal.remove(&who);
                }
            }
            if standing == Standing::Ordinary {
                holders.ordinary = holders.ordinary.saturating_sub(1);
            }
        }
    }
}

/// Why [`ConnState::authenticate`] turned a proven identity away.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("{who} holds {held} connections already (max_connections_per_user)")]
    UserCap { who: String, held: usize },
    #[error(
        "ordinary users hold {held} connections, all but the {reserved} reserved for admins and gateways"
    )]
    Reserve { held: usize, reserved: usize },
}

impl Refused {
    /// A short name for counting refusals by reason (the metrics' `reason` label).
    pub fn reason(&self) -> &'static str {
        match self {
            Refused::UserCap { .. } => "user_connection_cap",
            Refused::Reserve { .. } => "reserved_connections",
        }
    }
}

/// Something live on a connection; see [`ConnState::busy`].
pub struct Busy(Arc<ConnState>);

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.busy.fetch_sub(1, Ordering::SeqCst) == 1 {
            *lock(&self.0.idle_since) = tokio::time::Instant::now();
            self.0.became_idle.notify_one();
        }
    }
}

/// The connections one server holds, its side of them: counted against `max_connections`,
/// and reachable by a graceful stop, which disconnects them all with its reason and waits for
/// them to end (a process that simply exited would drop what russh had not yet written to
/// them, the last words to the user included). Outgoing connections are
/// [`crate::ClientConnection`]s.
pub struct ServerConnections {
    active: AtomicUsize,
    stop: tokio::sync::watch::Sender<Option<String>>,
    ended: tokio::sync::Notify,
}

impl ServerConnections {
    pub fn new() -> Arc<ServerConnections> {
        Arc::new(ServerConnections {
            active: AtomicUsize::new(0),
            stop: tokio::sync::watch::channel(None).0,
            ended: tokio::sync::Notify::new(),
        })
    }

    /// How many are open now.
    pub fn open(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// Disconnect every connection with `why` and wait, at most `limit`, for them to end.
    /// Returns how many were still open at the limit.
    pub async fn close_all(&self, why: &str, limit: Duration) -> usize {
        self.stop.send_replace(Some(why.to_string()));
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let ended = self.ended.notified();
            if self.open() == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, ended).await.is_err() {
                return self.open();
            }
        }
    }
}

/// Resolves with the reason once a stop has begun.
async fn stopped(rx: &mut tokio::sync::watch::Receiver<Option<String>>) -> String {
    let why = rx
        .wait_for(|s| s.is_some())
        .await
        .map(|why| why.clone().unwrap_or_default());
    match why {
        Ok(why) => why,
        // The server is gone: nothing will ever stop this connection but itself.
        Err(_) => std::future::pending().await,
    }
}

/// Releases a connection's place in the budget when it ends.
struct Slot {
    connections: Arc<ServerConnections>,
    sources: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
    state: Arc<ConnState>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.connections.active.fetch_sub(1, Ordering::SeqCst);
        self.connections.ended.notify_waiters();
        let mut s = lock(&self.sources);
        if let Some(n) = s.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.remove(&self.ip);
            }
        }
        drop(s);
        self.state.release();
    }
}

/// Accept connections and run each through russh with the admission limits: accepting never
/// waits on a peer (every connection is its own task), a silent or slow peer is dropped at the
/// pre-auth deadline, an authenticated connection with nothing live is closed after the idle
/// timeout, and the budgets are enforced with a log line when hit. `make` builds each
/// connection's handler, which reports authentication and activity through the [`ConnState`].
pub async fn serve<H, F>(
    listener: TcpListener,
    config: Arc<russh::server::Config>,
    limits: ConnectionLimits,
    connections: Arc<ServerConnections>,
    mut make: F,
) -> std::io::Result<()>
where
    H: russh::server::Handler + Send + 'static,
    F: FnMut(SocketAddr, Option<SocketAddr>, Arc<ConnState>) -> H,
{
    let mut door = Door::new(limits, connections.clone());
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = door.admit(peer) else {
            drop(socket);
            continue;
        };
        let stop = connections.stop.subscribe();
        let _ = socket.set_nodelay(true);
        let local = socket.local_addr().ok();
        let handler = make(peer, local, slot.state.clone());
        tokio::spawn(run_connection(
            socket,
            peer,
            config.clone(),
            handler,
            slot,
            stop,
            limits.login_grace,
        ));
    }
}

/// The accept loop's admission: the handshake rate per source, then the connection budgets,
/// each with a log line at most once a second however hard the door is knocked on.
struct Door {
    limits: ConnectionLimits,
    connections: Arc<ServerConnections>,
    /// Connections open per source address.
    sources: Arc<Mutex<HashMap<IpAddr, usize>>>,
    holders: Arc<Mutex<Holders>>,
    startups: crate::startups::StartupRate,
    last_rate_log: Option<std::time::Instant>,
    last_untracked_log: Option<std::time::Instant>,
    last_budget_log: Option<std::time::Instant>,
}

impl Door {
    fn new(limits: ConnectionLimits, connections: Arc<ServerConnections>) -> Door {
        Door {
            limits,
            connections,
            sources: Arc::default(),
            holders: Arc::default(),
            startups: crate::startups::StartupRate::new(
                limits.new_connections_per_source_per_second,
                limits.new_connections_per_source_burst,
            ),
            last_rate_log: None,
            last_untracked_log: None,
            last_budget_log: None,
        }
    }

    /// Let `peer` in, taking its place in the budgets (the [`Slot`] gives it back), or refuse
    /// it (`None`): the socket is then only closed.
    fn admit(&mut self, peer: SocketAddr) -> Option<Slot> {
        let ip = peer.ip();
        // The handshake rate first: a refused connection costs a hash lookup and a close, never
        // a key exchange.
        let now = std::time::Instant::now();
        match self.startups.admit(ip, now) {
            crate::startups::Admission::Admitted => {}
            crate::startups::Admission::Refused => {
                if once_a_second(&mut self.last_rate_log, now) {
                    tracing::warn!(
                        "refusing {peer}: more than {} new connections from {ip} at once, or {} a second after (new_connections_per_source_burst, new_connections_per_source_per_second)",
                        self.limits.new_connections_per_source_burst,
                        self.limits.new_connections_per_source_per_second
                    );
                }
                return None;
            }
            crate::startups::Admission::Untracked => {
                if once_a_second(&mut self.last_untracked_log, now) {
                    tracing::warn!(
                        "{} sources are opening connections at once: {peer} is admitted without a rate limit (the connection budgets still apply)",
                        self.startups.tracked()
                    );
                }
            }
        }
        if let Some(why) = self.over_budget(ip) {
            if once_a_second(&mut self.last_budget_log, std::time::Instant::now()) {
                tracing::warn!("refusing {peer}: {why}");
            }
            return None;
        }
        self.connections.active.fetch_add(1, Ordering::SeqCst);
        let state = Arc::new(ConnState::new(self.limits, self.holders.clone()));
        Some(Slot {
            connections: self.connections.clone(),
            sources: self.sources.clone(),
            ip,
            state,
        })
    }

    /// Why a connection from `ip` would exceed a budget, if it would; if not, it is counted
    /// against its source.
    fn over_budget(&self, ip: IpAddr) -> Option<String> {
        if self.connections.open() >= self.limits.max_connections {
            return Some(format!(
                "connection budget of {} reached",
                self.limits.max_connections
            ));
        }
        let mut s = lock(&self.sources);
        let n = s.entry(ip).or_insert(0);
        if *n >= self.limits.max_connections_per_source {
            return Some(format!(
                "{} connections from {ip} already",
                self.limits.max_connections_per_source
            ));
        }
        *n += 1;
        None
    }
}

/// Whether a rate-limited log line may go out now (none in the last second), noting it if so.
fn once_a_second(last: &mut Option<std::time::Instant>, now: std::time::Instant) -> bool {
    if last.is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
        *last = Some(now);
        return true;
    }
    false
}

/// One connection's task, from the handshake to its end, the login deadline and idle watch
/// included (a second task per connection would cost every held session its memory).
async fn run_connection<H>(
    socket: tokio::net::TcpStream,
    peer: SocketAddr,
    config: Arc<russh::server::Config>,
    handler: H,
    slot: Slot,
    mut stop: tokio::sync::watch::Receiver<Option<String>>,
    login_grace: Duration,
) where
    H: russh::server::Handler + Send + 'static,
{
    let state = slot.state.clone();
    let _slot = slot;
    let deadline = tokio::time::Instant::now() + login_grace;
    let handshake =
        tokio::time::timeout_at(deadline, russh::server::run_stream(config, socket, handler));
    let session = tokio::select! {
        r = handshake => match r {
            Ok(Ok(s)) => s,
            Ok(Err(_)) => return,
            Err(_) => {
                tracing::info!("{peer}: no SSH handshake within {login_grace:?}; dropped");
                return;
            }
        },
        _ = stopped(&mut stop) => return,
    };
    let handle = session.handle();
    tokio::pin!(session);
    let why = tokio::select! {
        _ = &mut session => return,
        why = stopped(&mut stop) => Some(why),
        _ = tokio::time::sleep_until(deadline) => None,
        _ = state.on_authenticated.notified() => None,
    };
    let why = match why {
        Some(why) => why,
        None if !state.authenticated() => {
            tracing::info!("{peer}: not authenticated within {login_grace:?}; dropped");
            "portcullis: authentication took too long".to_string()
        }
        None => tokio::select! {
            _ = &mut session => return,
            why = stopped(&mut stop) => why,
            idle = idle_out(&state) => {
                tracing::info!("{peer}: nothing live for {idle:?}; closed");
                format!(
                    "portcullis: closing a connection idle for {}",
                    portcullis_core::time::format_duration(idle)
                )
            }
        },
    };
    let _ = handle
        .disconnect(russh::Disconnect::ByApplication, why, "en".into())
        .await;
    drop(handle);
    let _ = session.await;
}

/// Resolves once the connection has held nothing live for the idle timeout (never for a
/// gateway's own connection). Returns the timeout.
async fn idle_out(state: &ConnState) -> Duration {
    let timeout = state.limits.idle_timeout;
    loop {
        if state.exempt_from_idle() {
            std::future::pending::<()>().await;
        }
        if state.busy.load(Ordering::SeqCst) > 0 {
            state.became_idle.notified().await;
            continue;
        }
        let due = *lock(&state.idle_since) + timeout;
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {
                let still_idle = state.busy.load(Ordering::SeqCst) == 0
                    && *lock(&state.idle_since) + timeout <= tokio::time::Instant::now();
                if still_idle {
                    return timeout;
                }
            }
            _ = state.became_idle.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_data_over_the_advertised_packet_size_is_refused() {
        assert!(check_channel_data(MAX_PACKET as usize).is_ok());
        assert!(matches!(
            check_channel_data(MAX_PACKET as usize + 1),
            Err(russh::Error::PacketSize(n)) if n == MAX_PACKET as usize + 1
        ));
    }
}
