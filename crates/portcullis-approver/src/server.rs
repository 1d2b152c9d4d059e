//! The control port: listening, the background tasks that start with it (scheduler, counted
//! refusals, retention, SIGHUP reloads), the graceful stop, and the russh handler that
//! authenticates configured users and gateways by public key, bounds their channels and hands
//! each exec channel to `exec`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use portcullis_core::audit_event::{AuditEvent, EventKind};
use portcullis_core::catalog::Principal;
use portcullis_core::keys;
use portcullis_ssh::login::{self, Reason, Refusal};
use russh::server::{
    self, Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey,
};
use russh::{Channel, ChannelId};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::app::Approver;
use crate::commands::Caller;
use crate::errors::ApproverError;
use crate::{exec, scheduler};

/// The russh settings of the control port.
fn ssh_config(app: &Approver) -> server::Config {
    portcullis_ssh::server::config(app.keys.host.clone(), Duration::from_secs(15))
}

/// Serve the control port until the process ends. Writes the bound address to
/// `DATA_DIR/approver.addr` (useful with `listen = "127.0.0.1:0"`), starts the deadline
/// scheduler, and reloads the config on SIGHUP.
pub async fn serve(app: Arc<Approver>) -> Result<(), ApproverError> {
    serve_until(app, std::future::pending()).await
}

/// How long connections get to close once told the approver is stopping.
const CONNECTIONS_WAIT: Duration = Duration::from_secs(2);

/// As [`serve`], until `stop` resolves with what stopped it (the binary passes SIGTERM or
/// SIGINT); then stop gracefully: no new connections, the write in flight (if any) finishes,
/// counted refusals and `approver.stopped` are written and no other write starts, and
/// connections are closed with the reason. A control port that fails stops the same way.
pub async fn serve_until(
    app: Arc<Approver>,
    stop: impl std::future::Future<Output = &'static str>,
) -> Result<(), ApproverError> {
    let conns = portcullis_ssh::server::ServerConnections::new();
    let (served, why) = tokio::select! {
        served = accept(app.clone(), conns.clone()) => {
            let why = match &served {
                Ok(()) => "the control port closed".to_string(),
                Err(e) => format!("failed: {e}"),
            };
            (served, why)
        }
        why = stop => (Ok(()), why.to_string()),
    };
    // The listener went with the accept loop. Counted refusals are written while writes are
    // still allowed; then the writer is taken and kept, so the write in flight finishes, the
    // stop is the last record and no write starts after it: every acknowledgement given stays
    // true.
    app.record_counted_refusals().await;
    let stopped = AuditEvent::new(
        "approver",
        EventKind::ApproverStopped {
            pid: std::process::id(),
        },
    )
    .reason(Some(why));
    let _writer = app.stop_writing(stopped).await;
    let open = conns
        .close_all("portcullis: approver stopping", CONNECTIONS_WAIT)
        .await;
    if open > 0 {
        tracing::warn!("{open} connections still open after {CONNECTIONS_WAIT:?}");
    }
    tracing::info!("approver stopped");
    served
}

