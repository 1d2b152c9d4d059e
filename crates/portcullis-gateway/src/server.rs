//! The gateway's SSH server: public-key authentication of configured users, direct-tcpip
//! forwarding under grants, and control commands relayed to the approver.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use portcullis_core::keys;
use portcullis_core::model::SessionReport;
use russh::server::{
    self, Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey,
};
use russh::{Channel, ChannelId, ChannelMsg, ChannelOpenFailure, Disconnect};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::errors::GatewayError;
use crate::recorded;
use crate::relay::{self, Counters};
use crate::spool;
use crate::state::{EndReason, Gateway, LiveSession};

/// How long to wait for a target to accept a connection.
const TARGET_CONNECT: Duration = Duration::from_secs(10);
/// How long a forward waits for a grant that may still be replicating before it is refused.
const GRANT_GRACE: Duration = Duration::from_secs(1);

fn ssh_config(gw: &Gateway) -> server::Config {
    portcullis_ssh::server::config(gw.host_key.clone(), Duration::from_secs(30))
}

pub(crate) async fn serve(gw: Arc<Gateway>) -> Result<(), GatewayError> {
    let listen = gw.settings.listen.clone();
    let listener = TcpListener::bind(&listen)
        .await
        .map_err(|e| GatewayError::Config(format!("cannot listen on {listen}: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| GatewayError::Io(e.to_string()))?;
    let addr_file = gw.settings.data_dir.join("gateway.addr");
    std::fs::write(&addr_file, format!("{bound}\n"))
        .map_err(|e| GatewayError::Io(format!("cannot write {}: {e}", addr_file.display())))?;
    tracing::info!(
        "gateway {} listening on {bound} (host key {})",
        gw.name,
        keys::fingerprint(gw.host_key.public_key())
    );
    let config = Arc::new(ssh_config(&gw));
    let mut next_id = 0u64;
    portcullis_ssh::server::serve(
        listener,
        config,
        gw.settings.limits,
        |peer, local, authed| {
            next_id += 1;
            Conn {
                gw: gw.clone(),
                id: next_id,
                peer,
                local,
                user: None,
                target: None,
                authed,
                channels: HashMap::new(),
                open_channels: Arc::default(),
            }
        },
    )
    .await
    .map_err(|e| GatewayError::Io(format!("accept loop ended: {e}")))
}

struct User {
    name: String,
    fingerprint: String,
    /// The verified key, normalised: checked again against the catalog on every channel, so
    /// a user or key removed by a reload loses access at once.
    key: String,
}

struct Conn {
    gw: Arc<Gateway>,
    id: u64,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    user: Option<User>,
    /// `alice:web-1` logs in as alice for a recorded session on web-1.
    target: Option<String>,
    authed: Arc<AtomicBool>,
    /// Session channels opened for a control command, until the command arrives.
    channels: HashMap<ChannelId, (Channel<Msg>, ChannelSlot)>,
    /// Channels of every kind open on this connection, against
    /// `max_channels_per_connection`.
    open_channels: Arc<AtomicUsize>,
}

/// A channel's place in its connection's budget, given back when the channel's work ends.
struct ChannelSlot(Arc<AtomicUsize>);

impl Drop for ChannelSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Conn {
    /// A place for one more channel, or `None` (logged, naming `what` was refused) when the
    /// connection holds its maximum.
    fn channel_slot(&self, what: &str) -> Option<ChannelSlot> {
        let max = self.gw.settings.max_channels_per_connection;
        let taken = self
            .open_channels
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            });
        if taken.is_err() {
            tracing::info!(
                "{}: {what} refused, the connection holds its maximum",
                self.peer
            );
            return None;
        }
        Some(ChannelSlot(self.open_channels.clone()))
    }

    fn identify(&self, login: &str, key: &russh::keys::PublicKey) -> Option<String> {
        let catalog = self.gw.catalog()?;
        let (name, _) = split_login(login);
        let user = catalog.users.get(name)?;
        let norm = keys::normalize(key);
        user.keys
            .iter()
            .any(|k| k == &norm)
            .then(|| user.name.clone())
    }

    /// How the user reaches this gateway, for the commands we suggest: `-p PORT USER@HOST`.
    fn reach(&self, user: &str) -> String {
        match self.local {
            Some(a) => format!("ssh -p {} {user}@{}", a.port(), a.ip()),
            None => format!("ssh {user}@bastion"),
        }
    }
}

impl server::Handler for Conn {
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
        self.user = None;
        Ok(match self.identify(user, offer.public_key) {
            Some(_) => Auth::Accept,
            None => Auth::reject(),
        })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        self.user = None;
        match self.identify(user, key.public_key) {
            Some(name) => {
                let fingerprint = keys::fingerprint(key.public_key);
                tracing::info!("{}: authenticated {name} ({fingerprint})", self.peer);
                self.target = split_login(user).1.map(str::to_string);
                self.user = Some(User {
                    name,
                    fingerprint,
                    key: keys::normalize(key.public_key),
                });
                self.authed.store(true, Ordering::SeqCst);
                Ok(Auth::Accept)
            }
            None => {
                tracing::info!("{}: key refused for {user:?}", self.peer);
                Ok(Auth::reject())
            }
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(user) = &self.user else {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        let Some(slot) = self.channel_slot("channel") else {
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        };
        if let Some(target) = &self.target {
            // Every session channel to a target checks the grant.
            let reach = self.reach(&user.name);
            let (gw, id, peer) = (self.gw.clone(), self.id, self.peer);
            let (name, key, fingerprint) = (
                user.name.clone(),
                user.key.clone(),
                user.fingerprint.clone(),
            );
            let (target, handle) = (target.clone(), session.handle());
            tokio::spawn(async move {
                // A grant approved a moment ago may still be on its way down the stream.
                let mut changes = gw.grants_changed.subscribe();
                let deadline = tokio::time::Instant::now() + GRANT_GRACE;
                let checked = loop {
                    changes.borrow_and_update();
                    let r = recorded::check(&gw, &name, &key, &target, &reach);
                    let waiting = r.is_err() && gw.active_grant(&name, &target).is_none();
                    if !waiting || gw.link().is_none() {
                        break r;
                    }
                    if !matches!(
                        tokio::time::timeout_at(deadline, changes.changed()).await,
                        Ok(Ok(()))
                    ) {
                        break r;
                    }
                };
                match checked {
                    Err(why) => {
                        tracing::info!("{peer} {name}: refused a session on {target}: {why}");
                        reply.reject(refuse(why)).await;
                    }
                    Ok((target, grant, record_data)) => {
                        reply.accept().await;
                        let recorded = recorded::Recorded {
                            gw,
                            conn: id,
                            user: name,
                            key,
                            fingerprint,
                            client: peer.to_string(),
                            reach,
                            target,
                            grant,
                            record_data,
                            handle,
                        };
                        recorded.run(channel).await;
                    }
                }
                drop(slot);
            });
            return Ok(());
        }
        self.channels.insert(channel.id(), (channel, slot));
        reply.accept().await;
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
        let Some(user) = &self.user else {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        let Some(slot) = self.channel_slot("forward") else {
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        };
        let request = Forward {
            gw: self.gw.clone(),
            conn: self.id,
            user: user.name.clone(),
            fingerprint: user.fingerprint.clone(),
            key: user.key.clone(),
            client: self.peer.to_string(),
            reach: self.reach(&user.name),
            host: host_to_connect.to_string(),
            port: port_to_connect,
            handle: session.handle(),
        };
        tokio::spawn(async move {
            request.run(channel, reply).await;
            drop(slot);
        });
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
        session.channel_success(channel)
    }

    // For a recorded session, requests are relayed to the target by its task, which reads them
    // from the channel; here they are only acknowledged.
    async fn env_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        _value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.target.is_some() {
            session.channel_success(channel)
        } else {
            session.channel_failure(channel)
        }
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.target.is_some() {
            return session.channel_success(channel);
        }
        self.relay_command(channel, "help".into(), session)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.target.is_some() {
            return session.channel_success(channel);
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
        if self.target.is_some() {
            session.channel_success(channel)
        } else {
            session.channel_failure(channel)
        }
    }
}

impl Conn {
    /// Run a control command on the approver as this user.
    fn relay_command(
        &mut self,
        id: ChannelId,
        line: String,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        let (Some((channel, slot)), Some(user)) = (self.channels.remove(&id), self.user.as_ref())
        else {
            return session.channel_failure(id);
        };
        session.channel_success(id)?;
        let gw = self.gw.clone();
        let name = user.name.clone();
        let fingerprint = user.fingerprint.clone();
        tokio::spawn(async move {
            let (mut read, write) = channel.split();
            let code =
                match relay_to_approver(&gw, &name, &fingerprint, &line, &write, &mut read).await {
                    Ok(code) => code,
                    Err(msg) => {
                        let _ = write
                            .extended_data_bytes(1, format!("portcullis: {msg}\n").into_bytes())
                            .await;
                        1
                    }
                };
            let _ = write.exit_status(code).await;
            let _ = write.eof().await;
            let _ = write.close().await;
            drop(slot);
        });
        Ok(())
    }
}

async fn relay_to_approver(
    gw: &Gateway,
    user: &str,
    fingerprint: &str,
    line: &str,
    write: &russh::ChannelWriteHalf<Msg>,
    client: &mut russh::ChannelReadHalf,
) -> Result<u32, String> {
    let words =
        shell_words::split(line).map_err(|e| format!("cannot split the command line: {e}"))?;
    let conn = gw.link().ok_or(
        "the approver is unreachable right now: requests and decisions must wait; grants you already hold still work",
    )?;
    let mut relayed = vec![
        "as".to_string(),
        "--user".into(),
        user.to_string(),
        "--key".into(),
        fingerprint.to_string(),
        "--".into(),
    ];
    relayed.extend(words);
    let mut channel = conn
        .exec(&portcullis_core::command::join_words(&relayed))
        .await
        .map_err(|e| format!("the approver is unreachable right now: {e}"))?;
    loop {
        tokio::select! {
            msg = channel.wait() => match msg {
                Some(ChannelMsg::Data { data }) => {
                    write.data_bytes(data).await.map_err(|e| e.to_string())?;
                }
                Some(ChannelMsg::ExtendedData { data, .. }) => {
                    write.extended_data_bytes(1, data).await.map_err(|e| e.to_string())?;
                }
                Some(ChannelMsg::ExitStatus { exit_status }) => {
                    // Drain what is left, then report the status.
                    while let Some(m) = channel.wait().await {
                        match m {
                            ChannelMsg::Data { data } => { let _ = write.data_bytes(data).await; }
                            ChannelMsg::ExtendedData { data, .. } => { let _ = write.extended_data_bytes(1, data).await; }
                            ChannelMsg::Close => break,
                            _ => {}
                        }
                    }
                    return Ok(exit_status);
                }
                Some(ChannelMsg::Close) | None => return Err("the approver closed the command without a status".into()),
                Some(_) => {}
            },
            m = client.wait() => {
                if matches!(m, None | Some(ChannelMsg::Close)) {
                    // The user went away (e.g. Ctrl-C during `wait`): stop the relayed command.
                    let _ = channel.close().await;
                    return Ok(130);
                }
            }
        }
    }
}

/// Whether `user` still exists and still holds `key` in the current catalog.
pub(crate) fn still_valid(catalog: &portcullis_core::Catalog, user: &str, key: &str) -> bool {
    catalog
        .users
        .get(user)
        .is_some_and(|u| u.keys.iter().any(|k| k == key))
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

/// One direct-tcpip request, checked and then relayed.
struct Forward {
    gw: Arc<Gateway>,
    conn: u64,
    user: String,
    fingerprint: String,
    key: String,
    client: String,
    reach: String,
    host: String,
    port: u32,
    handle: server::Handle,
}

/// Why a forward is refused; a missing grant may only be late.
enum Refusal {
    NoGrant(String),
    Other(String),
}

impl From<String> for Refusal {
    fn from(why: String) -> Self {
        Refusal::Other(why)
    }
}

fn refuse(reason: String) -> ChannelOpenFailure {
    ChannelOpenFailure::Other { code: 1, reason }
}

impl Forward {
    async fn run(self, channel: Channel<Msg>, reply: ChannelOpenHandle) {
        let target = match self.check_allowing_for_replication().await {
            Ok(t) => t,
            Err(why) => {
                tracing::info!(
                    "{} {}: refused {}:{}: {why}",
                    self.client,
                    self.user,
                    self.host,
                    self.port
                );
                reply.reject(refuse(why)).await;
                return;
            }
        };
        let (name, addr, grant) = target;
        let tcp = match tokio::time::timeout(TARGET_CONNECT, TcpStream::connect(&addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                reply
                    .reject(ChannelOpenFailure::Other {
                        code: 2,
                        reason: format!("portcullis: cannot reach {name}: {e}"),
                    })
                    .await;
                return;
            }
            Err(_) => {
                reply
                    .reject(ChannelOpenFailure::Other {
                        code: 2,
                        reason: format!(
                            "portcullis: {name} did not answer within {TARGET_CONNECT:?}"
                        ),
                    })
                    .await;
                return;
            }
        };
        let _ = tcp.set_nodelay(true);
        let gw = &self.gw;
        let session_id = match gw.new_session_id().await {
            Ok(id) => id,
            Err(e) => {
                tracing::error!("cannot number a session: {e}");
                reply.reject(ChannelOpenFailure::ResourceShortage).await;
                return;
            }
        };
        let (cut_tx, cut_rx) = watch::channel(None);
        {
            let mut s = gw.sessions();
            s.live.insert(
                session_id.clone(),
                LiveSession {
                    user: self.user.clone(),
                    key: self.key.clone(),
                    target: name.clone(),
                    grant,
                    conn: self.conn,
                    cut: cut_tx,
                },
            );
        }
        gw.enforce_wake.notify_one();
        let started_at = gw.now();
        let started = std::time::Instant::now();
        // The start is durable in the spool, and normally in the approver's audit log,
        // before the first byte moves.
        let report = SessionReport::Started {
            session: session_id.clone(),
            user: self.user.clone(),
            target: name.clone(),
            grant,
            client: self.client.clone(),
            fingerprint: self.fingerprint.clone(),
            channel: "direct-tcpip".into(),
            at: started_at,
        };
        match spool::submit(gw, &report).await {
            Ok(seq) => spool::await_delivery(gw, seq).await,
            Err(e) => {
                tracing::error!("cannot record session {session_id}: {e}; refusing it");
                {
                    let mut s = gw.sessions();
                    s.end(&session_id);
                }
                reply.reject(ChannelOpenFailure::ResourceShortage).await;
                return;
            }
        }
        let channel_id = channel.id();
        reply.accept().await;
        tracing::info!(
            "session {session_id}: {} → {name} under grant {grant}",
            self.user
        );
        let counters = Arc::new(Counters::default());
        let reason = relay::run(channel, tcp, counters.clone(), cut_rx).await;
        self.cut(&session_id, channel_id, &name, &reason).await;
        self.record_end(&session_id, reason, &counters, started)
            .await;
    }

    /// [`Forward::check`], but a grant the approver issued a moment ago may still be on its way
    /// down the stream: with the link up, give it a short while before refusing.
    async fn check_allowing_for_replication(&self) -> Result<(String, String, u64), String> {
        let mut changes = self.gw.grants_changed.subscribe();
        let deadline = tokio::time::Instant::now() + GRANT_GRACE;
        loop {
            changes.borrow_and_update();
            match self.check() {
                Err(Refusal::NoGrant(why)) if self.gw.link().is_some() => {
                    let arrived = tokio::time::timeout_at(deadline, changes.changed()).await;
                    if !matches!(arrived, Ok(Ok(()))) {
                        return Err(why);
                    }
                }
                Err(Refusal::NoGrant(why) | Refusal::Other(why)) => return Err(why),
                Ok(t) => return Ok(t),
            }
        }
    }

    /// Which target, and under which grant: refused before any connection is made.
    fn check(&self) -> Result<(String, String, u64), Refusal> {
        let gw = &self.gw;
        if let Some(why) = gw.closed_reason() {
            return Err(Refusal::Other(why));
        }
        let catalog = gw.catalog().ok_or_else(|| {
            "portcullis: this gateway has not heard from the approver yet; try again shortly"
                .to_string()
        })?;
        if !still_valid(&catalog, &self.user, &self.key) {
            return Err(Refusal::Other(format!(
                "portcullis: {} or this key is no longer configured",
                self.user
            )));
        }
        let port =
            u16::try_from(self.port).map_err(|_| format!("portcullis: bad port {}", self.port))?;
        let target = match catalog.target_by_name_or_address(&self.host, port) {
            Some(t) => t,
            None => {
                let same_host = catalog.targets.get(&self.host);
                return Err(Refusal::Other(match same_host {
                    Some(t) => format!(
                        "portcullis: {} is reachable on port {} only, not {}",
                        t.name, t.port, self.port
                    ),
                    None => format!(
                        "portcullis: {}:{} is not a configured target - list yours with: {} targets",
                        self.host, self.port, self.reach
                    ),
                }));
            }
        };
        let grant = gw.active_grant(&self.user, &target.name).ok_or_else(|| {
            Refusal::NoGrant(format!(
                "portcullis: no active grant for {} on {} - request one: {} request {} --for 1h --reason \"...\"",
                self.user, target.name, self.reach, target.name
            ))
        })?;
        Ok((target.name.clone(), target.address.clone(), grant.id))
    }

    /// Take the session off the books and, when it was cut, tell the client why: the last
    /// session of a connection takes the connection with it; others close just their channel.
    async fn cut(&self, session_id: &str, channel_id: ChannelId, target: &str, reason: &EndReason) {
        let gw = &self.gw;
        let (grant, others) = {
            let mut s = gw.sessions();
            let grant = s.end(session_id).map(|l| l.grant).unwrap_or(0);
            (grant, s.live.values().any(|l| l.conn == self.conn))
        };
        if *reason == EndReason::Closed || others {
            let _ = self.handle.close(channel_id).await;
            return;
        }
        let why = match reason {
            EndReason::Killed => format!("portcullis: session {session_id} was ended by an admin"),
            EndReason::FailedClosed => gw.closed_reason().unwrap_or_else(|| {
                "portcullis: the approver is unreachable and this gateway fails closed".into()
            }),
            EndReason::Deprovisioned => format!(
                "portcullis: {} or this key was removed from the configuration; session {session_id} ended",
                self.user
            ),
            _ => format!(
                "portcullis: grant {grant} for {} on {target} {} - request more: {} request {target} --for 1h --reason \"...\"",
                self.user,
                reason.as_str(),
                self.reach
            ),
        };
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, why, "en".into())
            .await;
    }

    async fn record_end(
        &self,
        session_id: &str,
        reason: EndReason,
        counters: &Counters,
        started: std::time::Instant,
    ) {
        let gw = &self.gw;
        let report = SessionReport::Ended {
            session: session_id.to_string(),
            bytes_in: counters
                .to_target
                .load(std::sync::atomic::Ordering::Relaxed),
            bytes_out: counters
                .to_client
                .load(std::sync::atomic::Ordering::Relaxed),
            duration: started.elapsed(),
            reason: reason.as_str().to_string(),
            exit_status: None,
            at: gw.now(),
            recording: None,
        };
        if let Err(e) = spool::submit(gw, &report).await {
            tracing::error!("cannot record the end of session {session_id}: {e}");
        }
        tracing::info!("session {session_id}: ended ({})", reason.as_str());
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
