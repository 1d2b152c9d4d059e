//! The control port: a russh server that authenticates configured users and gateways by public
//! key and runs one control command per exec channel.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use portcullis_core::catalog::Principal;
use portcullis_core::keys;
use portcullis_core::stream::Frame;
use russh::server::{
    self, Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey,
};
use russh::{Channel, ChannelId, ChannelMsg};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::app::Approver;
use crate::commands::{self, Caller, Outcome, Reply};
use crate::errors::ApproverError;
use crate::scheduler;
use crate::sessions;

/// How often an idle `watch` stream says it is alive.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// Changes sent per store read on a `watch` stream.
const WATCH_BATCH: usize = 256;

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

/// As [`serve`], until `stop` resolves (the binary passes SIGTERM or SIGINT); then stop
/// gracefully: no new connections, the write in flight (if any) finishes and no other starts,
/// counted refusals are written, and connections are closed with the reason.
pub async fn serve_until(
    app: Arc<Approver>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), ApproverError> {
    let conns = portcullis_ssh::server::Connections::new();
    tokio::select! {
        served = accept(app.clone(), conns.clone()) => served,
        () = stop => {
            // The listener went with the accept loop. Counted refusals are written while
            // writes are still allowed; then the writer is taken and kept, so the write in
            // flight finishes and none starts: every acknowledgement given stays true.
            app.record_counted_refusals().await;
            let _writer = app.stop_writing().await;
            let open = conns.close_all("portcullis: approver stopping", CONNECTIONS_WAIT).await;
            if open > 0 {
                tracing::warn!("{open} connections still open after {CONNECTIONS_WAIT:?}");
            }
            tracing::info!("approver stopped");
            Ok(())
        }
    }
}

