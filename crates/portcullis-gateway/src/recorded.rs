//! Recorded sessions: `ssh -p 2222 alice:web-1@bastion [command]`. The gateway logs into the
//! target itself (its client key, the target's login, the pinned host key), relays the session
//! (pty, env, shell, exec, subsystem, window changes, signals, data both ways, EOF, exit
//! status), records pty sessions as asciicast v2, warns before the grant ends, and cuts at the
//! end with the reason on screen.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_core::catalog::{Target, TargetKind};
use portcullis_core::model::SessionReport;
use portcullis_core::time::format_duration;
use portcullis_ssh::{ConnectOptions, Connection, HostKeyPolicy, Identity, SshError};
use russh::server::{self, Msg};
use russh::{Channel, ChannelMsg};
use tokio::sync::watch;

use crate::recording::{Header, RawRecorder, Recorder};
use crate::spool;
use crate::state::{EndReason, Gateway, LiveSession};

/// How early the expiry warning may fire against the wall clock it is computed from.
const WARNING_SLACK: Duration = Duration::from_millis(20);

/// What the client asked the session to run.
enum Request {
    Shell,
    Exec(String),
    Subsystem(String),
}

impl Request {
    fn describe(&self, pty: bool) -> String {
        match self {
            Request::Shell => format!("shell{}", if pty { " (pty)" } else { "" }),
            Request::Exec(c) => format!("exec{}: {c}", if pty { " (pty)" } else { "" }),
            Request::Subsystem(n) => format!("subsystem: {n}"),
        }
    }
}

struct Pty {
    term: String,
    cols: u32,
    rows: u32,
}

pub(crate) struct Recorded {
    pub gw: Arc<Gateway>,
    pub conn: u64,
    pub user: String,
    /// The key the user logged in with, normalised.
    pub key: String,
    pub fingerprint: String,
    pub client: String,
    pub reach: String,
    pub target: Target,
    pub grant: u64,
    /// Keep the raw data of a channel without a pty (`record_data = true`).
    pub record_data: bool,
    pub handle: server::Handle,
}

/// Check a recorded session may open: the target is an ssh target and the user holds a grant.
pub(crate) fn check(
    gw: &Gateway,
    user: &str,
    key: &str,
    target: &str,
    reach: &str,
) -> Result<(Target, u64, bool), String> {
    if let Some(why) = gw.closed_reason() {
        return Err(why);
    }
    let catalog = gw
        .catalog()
        .ok_or("portcullis: this gateway has not heard from the approver yet; try again shortly")?;
    if !crate::server::still_valid(&catalog, user, key) {
        return Err(format!(
            "portcullis: {user} or this key is no longer configured"
        ));
    }
    let t = catalog.targets.get(target).ok_or_else(|| {
        format!(
            "portcullis: {target:?} is not a configured target - list yours with: {reach} targets"
        )
    })?;
    if t.kind != TargetKind::Ssh {
        return Err(format!(
            "portcullis: {target} is a forwarding-only target: use ssh -L through the gateway"
        ));
    }
    let g = gw.active_grant(user, target).ok_or_else(|| {
        format!(
            "portcullis: no active grant for {user} on {target} - request one: {reach} request {target} --for 1h --reason \"...\""
        )
    })?;
    // The data of channels without a pty is kept where the target or the grant's policy asks.
    let record_data = t.record_data || catalog.policy(&g.policy).is_some_and(|p| p.record_data);
    Ok((t.clone(), g.id, record_data))
}