async fn accept(
    app: Arc<Approver>,
    conns: Arc<portcullis_ssh::server::ServerConnections>,
) -> Result<(), ApproverError> {
    let listen = app.settings.listen.clone();
    let listener = TcpListener::bind(&listen)
        .await
        .map_err(|e| ApproverError::Config(format!("cannot listen on {listen}: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| ApproverError::Config(format!("cannot read the bound address: {e}")))?;
    let addr_file = app.settings.data_dir.join("approver.addr");
    std::fs::write(&addr_file, format!("{bound}\n"))
        .map_err(|e| ApproverError::Config(format!("cannot write {}: {e}", addr_file.display())))?;
    tracing::info!(
        "approver listening on {bound} (host key {})",
        keys::fingerprint(app.keys.host.public_key())
    );

    crate::metrics::serve(app.clone()).await?;
    tokio::spawn(scheduler::run(app.clone()));
    tokio::spawn(record_counted_refusals(app.clone()));
    tokio::spawn(crate::retention::run(app.clone()));
    #[cfg(unix)]
    tokio::spawn(reload_on_sighup(app.clone()));

    let config = Arc::new(ssh_config(&app));
    portcullis_ssh::server::serve(
        listener,
        config,
        app.settings.limits,
        conns,
        |peer, local, state| Connection {
            app: app.clone(),
            peer: peer.to_string(),
            local,
            caller: None,
            state,
            channels: HashMap::new(),
            ptys: HashSet::new(),
            places: Arc::new(Semaphore::new(0)),
            refused: None,
            security_key_flags: None,
        },
    )
    .await
    .map_err(|e| ApproverError::Config(format!("control port failed: {e}")))
}

/// Write the refusals counted past their budget, every few seconds (see `refusals`).
async fn record_counted_refusals(app: Arc<Approver>) {
    let mut tick = tokio::time::interval(crate::refusals::FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        app.record_counted_refusals().await;
    }
}

#[cfg(unix)]
async fn reload_on_sighup(app: Arc<Approver>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; use `portcullis admin reload`");
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading {}", app.config_path().display());
        if let Err(e) = app.reload("SIGHUP").await {
            tracing::warn!("{e}");
        }
    }
}

/// Channels a user's connection may hold at once, open or running a command: a `wait` holds
/// its place until it ends, so one connection cannot pile up blocked commands.
const USER_CHANNELS: usize = 8;
/// The same for a gateway's connection, which carries its stream, its reports and the commands
/// it relays for all of its users.
const GATEWAY_CHANNELS: usize = 256;

/// One client connection.
struct Connection {
    app: Arc<Approver>,
    peer: String,
    /// Our address as the peer reached it, for the commands replies suggest.
    local: Option<std::net::SocketAddr>,
    caller: Option<Caller>,
    /// Shared with the accept loop: who it authenticated as (against the per-user caps and
    /// the reserve), and whether anything runs on it (an idle one is closed).
    state: Arc<portcullis_ssh::server::ConnState>,
    /// Channels opened and not yet started, each with its place.
    channels: HashMap<ChannelId, (Channel<Msg>, OwnedSemaphorePermit)>,
    /// Channels whose client asked for a terminal (`ssh -t`), until their command starts.
    ptys: HashSet<ChannelId>,
    /// The places of this connection: taken when a channel opens, given back when its command
    /// ends (or it closes without one).
    places: Arc<Semaphore>,
    /// Why its attempts to log in were refused: logged and counted if it never logs in.
    refused: Option<portcullis_ssh::login::Refusal>,
    /// The authenticator's flags of the FIDO signature just verified, for the login that
    /// russh asks about next (see `login::check_touch`).
    security_key_flags: Option<u8>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        // A login refused is a connection that tried and never got in, counted once.
        if let (None, Some(refusal)) = (&self.caller, &self.refused) {
            refusal.log(&self.peer);
            self.app.metrics.login_refused(refusal.reason.label());
            self.app.record_login_refusal(&self.peer, refusal);
        }
    }
}

impl Connection {
    fn identify(&self, user: &str, key: &russh::keys::PublicKey) -> Option<Principal> {
        self.app.catalog().authenticate(user, &keys::normalize(key))
    }

    /// Why `identify` found nobody, for the refusals' metric.
    fn why_unknown(&self, login: &str, key: &russh::keys::PublicKey) -> &'static str {
        let catalog = self.app.catalog();
        let norm = keys::normalize(key);
        // Scanned whether or not the user exists, so that an unknown user's refusal takes as
        // long as a known one's (the refusal floor is only 1 ms: AUTH_REFUSAL_FLOOR).
        let held = catalog.users.values().any(|u| u.keys.contains(&norm))
            || catalog.gateways.values().any(|g| g.key == norm);
        let revoked = catalog.key_revoked(&keys::fingerprint(key)).is_some();
        if !catalog.users.contains_key(login) && !catalog.gateways.contains_key(login) {
            "unknown_user"
        } else if revoked {
            "revoked"
        } else if held {
            "wrong_user"
        } else {
            "unknown_key"
        }
    }
}

impl Connection {
    /// Count the connection against its principal's cap: gateways' own connections never run
    /// out of room or idle out, admins may use the reserve, everyone else shares the rest.
    fn admit(&self, principal: &Principal) -> Result<(), portcullis_ssh::server::Refused> {
        use portcullis_ssh::server::Standing;
        let catalog = self.app.catalog();
        let (who, standing) = match principal {
            Principal::Gateway(name) => (format!("gateway {name}"), Standing::Service),
            Principal::User(name) => {
                let admin = catalog.users.get(name).is_some_and(|u| u.is_admin());
                let standing = if admin {
                    Standing::Reserved
                } else {
                    Standing::Ordinary
                };
                (name.clone(), standing)
            }
        };
        self.state.authenticate(&who, standing)
    }
}

