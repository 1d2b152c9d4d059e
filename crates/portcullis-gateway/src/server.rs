//! The gateway's SSH server: the thin russh handler. It authenticates configured users by
//! public key and routes each channel: direct-tcpip to [`crate::forward`], session channels of
//! a `user:target` login to [`crate::recorded`], and those of a plain login to
//! [`crate::command_relay`]. Every channel that reaches a target goes through
//! [`crate::session`], the one lifecycle.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use portcullis_core::keys;
use portcullis_core::user_ca;
use portcullis_ssh::certificate;
use portcullis_ssh::login::{self, Reason, Refusal};
use portcullis_ssh::server::{Busy, ConnState};
use russh::server::{
    self, Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey,
};
use russh::{Channel, ChannelId, ChannelOpenFailure};
use tokio::net::TcpListener;

use crate::errors::GatewayError;
use crate::forward::{self, Forward};
use crate::recorded::{self, Recorded};
use crate::refusals;
use crate::session::{self, Holder, Live};
use crate::state::GatewayState;

mod channels;
mod login_state;

use crate::channel_memory::Kind;
use channels::ChannelSlot;

fn ssh_config(gw: &GatewayState) -> server::Config {
    portcullis_ssh::server::config(gw.host_key().clone(), Duration::from_secs(30))
}