impl Recorded {
    pub async fn run(self, channel: Channel<Msg>) {
        let (mut client, cw) = channel.split();
        let gw = self.gw.clone();
        let fail = |msg: String| fail(&cw, msg);

        // The gateway's own login to the target, host key pinned.
        let host_key = match self
            .target
            .host_key
            .as_deref()
            .map(portcullis_core::keys::parse_public_key)
        {
            Some(Ok(k)) => k,
            _ => {
                return fail(format!(
                    "portcullis: {} has no usable pinned host key",
                    self.target.name
                ))
                .await
            }
        };
        let options = ConnectOptions {
            addr: self.target.address.clone(),
            user: self.target.login.clone().unwrap_or_default(),
            identity: Identity::Key(gw.client_key.clone()),
            host_key: HostKeyPolicy::Pinned(host_key),
            connect_timeout: Duration::from_secs(10),
        };
        let session_id = match gw.new_session_id().await {
            Ok(id) => id,
            Err(e) => return fail(format!("portcullis: cannot record a session here: {e}")).await,
        };
        let tconn = match Connection::connect(&options).await {
            Ok(c) => c,
            Err(SshError::HostKey(why)) => {
                tracing::error!("session {session_id}: {why}");
                let _ = spool::submit(
                    &gw,
                    &SessionReport::HostKeyMismatch {
                        session: session_id.clone(),
                        user: self.user.clone(),
                        target: self.target.name.clone(),
                        presented: why.clone(),
                        at: gw.now(),
                    },
                )
                .await;
                return fail(format!(
                    "portcullis: refusing {}: its host key does not match the pinned key (reported to the audit log)",
                    self.target.name
                ))
                .await;
            }
            Err(e) => {
                return fail(format!(
                    "portcullis: cannot reach {}: {e}",
                    self.target.name
                ))
                .await
            }
        };
        let tch = match tconn.open_session().await {
            Ok(c) => c,
            Err(e) => {
                return fail(format!(
                    "portcullis: {} refused a session: {e}",
                    self.target.name
                ))
                .await
            }
        };
        let (mut target, tw) = tch.split();

        // Everything up to the request that starts the session: pty and environment.
        let mut pty: Option<Pty> = None;
        let request = loop {
            match client.wait().await {
                Some(ChannelMsg::RequestPty {
                    term,
                    col_width,
                    row_height,
                    pix_width,
                    pix_height,
                    terminal_modes,
                    ..
                }) => {
                    let _ = tw
                        .request_pty(
                            false,
                            &term,
                            col_width,
                            row_height,
                            pix_width,
                            pix_height,
                            &terminal_modes,
                        )
                        .await;
                    pty = Some(Pty {
                        term,
                        cols: col_width,
                        rows: row_height,
                    });
                }
                Some(ChannelMsg::SetEnv {
                    variable_name,
                    variable_value,
                    ..
                }) => {
                    let _ = tw.set_env(false, variable_name, variable_value).await;
                }
                Some(ChannelMsg::WindowChange {
                    col_width,
                    row_height,
                    pix_width,
                    pix_height,
                }) => {
                    let _ = tw
                        .window_change(col_width, row_height, pix_width, pix_height)
                        .await;
                    if let Some(p) = pty.as_mut() {
                        p.cols = col_width;
                        p.rows = row_height;
                    }
                }
                Some(ChannelMsg::RequestShell { .. }) => break Request::Shell,
                Some(ChannelMsg::Exec { command, .. }) => {
                    break Request::Exec(String::from_utf8_lossy(&command).into_owned())
                }
                Some(ChannelMsg::RequestSubsystem { name, .. }) => break Request::Subsystem(name),
                Some(ChannelMsg::Close) | None => return,
                Some(_) => {}
            }
        };

        // On the books, bound to the grant, and in the audit log before the first byte.
        let (cut_tx, mut cut) = watch::channel(None);
        {
            let mut s = gw.sessions();
            s.live.insert(
                session_id.clone(),
                LiveSession {
                    user: self.user.clone(),
                    key: self.key.clone(),
                    target: self.target.name.clone(),
                    grant: self.grant,
                    conn: self.conn,
                    cut: cut_tx,
                },
            );
        }
        gw.enforce_wake.notify_one();
        let what = request.describe(pty.is_some());
        let started = Instant::now();
        let start = SessionReport::Started {
            session: session_id.clone(),
            user: self.user.clone(),
            target: self.target.name.clone(),
            grant: self.grant,
            client: self.client.clone(),
            fingerprint: self.fingerprint.clone(),
            channel: what.clone(),
            at: gw.now(),
        };
        match spool::submit(&gw, &start).await {
            Ok(seq) => spool::await_delivery(&gw, seq).await,
            Err(e) => {
                self.off_books(&session_id);
                return fail(format!(
                    "portcullis: cannot record this session ({e}); refused"
                ))
                .await;
            }
        }
        // A pty session is recorded as asciicast; without a pty, the raw stream where the
        // target asks for it. Either failing to start refuses the session.
        let recorders = pty
            .as_ref()
            .map(|p| {
                Recorder::create(
                    &gw.recordings_dir(),
                    &session_id,
                    Header {
                        width: p.cols,
                        height: p.rows,
                        timestamp: gw.now().secs(),
                        term: &p.term,
                        title: &format!("{} on {} ({what})", self.user, self.target.name),
                    },
                    gw.settings.record_input,
                )
            })
            .transpose()
            .and_then(|recorder| {
                let raw = (pty.is_none() && self.record_data)
                    .then(|| RawRecorder::create(&gw.recordings_dir(), &session_id))
                    .transpose()?;
                Ok((recorder, raw))
            });
        let (mut recorder, mut raw) = match recorders {
            Ok(r) => r,
            Err(e) => {
                self.off_books(&session_id);
                self.record_end(&session_id, "recording failed", 0, 0, started, None, None)
                    .await;
                return fail(format!(
                    "portcullis: cannot record this session ({e}); refused"
                ))
                .await;
            }
        };
        let sent = match &request {
            Request::Shell => tw.request_shell(false).await,
            Request::Exec(c) => tw.exec(false, c.as_bytes()).await,
            Request::Subsystem(n) => tw.request_subsystem(false, n).await,
        };
        if let Err(e) = sent {
            tracing::warn!("session {session_id}: target refused the request: {e}");
        }

        let bytes_in = AtomicU64::new(0);
        let bytes_out = AtomicU64::new(0);
        let mut exit_status = None;
        // The per-second tick flushes the recording and re-reads the grant the session rests
        // on (a switch to another grant moves the warning). Nothing below runs per message
        // but the relay itself: no table lock, no clock read, no timer to arm.
        let mut flush = tokio::time::interval(Duration::from_secs(1));
        let mut warned_for: Option<u64> = None;
        let mut warn_armed = false;
        let warning = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(warning);
        let cut_signal = async {
            cut.wait_for(|c| c.is_some())
                .await
                .ok()
                .and_then(|c| c.clone())
        };
        tokio::pin!(cut_signal);
        let mut reason = EndReason::Closed;
        let mut recording_failed = None;
        let mut client_open = true;
        loop {
            tokio::select! {
                m = client.wait(), if client_open => match m {
                    Some(ChannelMsg::Data { data }) => {
                        bytes_in.fetch_add(data.len() as u64, Ordering::Relaxed);
                        if let Some(r) = recorder.as_mut() {
                            if let Err(e) = r.input(&data) { recording_failed = Some(e); break; }
                        }
                        if let Some(r) = raw.as_mut() {
                            if let Err(e) = r.chunk(0, &data) { recording_failed = Some(e); break; }
                        }
                        if tw.data_bytes(data).await.is_err() { break; }
                    }
                    Some(ChannelMsg::Eof) => { let _ = tw.eof().await; }
                    Some(ChannelMsg::WindowChange { col_width, row_height, pix_width, pix_height }) => {
                        let _ = tw.window_change(col_width, row_height, pix_width, pix_height).await;
                        if let Some(r) = recorder.as_mut() {
                            if let Err(e) = r.resize(col_width, row_height) { recording_failed = Some(e); break; }
                        }
                    }
                    Some(ChannelMsg::Signal { signal }) => { let _ = tw.signal(signal).await; }
                    Some(ChannelMsg::Close) | None => { client_open = false; let _ = tw.close().await; }
                    Some(_) => {}
                },
                m = target.wait() => match m {
                    Some(ChannelMsg::Data { data }) => {
                        bytes_out.fetch_add(data.len() as u64, Ordering::Relaxed);
                        if let Some(r) = recorder.as_mut() {
                            if let Err(e) = r.output(&data) { recording_failed = Some(e); break; }
                        }
                        if let Some(r) = raw.as_mut() {
                            if let Err(e) = r.chunk(1, &data) { recording_failed = Some(e); break; }
                        }
                        if cw.data_bytes(data).await.is_err() { break; }
                    }
                    Some(ChannelMsg::ExtendedData { data, ext }) => {
                        bytes_out.fetch_add(data.len() as u64, Ordering::Relaxed);
                        if let Some(r) = recorder.as_mut() {
                            if let Err(e) = r.output(&data) { recording_failed = Some(e); break; }
                        }
                        if let Some(r) = raw.as_mut() {
                            if let Err(e) = r.chunk(2, &data) { recording_failed = Some(e); break; }
                        }
                        if cw.extended_data_bytes(ext, data).await.is_err() { break; }
                    }
                    Some(ChannelMsg::Eof) => { let _ = cw.eof().await; }
                    Some(ChannelMsg::ExitStatus { exit_status: s }) => {
                        exit_status = Some(s);
                        let _ = cw.exit_status(s).await;
                    }
                    Some(ChannelMsg::ExitSignal { signal_name, core_dumped, error_message, lang_tag }) => {
                        let _ = self.handle
                            .exit_signal_request(cw.id(), signal_name, core_dumped, error_message, lang_tag)
                            .await;
                    }
                    Some(ChannelMsg::Close) | None => break,
                    Some(_) => {}
                },
                r = &mut cut_signal => {
                    reason = r.unwrap_or(EndReason::Closed);
                    break;
                }
                _ = flush.tick() => {
                    if let Some(r) = recorder.as_mut() {
                        if let Err(e) = r.flush() { recording_failed = Some(e); break; }
                    }
                    if let Some(r) = raw.as_mut() {
                        if let Err(e) = r.flush() { recording_failed = Some(e); break; }
                    }
                    // The first tick comes at once, so the warning is armed from the start.
                    let due = self.warning_due(&session_id, warned_for);
                    warn_armed = due.is_some();
                    if let Some(d) = due {
                        warning.as_mut().reset(tokio::time::Instant::now() + d);
                    }
                }
                () = &mut warning, if warn_armed => {
                    // The session may have moved to a longer grant since the tick that armed
                    // this: warn only when the warning is due now, else wait for it.
                    match self.warning_due(&session_id, warned_for) {
                        Some(d) if d > WARNING_SLACK => {
                            warning.as_mut().reset(tokio::time::Instant::now() + d);
                            continue;
                        }
                        Some(_) => {}
                        None => {
                            warn_armed = false;
                            continue;
                        }
                    }
                    warn_armed = false;
                    if let Some((grant, left)) = self.grant_left(&session_id) {
                        warned_for = Some(grant);
                        if pty.is_some() {
                            let note = format!(
                                "\r\nportcullis: grant on {t} ends in {left} - request more: {reach} request {t} --for 1h --reason \"...\"\r\n",
                                t = self.target.name,
                                left = format_duration(left),
                                reach = self.reach,
                            );
                            let _ = cw.data_bytes(note.into_bytes()).await;
                        }
                    }
                }
            }
        }

        if let Some(e) = &recording_failed {
            tracing::error!("session {session_id}: recording failed ({e}); ending it");
            reason = EndReason::Closed;
        }
        let grant = self.off_books(&session_id);
        let why = match (&recording_failed, &reason) {
            (Some(e), _) => Some(format!("portcullis: the recording of this session failed ({e}); ending it")),
            (None, EndReason::Closed) => None,
            (None, EndReason::Killed) => Some(format!("portcullis: session {session_id} was ended by an admin")),
            (None, EndReason::FailedClosed) => gw.closed_reason(),
            (None, EndReason::Deprovisioned) => Some(format!(
                "portcullis: {} or this key was removed from the configuration; session {session_id} ended",
                self.user
            )),
            (None, r) => Some(format!(
                "portcullis: grant {grant} for {} on {} {} - request more: {} request {} --for 1h --reason \"...\"",
                self.user,
                self.target.name,
                r.as_str(),
                self.reach,
                self.target.name
            )),
        };
        if let Some(why) = &why {
            // The reason on the user's screen, then the channel goes.
            let line = format!("\r\n{why}\r\n").into_bytes();
            if pty.is_some() {
                let _ = cw.data_bytes(line).await;
            } else {
                let _ = cw.extended_data_bytes(1, line).await;
            }
            if let Some(r) = recorder.as_mut() {
                let _ = r.output(format!("\r\n{why}\r\n").as_bytes());
            }
            let _ = cw.exit_status(255).await;
        }
        let _ = cw.eof().await;
        let _ = cw.close().await;
        let _ = tw.close().await;
        tconn.close().await;
        let others = gw.sessions().live.values().any(|l| l.conn == self.conn);
        if why.is_some() && !others {
            let _ = self
                .handle
                .disconnect(
                    russh::Disconnect::ByApplication,
                    why.clone().unwrap_or_default(),
                    "en".into(),
                )
                .await;
        }
        let finished = match (recorder, raw) {
            (Some(r), _) => Some(("cast", r.finish())),
            (None, Some(r)) => Some(("data", r.finish())),
            (None, None) => None,
        };
        let recording = match finished {
            Some((format, Ok((size, sha)))) => {
                let _ = spool::submit(
                    &gw,
                    &SessionReport::Recorded {
                        session: session_id.clone(),
                        sha256: sha.clone(),
                        size,
                        format: format.to_string(),
                    },
                )
                .await;
                Some((sha, size))
            }
            Some((_, Err(e))) => {
                tracing::error!("session {session_id}: cannot close the recording: {e}");
                None
            }
            None => None,
        };
        let end_reason = if recording_failed.is_some() {
            "recording failed"
        } else {
            reason.as_str()
        };
        self.record_end(
            &session_id,
            end_reason,
            bytes_in.load(Ordering::Relaxed),
            bytes_out.load(Ordering::Relaxed),
            started,
            exit_status,
            recording,
        )
        .await;
    }