impl server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        // An offer only invites a signature: identity is decided in `auth_publickey`, after
        // russh has verified it (FIELD-NOTES: Warpgate GHSA-3cjp-w4cp-m9c8).
        self.caller = None;
        self.security_key_flags = None;
        if let Err(why) = login::check_key(offer.public_key, offer.algorithm) {
            Refusal::new(user, offer.public_key, why, false).keep(&mut self.refused);
            return Ok(Auth::reject());
        }
        Ok(match self.identify(user, offer.public_key) {
            Some(_) => Auth::Accept,
            // A certificate is decided after its signature, whoever's key it certifies; a
            // plain key nobody holds is refused here, before the client signs with it (stock
            // ssh offers `id` before `id-cert.pub`). The `certificate` of an offer is our
            // russh patch.
            None if offer.certificate.is_some() => Auth::Accept,
            None => {
                let why = Reason::from_label(self.why_unknown(user, offer.public_key));
                Refusal::new(user, offer.public_key, why, false).keep(&mut self.refused);
                Auth::reject()
            }
        })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        self.caller = None;
        let flags = self.security_key_flags.take();
        let checked = login::check_key(key.public_key, key.algorithm)
            .and_then(|()| login::check_touch(key.public_key, flags));
        if let Err(why) = checked {
            Refusal::new(user, key.public_key, why, true).keep(&mut self.refused);
            return Ok(Auth::reject());
        }
        match self.identify(user, key.public_key) {
            Some(principal) => {
                let fingerprint = keys::fingerprint(key.public_key);
                if let Err(why) = self.admit(&principal) {
                    let reason = Reason::Admission(why.reason(), why.to_string());
                    Refusal::new(user, key.public_key, reason, true).keep(&mut self.refused);
                    tracing::warn!(
                        "{}: {principal:?} ({fingerprint}) refused: {why}",
                        self.peer
                    );
                    return Ok(Auth::reject());
                }
                tracing::info!(
                    "{} authenticated as {principal:?} ({fingerprint})",
                    self.peer
                );
                let places = match principal {
                    Principal::Gateway(_) => GATEWAY_CHANNELS,
                    Principal::User(_) => USER_CHANNELS,
                };
                self.places = Arc::new(Semaphore::new(places));
                self.caller = Some(Caller::connected(principal, fingerprint, self.local));
                Ok(Auth::Accept)
            }
            None => {
                let why = Reason::from_label(self.why_unknown(user, key.public_key));
                Refusal::new(user, key.public_key, why, true).keep(&mut self.refused);
                Ok(Auth::reject())
            }
        }
    }

    async fn auth_openssh_certificate(
        &mut self,
        user: &str,
        certificate: &russh::keys::Certificate,
    ) -> Result<Auth, Self::Error> {
        self.caller = None;
        let key = portcullis_ssh::certificate::certified_key(certificate);
        // The source-address option is checked against the address the login came from.
        let client = self
            .peer
            .parse::<std::net::SocketAddr>()
            .map(|a| a.ip())
            .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
        let flags = self.security_key_flags.take();
        let checked = portcullis_ssh::certificate::check_with(
            certificate,
            user,
            client,
            &self.app.catalog(),
            portcullis_ssh::certificate::Clocks::now(self.app.now().secs()),
        )
        .and_then(|b| login::check_touch(&key, flags).map(|()| b));
        let binding = match checked {
            Ok(b) => b,
            Err(why) => {
                Refusal::certificate(user, &key, why).keep(&mut self.refused);
                return Ok(Auth::reject());
            }
        };
        let principal = Principal::User(user.to_string());
        let fingerprint = keys::fingerprint(&key);
        if let Err(why) = self.admit(&principal) {
            let reason = Reason::Admission(why.reason(), why.to_string());
            Refusal::new(user, &key, reason, true).keep(&mut self.refused);
            return Ok(Auth::reject());
        }
        tracing::info!(
            "{} authenticated as {principal:?} ({fingerprint}, certificate of CA {} serial {} key id {:?})",
            self.peer,
            binding.ca,
            binding.serial,
            binding.key_id
        );
        self.places = Arc::new(Semaphore::new(USER_CHANNELS));
        let mut caller = Caller::connected(principal, fingerprint, self.local);
        caller.certificate = Some(binding);
        self.caller = Some(caller);
        Ok(Auth::Accept)
    }

    async fn auth_security_key_flags(&mut self, _user: &str, flags: u8) -> Result<(), Self::Error> {
        self.security_key_flags = Some(flags);
        Ok(())
    }

    // As at the gateway: russh has queued the packet for the channel by now, and a peer that
    // sends more than the packet size we advertised is cut, so no channel queue holds more
    // than `CHANNEL_QUEUE` packets of at most `MAX_PACKET` bytes.
    async fn data(
        &mut self,
        _channel: ChannelId,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        portcullis_ssh::server::check_channel_data(data.len())
    }

    async fn extended_data(
        &mut self,
        _channel: ChannelId,
        _code: u32,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        portcullis_ssh::server::check_channel_data(data.len())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let place = match &self.caller {
            Some(_) => self.places.clone().try_acquire_owned().ok(),
            None => None,
        };
        let Some(place) = place else {
            reply
                .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        self.channels.insert(channel.id(), (channel, place));
        reply.accept().await;
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Closed before it started a command: its place comes back now. A started one gives
        // its place back when its task ends.
        self.channels.remove(&channel);
        self.ptys.remove(&channel);
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Accepted so that `ssh -t` works; replies then end lines with CR LF.
        if self.channels.contains_key(&channel) {
            self.ptys.insert(channel);
        }
        session.channel_success(channel)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        _value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // No command: the commands this user may run (`commands::help`), not clap's usage.
        self.start(channel, String::new(), session)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let line = String::from_utf8_lossy(data).into_owned();
        self.start(channel, line, session)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }
}

impl Connection {
    fn start(
        &mut self,
        id: ChannelId,
        line: String,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        let (Some((channel, place)), Some(caller)) =
            (self.channels.remove(&id), self.caller.clone())
        else {
            return session.channel_failure(id);
        };
        session.channel_success(id)?;
        let pty = self.ptys.remove(&id);
        let app = self.app.clone();
        let peer = self.peer.clone();
        let busy = self.state.busy();
        tokio::spawn(async move {
            tracing::debug!("{peer} {:?}: {line}", caller.principal);
            exec::run_channel(app, caller, line, channel, pty).await;
            drop((place, busy));
        });
        Ok(())
    }
}