async fn accept(
    app: Arc<Approver>,
    conns: Arc<portcullis_ssh::server::Connections>,
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
            places: Arc::new(Semaphore::new(0)),
            refused: None,
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
    /// The places of this connection: taken when a channel opens, given back when its command
    /// ends (or it closes without one).
    places: Arc<Semaphore>,
    /// Why its last attempt to log in was refused, counted if it never logs in.
    refused: Option<&'static str>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        // A login refused is a connection that tried and never got in, counted once.
        if let (None, Some(reason)) = (&self.caller, self.refused) {
            self.app.metrics.login_refused(reason);
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
        if !catalog.users.contains_key(login) && !catalog.gateways.contains_key(login) {
            "unknown_user"
        } else if catalog.users.values().any(|u| u.keys.contains(&norm))
            || catalog.gateways.values().any(|g| g.key == norm)
        {
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
        Ok(match self.identify(user, offer.public_key) {
            Some(_) => Auth::Accept,
            None => {
                self.refused = Some(self.why_unknown(user, offer.public_key));
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
        match self.identify(user, key.public_key) {
            Some(principal) => {
                let fingerprint = keys::fingerprint(key.public_key);
                if let Err(why) = self.admit(&principal) {
                    self.refused = Some(why.reason());
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
                tracing::info!("{}: key refused for {user:?}", self.peer);
                self.refused = Some(self.why_unknown(user, key.public_key));
                Ok(Auth::reject())
            }
        }
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
        // Accepted so that `ssh -t` works; output is the same either way.
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
        self.start(channel, "--help".to_string(), session)
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
        let app = self.app.clone();
        let peer = self.peer.clone();
        let busy = self.state.busy();
        tokio::spawn(async move {
            tracing::debug!("{peer} {:?}: {line}", caller.principal);
            run_channel(app, caller, line, channel).await;
            drop((place, busy));
        });
        Ok(())
    }
}

/// The most one `report` command may carry in reports (a recording aside, which goes to disk
/// as it arrives): a batch of 64 reports of a few hundred bytes each is far below it.
const MAX_REPORTS: usize = 16 * 1024 * 1024;

/// How much of an arriving recording is gathered before one write to disk.
const RECORDING_WRITE: usize = 1024 * 1024;

async fn run_channel(app: Arc<Approver>, caller: Caller, line: String, channel: Channel<Msg>) {
    let (mut read, write) = channel.split();
    // The acting user's place among their running commands, held until this one ends.
    let _running = match commands::acting_user(&caller, &line).map(|u| app.running.start(&u)) {
        Some(Err(e)) => return send_reply(&write, commands::error_reply(&e, false)).await,
        Some(Ok(place)) => Some(place),
        None => None,
    };
    let reply = match commands::execute(&app, &caller, &line).await {
        Outcome::Done(reply) => reply,
        Outcome::Report { seq, instance } => {
            receive_report(&app, &caller, seq, &instance, &mut read).await
        }
        Outcome::Export { path, raw, session } => {
            tokio::select! {
                r = export(&path, raw, &session, &write) => match r {
                    Ok(()) => Reply::default(),
                    Err(e) => commands::error_reply(&e, false),
                },
                _ = client_gone(&mut read) => return,
            }
        }
        Outcome::Replay {
            path,
            raw,
            session,
            speed,
            idle,
        } => {
            let replay = portcullis_audit::Replay::new(speed, idle);
            tokio::select! {
                r = replay_file(&path, raw, &session, replay, &write) => match r {
                    Ok(()) => Reply::default(),
                    Err(e) => commands::error_reply(&e, false),
                },
                _ = client_gone(&mut read) => return,
            }
        }
        Outcome::Wait { id, json } => tokio::select! {
            r = commands::wait(&app, id, json) => r,
            _ = client_gone(&mut read) => return,
        },
        Outcome::Watch(from) => {
            tokio::select! {
                r = stream(&app, from, &write) => {
                    if let Err(e) = r {
                        let _ = write
                            .extended_data_bytes(1, format!("portcullis: watch ended: {e}\n").into_bytes())
                            .await;
                        let _ = write.exit_status(1).await;
                    }
                }
                _ = client_gone(&mut read) => {}
            }
            let _ = write.eof().await;
            let _ = write.close().await;
            return;
        }
    };
    send_reply(&write, reply).await;
}

/// A stored recording opened to be read in pieces of [`RECORDING_WRITE`], with the converter
/// a raw data stream goes through on its way to asciicast.
async fn open_recording(
    path: &std::path::Path,
    raw: bool,
    session: &str,
) -> Result<
    (
        tokio::io::BufReader<tokio::fs::File>,
        Option<portcullis_audit::RawCast>,
    ),
    ApproverError,
> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| unreadable(session, e))?;
    Ok((
        tokio::io::BufReader::with_capacity(RECORDING_WRITE, file),
        raw.then(|| portcullis_audit::RawCast::new(session)),
    ))
}

fn unreadable(session: &str, e: std::io::Error) -> ApproverError {
    ApproverError::Config(format!("recording of {session}: {e}"))
}

/// The longest line `audit replay` reads from a cast; a longer one means the file is damaged
/// (the recorder writes a line per read of the target's output).
const MAX_CAST_LINE: u64 = 16 * 1024 * 1024;

/// Play a recording's output events with their timing, reading it in pieces (a raw data stream
/// converted as it is read). Lines that are not output events are skipped, as a damaged
/// recording replays what it can; `audit verify` is what judges it.
async fn replay_file(
    path: &std::path::Path,
    raw: bool,
    session: &str,
    mut replay: portcullis_audit::Replay,
    write: &russh::ChannelWriteHalf<Msg>,
) -> Result<(), ApproverError> {
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _};
    let unreadable = |e| unreadable(session, e);
    let (mut file, mut cast) = open_recording(path, raw, session).await?;
    let mut header = true;
    let mut due = tokio::time::Instant::now();
    let (mut line, mut text) = (Vec::new(), String::new());
    loop {
        // The next lines: one from a cast, or all those a piece of a data stream completes.
        text.clear();
        match cast.as_mut() {
            Some(c) => {
                let piece = file.fill_buf().await.map_err(unreadable)?;
                if piece.is_empty() {
                    return Ok(());
                }
                let n = piece.len();
                if c.push(piece, &mut text).is_err() {
                    return Ok(());
                }
                file.consume(n);
            }
            None => {
                line.clear();
                let n = (&mut file)
                    .take(MAX_CAST_LINE)
                    .read_until(b'\n', &mut line)
                    .await
                    .map_err(unreadable)?;
                if n == 0 {
                    return Ok(());
                }
                if n as u64 == MAX_CAST_LINE && line.last() != Some(&b'\n') {
                    return Err(ApproverError::Conflict(format!(
                        "recording of {session}: a line over {MAX_CAST_LINE} bytes"
                    )));
                }
                text.push_str(&String::from_utf8_lossy(&line));
            }
        }
        for l in text.lines() {
            if std::mem::take(&mut header) {
                continue;
            }
            if let Some((pause, out)) = replay.event(l) {
                // Against a running schedule, not pause by pause: the timer's millisecond
                // would otherwise round every short pause up and the replay fall behind.
                due += pause;
                if due > tokio::time::Instant::now() {
                    tokio::time::sleep_until(due).await;
                }
                if write.data_bytes(out.into_bytes()).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
}

/// Send a recording as asciicast in pieces of a megabyte read off the async workers (a raw
/// data stream converted as it is read), so that exporting a recording of any size costs the
/// approver a few megabytes. An error (the file unreadable, a data stream cut short) ends it
/// with a failure after what was sent.
async fn export(
    path: &std::path::Path,
    raw: bool,
    session: &str,
    write: &russh::ChannelWriteHalf<Msg>,
) -> Result<(), ApproverError> {
    let unreadable = |e| unreadable(session, e);
    let (mut file, mut cast) = open_recording(path, raw, session).await?;
    let damaged = |e: String| ApproverError::Conflict(format!("recording of {session}: {e}"));
    loop {
        let piece = tokio::io::AsyncBufReadExt::fill_buf(&mut file)
            .await
            .map_err(unreadable)?;
        if piece.is_empty() {
            break;
        }
        let n = piece.len();
        let out = match cast.as_mut() {
            Some(c) => {
                let mut text = String::new();
                c.push(piece, &mut text).map_err(damaged)?;
                text.into_bytes()
            }
            None => piece.to_vec(),
        };
        tokio::io::AsyncBufReadExt::consume(&mut file, n);
        if write.data_bytes(out).await.is_err() {
            return Ok(());
        }
    }
    match cast {
        Some(c) => c.finish().map_err(damaged),
        None => Ok(()),
    }
}

/// Read a `report` command's stdin: the reports whole, and a recording announced by the first
/// report straight to disk as it arrives (hashed on the way), so that a recording of any size
/// costs the approver a megabyte of memory, not its size.
async fn receive_report(
    app: &Arc<Approver>,
    caller: &Caller,
    seq: u64,
    instance: &str,
    read: &mut russh::ChannelReadHalf,
) -> Reply {
    let fail = |e: ApproverError| commands::error_reply(&e, false);
    // Only a gateway reports: anyone else is refused before anything is written.
    if !matches!(caller.principal, Principal::Gateway(_)) {
        return commands::report(app, caller, instance, seq, &[], None).await;
    }
    let mut head = Vec::new();
    // The recording on its way in, the bytes not yet written, and the size it was announced
    // with: nothing past that is taken.
    let mut recording: Option<(portcullis_store::Incoming, Vec<u8>, u64)> = None;
    // Decided once the first report is whole: only reports follow.
    let mut reports_only = false;
    let mut complete = false;
    while let Some(msg) = read.wait().await {
        match msg {
            ChannelMsg::Data { data } => {
                if let Some((incoming, pending, announced)) = recording.take() {
                    let mut pending = pending;
                    if incoming.size() + (pending.len() + data.len()) as u64 > announced {
                        return fail(ApproverError::BadInput(format!(
                            "report {seq}: the recording runs past the {announced} bytes announced"
                        )));
                    }
                    pending.extend_from_slice(&data);
                    recording = Some(if pending.len() >= RECORDING_WRITE {
                        match write_recording(incoming, pending).await {
                            Ok((incoming, pending)) => (incoming, pending, announced),
                            Err(e) => return fail(e),
                        }
                    } else {
                        (incoming, pending, announced)
                    });
                    continue;
                }
                if head.len() + data.len() > MAX_REPORTS {
                    return fail(ApproverError::BadInput(format!(
                        "report {seq}: over {MAX_REPORTS} bytes of reports"
                    )));
                }
                head.extend_from_slice(&data);
                if reports_only {
                    continue;
                }
                match sessions::head(&head) {
                    Err(e) => return fail(e),
                    Ok(sessions::Head::Recording {
                        end,
                        session,
                        format,
                        size,
                    }) => {
                        if (head.len() - end) as u64 > size {
                            return fail(ApproverError::BadInput(format!(
                                "report {seq}: the recording runs past the {size} bytes announced"
                            )));
                        }
                        match app.recordings.receive(&session, &format) {
                            Ok(incoming) => {
                                let pending = head.split_off(end);
                                recording = Some((incoming, pending, size));
                            }
                            Err(e) => return fail(ApproverError::Recording(e)),
                        }
                    }
                    Ok(sessions::Head::Reports) => reports_only = true,
                    Ok(sessions::Head::Incomplete) => {}
                }
            }
            ChannelMsg::Eof => {
                complete = true;
                break;
            }
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    if !complete {
        // The partial recording, if any, is dropped with its temporary file.
        return fail(ApproverError::BadInput(format!(
            "report {seq} incomplete: the gateway closed the stream before finishing it"
        )));
    }
    let recording = match recording {
        Some((incoming, pending, _)) => match write_recording(incoming, pending).await {
            Ok((incoming, _)) => Some(incoming),
            Err(e) => return fail(e),
        },
        None => None,
    };
    commands::report(app, caller, instance, seq, &head, recording).await
}

/// Write `pending` to an arriving recording, off the async workers; the buffer comes back
/// empty for reuse.
async fn write_recording(
    mut incoming: portcullis_store::Incoming,
    mut pending: Vec<u8>,
) -> Result<(portcullis_store::Incoming, Vec<u8>), ApproverError> {
    tokio::task::spawn_blocking(move || {
        incoming.write(&pending)?;
        pending.clear();
        Ok((incoming, pending))
    })
    .await
    .map_err(|e| ApproverError::Config(format!("writing a recording: {e}")))?
    .map_err(ApproverError::Recording)
}

/// Resolves when the client goes away, so that blocking commands stop with it.
async fn client_gone(read: &mut russh::ChannelReadHalf) {
    while let Some(msg) = read.wait().await {
        if matches!(msg, ChannelMsg::Close) {
            break;
        }
    }
}

async fn send_reply(write: &russh::ChannelWriteHalf<Msg>, reply: Reply) {
    if !reply.out.is_empty() {
        let _ = write.data_bytes(reply.out.into_bytes()).await;
    }
    if !reply.err.is_empty() {
        let _ = write.extended_data_bytes(1, reply.err.into_bytes()).await;
    }
    let _ = write.exit_status(reply.code).await;
    let _ = write.eof().await;
    let _ = write.close().await;
}

/// Whether the change this store holds at `rev` is the one a gateway says it applied there
/// (`after`, hex SHA-256). Revision 0 is everyone's starting point; a gateway that shows no
/// digest cannot be vouched for (the caller then sends a snapshot).
fn same_change_at(app: &Approver, rev: u64, after: &Option<String>) -> Result<bool, ApproverError> {
    if rev == 0 {
        return Ok(true);
    }
    let Some(after) = after else { return Ok(true) };
    let ours = app.store.changes_after(rev - 1, 1)?;
    Ok(matches!(ours.first(), Some((r, c)) if *r == rev && hex::encode(c.digest()) == *after))
}

/// Send every change after `since`, then each new one as it is committed, with heartbeats
/// while idle. Never buffers more than one batch: the channel's window paces the store reads.
/// A gateway that asks (`--epoch`) first gets a signed hello with the store's identity, and a
/// snapshot of the whole state instead of the changes it missed if its history is not this
/// store's.
async fn stream(
    app: &Approver,
    from: commands::WatchFrom,
    write: &russh::ChannelWriteHalf<Msg>,
) -> Result<(), ApproverError> {
    let mut changes = app.subscribe();
    changes.borrow_and_update();
    let newest = app.store.last_rev()?;
    let send = |frame: Frame| async move {
        write
            .data_bytes(frame.to_wire())
            .await
            .map_err(|e| ApproverError::Conflict(format!("gateway went away: {e}")))
    };
    let mut last = from.since;
    match from.epoch {
        // A gateway from before store identities: it resumes, or is refused if it is ahead.
        None if from.since > newest => {
            return Err(ApproverError::Conflict(format!(
                "revision {} is ahead of this approver's newest ({newest}): the replica belongs to another approver's store; start it afresh",
                from.since
            )))
        }
        None => {}
        Some(theirs) => {
            // Its history must be this store's: not past our newest, and the same change at
            // the revision it stopped at. Otherwise this store was restored or replaced.
            let diverged = from.since > newest || !same_change_at(app, from.since, &from.after)?;
            let epoch = if diverged {
                app.history_diverged(&from.gateway, from.since, from.max_grant)
                    .await?
            } else {
                app.epoch()?
            };
            let hello = portcullis_core::stream::Hello {
                epoch,
                newest,
                at: app.now(),
            };
            send(hello.seal(&app.keys.signing())).await?;
            // A replica of another store, or one that cannot show its history, starts over
            // from the whole state; a fresh one (revision 0) simply takes every change.
            let vouched = theirs == epoch && (from.since == 0 || from.after.is_some());
            if diverged || !vouched {
                send(Frame::Change(app.snapshot(newest, epoch)?)).await?;
                last = newest;
            }
        }
    }
    loop {
        changes.borrow_and_update();
        let batch = app.store.changes_after(last, WATCH_BATCH)?;
        let full = batch.len() == WATCH_BATCH;
        for (rev, change) in batch {
            write
                .data_bytes(Frame::Change(change).to_wire())
                .await
                .map_err(|e| ApproverError::Conflict(format!("gateway went away: {e}")))?;
            last = rev;
        }
        if full {
            continue;
        }
        tokio::select! {
            r = changes.changed() => {
                if r.is_err() { return Ok(()); }
            }
            _ = tokio::time::sleep(HEARTBEAT) => {
                let beat = Frame::Heartbeat { rev: last, at: app.now() };
                write
                    .data_bytes(beat.to_wire())
                    .await
                    .map_err(|e| ApproverError::Conflict(format!("gateway went away: {e}")))?;
            }
        }
    }
}