    /// Remove the session from the live table; returns the grant it ended under.
    fn off_books(&self, session_id: &str) -> u64 {
        self.gw
            .sessions()
            .end(session_id)
            .map(|l| l.grant)
            .unwrap_or(self.grant)
    }

    /// The grant the session rests on now and the time it has left.
    fn grant_left(&self, session_id: &str) -> Option<(u64, Duration)> {
        let id = self.gw.sessions().live.get(session_id)?.grant;
        let g = self.gw.grant(&self.user, id)?;
        Some((id, self.gw.now().until(g.ends_at())))
    }

    /// How long until the expiry warning for the current grant is due (`None`: not needed).
    fn warning_due(&self, session_id: &str, warned_for: Option<u64>) -> Option<Duration> {
        let (grant, left) = self.grant_left(session_id)?;
        if warned_for == Some(grant) {
            return None;
        }
        Some(left.saturating_sub(self.gw.settings.expiry_warning))
    }

    #[allow(clippy::too_many_arguments)]
    async fn record_end(
        &self,
        session_id: &str,
        reason: &str,
        bytes_in: u64,
        bytes_out: u64,
        started: Instant,
        exit_status: Option<u32>,
        recording: Option<(String, u64)>,
    ) {
        let report = SessionReport::Ended {
            session: session_id.to_string(),
            bytes_in,
            bytes_out,
            duration: started.elapsed(),
            reason: reason.to_string(),
            exit_status,
            at: self.gw.now(),
            recording,
        };
        if let Err(e) = spool::submit(&self.gw, &report).await {
            tracing::error!("cannot record the end of session {session_id}: {e}");
        }
        tracing::info!("session {session_id}: ended ({reason})");
    }
}

/// Tell the client why the session cannot go on, and close it.
async fn fail(cw: &russh::ChannelWriteHalf<Msg>, msg: String) {
    let _ = cw
        .extended_data_bytes(1, format!("{msg}\r\n").into_bytes())
        .await;
    let _ = cw.exit_status(255).await;
    let _ = cw.eof().await;
    let _ = cw.close().await;
}