pub(crate) async fn serve(gw: Arc<GatewayState>) -> Result<(), GatewayError> {
    let listen = gw.settings().listen.clone();
    let listener = TcpListener::bind(&listen)
        .await
        .map_err(|e| GatewayError::Config(format!("cannot listen on {listen}: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(GatewayError::io("cannot read the bound address"))?;
    let addr_file = gw.settings().data_dir.join("gateway.addr");
    std::fs::write(&addr_file, format!("{bound}\n")).map_err(GatewayError::io(format!(
        "cannot write {}",
        addr_file.display()
    )))?;
    tracing::info!(
        "gateway {} listening on {bound} (host key {})",
        gw.name(),
        keys::fingerprint(gw.host_key().public_key())
    );
    let config = Arc::new(ssh_config(&gw));
    let mut next_id = 0u64;
    portcullis_ssh::server::serve(
        listener,
        config,
        gw.settings().limits,
        gw.connections().clone(),
        |peer, local, state| {
            next_id += 1;
            UserConnection {
                gw: gw.clone(),
                id: next_id,
                peer,
                local,
                holder: None,
                mode: Mode::Commands,
                state,
                channels: HashMap::new(),
                ptys: HashSet::new(),
                open_channels: Arc::default(),
                refused: None,
                security_key_flags: None,
            }
        },
    )
    .await
    .map_err(GatewayError::io("the accept loop ended"))
}

/// What a login is for, fixed when it authenticates.
enum Mode {
    /// `alice@bastion`: control commands relayed to the approver, and forwards.
    Commands,
    /// `alice:web-1@bastion`: recorded sessions on `web-1` (and forwards).
    Recorded(String),
}

/// The gateway's handler for one user's SSH connection: who they proved to be, what the login
/// is for, and the channels open on it. (The gateway's own outgoing connections, to the
/// approver and to targets, are `portcullis_ssh::ClientConnection`s.)
struct UserConnection {
    gw: Arc<GatewayState>,
    id: u64,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    /// Set once authenticated.
    holder: Option<Holder>,
    mode: Mode,
    /// Shared with the accept loop: the per-user caps, and whether anything is live on the
    /// connection (an idle one is closed).
    state: Arc<ConnState>,
    /// Session channels opened for a control command, until the command arrives.
    channels: HashMap<ChannelId, (Channel<Msg>, ChannelSlot)>,
    /// Those of them whose client asked for a terminal (`ssh -t`).
    ptys: HashSet<ChannelId>,
    /// Channels of every kind open on this connection, against
    /// `max_channels_per_connection`.
    open_channels: Arc<AtomicUsize>,
    /// Why its attempts to log in were refused: logged and counted if it never logs in.
    refused: Option<Refusal>,
    /// The authenticator's flags of the FIDO signature just verified, for the login that
    /// russh asks about next (see `login::check_touch`).
    security_key_flags: Option<u8>,
}

impl Drop for UserConnection {
    fn drop(&mut self) {
        // A login refused is a connection that tried and never got in: a client trying three
        // keys before the right one is not three refusals.
        if let (None, Some(refusal)) = (&self.holder, &self.refused) {
            refusal.log(self.peer);
            self.gw.metrics().login_refused(refusal.reason.label());
            refusals::login(&self.gw, self.peer, refusal);
        }
    }
}

impl UserConnection {
    /// For a recorded login, whether a request on one of its channels (pty, environment, the
    /// command) may be granted now: the same check the session's task makes at the same moment.
    fn may_use_target(&self) -> bool {
        match (&self.mode, &self.holder) {
            (Mode::Recorded(target), Some(who)) => {
                session::admit_user(&self.gw, who).is_ok()
                    && session::grant_for(&self.gw, who, target).is_ok()
            }
            _ => false,
        }
    }

    fn reply(
        &self,
        channel: ChannelId,
        ok: bool,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        if ok {
            session.channel_success(channel)
        } else {
            session.channel_failure(channel)
        }
    }
}

impl server::Handler for UserConnection {
    type Error = russh::Error;

    async fn authentication_banner(&mut self) -> Result<Option<String>, Self::Error> {
        Ok(self.gw.catalog().is_none().then(|| {
            "portcullis: this gateway has not heard from the approver yet; try again shortly\n"
                .to_string()
        }))
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        // An offer only invites a signature; identity is decided after it verifies.
        self.holder = None;
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
        self.holder = None;
        let flags = self.security_key_flags.take();
        let checked = login::check_key(key.public_key, key.algorithm)
            .and_then(|()| login::check_touch(key.public_key, flags));
        if let Err(why) = checked {
            Refusal::new(user, key.public_key, why, true).keep(&mut self.refused);
            return Ok(Auth::reject());
        }
        let Some(name) = self.identify(user, key.public_key) else {
            let why = Reason::from_label(self.why_unknown(user, key.public_key));
            Refusal::new(user, key.public_key, why, true).keep(&mut self.refused);
            return Ok(Auth::reject());
        };
        Ok(self.logged_in(user, name, keys::normalize(key.public_key), key.public_key))
    }

    async fn auth_openssh_certificate(
        &mut self,
        user: &str,
        certificate: &russh::keys::Certificate,
    ) -> Result<Auth, Self::Error> {
        self.holder = None;
        let key = certificate::certified_key(certificate);
        let (name, _) = split_login(user);
        let flags = self.security_key_flags.take();
        let checked = match self.gw.catalog() {
            Some(catalog) => certificate::check_with(
                certificate,
                name,
                self.peer.ip(),
                &catalog,
                certificate::Clocks::now(self.gw.now().secs()),
            ),
            None => Err(Reason::NoCatalog),
        }
        .and_then(|b| login::check_touch(&key, flags).map(|()| b));
        match checked {
            Ok(binding) => Ok(self.logged_in(user, name.to_string(), binding.to_text(), &key)),
            Err(why) => {
                Refusal::certificate(user, &key, why).keep(&mut self.refused);
                Ok(Auth::reject())
            }
        }
    }

    async fn auth_security_key_flags(&mut self, _user: &str, flags: u8) -> Result<(), Self::Error> {
        self.security_key_flags = Some(flags);
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Closed before it asked for a command (sftp refused on a plain login, a client's
        // health check): its slot, and its part of the user's channel memory, come back now.
        // A started one gives them back when its task ends.
        self.channels.remove(&channel);
        self.ptys.remove(&channel);
        Ok(())
    }

    // Called after russh has queued the packet for the channel: a peer that sends more than
    // the packet size we advertised is cut here, so no channel queue holds more than
    // `CHANNEL_QUEUE` packets of at most `MAX_PACKET` bytes (portcullis_ssh::server).
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
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(who) = self.holder(session) else {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        let (kind, target) = match &self.mode {
            Mode::Recorded(target) => (Kind::Recorded, Some(target.clone())),
            Mode::Commands => (Kind::Command, None),
        };
        let slot = match self.channel_slot(&who, kind) {
            Ok(slot) => slot,
            Err(why) => {
                self.no_room(why, reply, who, "session", target).await;
                return Ok(());
            }
        };
        let Mode::Recorded(target) = &self.mode else {
            self.channels.insert(channel.id(), (channel, slot));
            reply.accept().await;
            return Ok(());
        };
        let (gw, target, busy) = (self.gw.clone(), target.clone(), self.state.busy());
        tokio::spawn(async move {
            open_recorded(gw, who, target, channel, reply).await;
            drop((slot, busy));
        });
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(who) = self.holder(session) else {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        if !user_ca::permits_port_forwarding(&who.key) {
            tracing::info!(
                "{} {}: forward refused: the certificate lacks permit-port-forwarding",
                who.client,
                who.user
            );
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        }
        let slot = match self.channel_slot(&who, Kind::Forward) {
            Ok(slot) => slot,
            Err(why) => {
                let destination = format!("{host_to_connect}:{port_to_connect}");
                self.no_room(why, reply, who, "direct-tcpip", Some(destination))
                    .await;
                return Ok(());
            }
        };
        let forward = Forward {
            gw: self.gw.clone(),
            who,
            host: host_to_connect.to_string(),
            port: port_to_connect,
        };
        let busy = self.state.busy();
        tokio::spawn(async move {
            forward.run(channel, reply).await;
            drop((slot, busy));
        });
        Ok(())
    }

    // For a recorded session, requests are relayed to the target by its task, which reads them
    // from the channel and checks each against a live grant; here they are only answered.
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
        let ok = match self.mode {
            // Remembered only for a channel waiting for its command: the set stays as small as
            // the channel budget.
            Mode::Commands => {
                if self.channels.contains_key(&channel) {
                    self.ptys.insert(channel);
                }
                true
            }
            Mode::Recorded(_) => self.may_use_target(),
        } && self
            .holder
            .as_ref()
            .is_some_and(|h| user_ca::permits_pty(&h.key));
        self.reply(channel, ok, session)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        _value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let ok = self.may_use_target();
        self.reply(channel, ok, session)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Mode::Recorded(_) = self.mode {
            let ok = self.may_use_target();
            return self.reply(channel, ok, session);
        }
        self.relay_command(channel, "help".into(), session)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Mode::Recorded(_) = self.mode {
            let ok = self.may_use_target();
            return self.reply(channel, ok, session);
        }
        let line = String::from_utf8_lossy(data).into_owned();
        self.relay_command(channel, line, session)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let ok = self.may_use_target();
        self.reply(channel, ok, session)
    }
}

impl UserConnection {
    /// The authenticated user, with the connection's handle, for a new channel.
    fn holder(&mut self, session: &Session) -> Option<Holder> {
        let who = self.holder.as_mut()?;
        if who.handle.is_none() {
            who.handle = Some(session.handle());
        }
        Some(who.clone())
    }

    /// Run a control command on the approver as this user.
    fn relay_command(
        &mut self,
        id: ChannelId,
        line: String,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        let (Some((channel, slot)), Some(who)) = (self.channels.remove(&id), self.holder.as_ref())
        else {
            return session.channel_failure(id);
        };
        session.channel_success(id)?;
        let asker = crate::command_relay::Asker {
            user: who.user.clone(),
            fingerprint: who.proof(),
            reach: who.reach.clone(),
            pty: self.ptys.remove(&id),
        };
        let gw = self.gw.clone();
        let busy: Busy = self.state.busy();
        tokio::spawn(async move {
            crate::command_relay::run(gw, asker, line, channel).await;
            drop((slot, busy));
        });
        Ok(())
    }
}

/// Say why a recorded login's session channel is refused, and record the refusal.
async fn refused_recorded(
    gw: &GatewayState,
    who: &Holder,
    target: &str,
    denial: session::Denial,
    reply: ChannelOpenHandle,
) {
    let why = crate::pending::refusal(gw, who, &denial).await;
    tracing::info!(
        "{} {}: refused a session on {target:?}: {why:?}",
        who.client,
        who.user
    );
    reply.reject(forward::refuse(why.clone())).await;
    refusals::record(gw, who, "session", target, denial.reason(), &why).await;
}

/// A session channel of a recorded login: admitted (a grant approved a moment ago gets a moment
/// to arrive), put on the books at once, accepted, then run.
async fn open_recorded(
    gw: Arc<GatewayState>,
    who: Holder,
    target: String,
    channel: Channel<Msg>,
    reply: ChannelOpenHandle,
) {
    let admitted = match session::admit(&gw, || recorded::check(&gw, &who, &target)).await {
        Ok(a) => a,
        // Boxed, as a forward's refusal: the session's task is not sized for it.
        Err(denial) => return Box::pin(refused_recorded(&gw, &who, &target, denial, reply)).await,
    };
    let id = match gw.new_session_id().await {
        Ok(id) => id,
        Err(e) => {
            tracing::error!("cannot number a session: {e}");
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return;
        }
    };
    let live = Live::enter(&gw, id, &who, &admitted.target.name, admitted.grant);
    reply.accept().await;
    Recorded {
        gw,
        who,
        target: admitted.target,
        record_data: admitted.record_data,
        live,
    }
    .run(channel)
    .await;
}

/// `alice:web-1` is user `alice` asking for a recorded session on `web-1`; `alice` (or
/// `alice:`) is plain `alice`. Public for the fuzz target (`fuzz/fuzz_targets/login.rs`).
pub fn split_login(login: &str) -> (&str, Option<&str>) {
    match login.split_once(':') {
        Some((user, target)) if !target.is_empty() => (user, Some(target)),
        Some((user, _)) => (user, None),
        None => (login, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every login of up to five characters from an alphabet with the separator in it: the
    /// user part never keeps a colon, a target is never empty, and nothing is lost or invented
    /// (the fuzz target `login` checks the same on arbitrary text).
    #[test]
    fn split_login_keeps_every_part() {
        let alphabet = ["a", ":", "é", "-", " "];
        let mut logins = vec![String::new()];
        for _ in 0..5 {
            let longer: Vec<String> = logins
                .iter()
                .flat_map(|l| alphabet.iter().map(move |c| format!("{l}{c}")))
                .collect();
            logins.extend(longer);
        }
        for login in &logins {
            let (user, target) = split_login(login);
            assert!(!user.contains(':'), "{login:?}");
            match target {
                Some(t) => {
                    assert!(!t.is_empty(), "{login:?}");
                    assert_eq!(format!("{user}:{t}"), *login);
                }
                None => assert!(*login == user || *login == format!("{user}:"), "{login:?}"),
            }
        }
        assert_eq!(split_login("alice:web-1"), ("alice", Some("web-1")));
        assert_eq!(split_login("alice:"), ("alice", None));
        assert_eq!(split_login("alice:web-1:22"), ("alice", Some("web-1:22")));
    }
}
