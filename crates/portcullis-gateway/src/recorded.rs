//! Recorded sessions: `ssh -p 2222 alice:web-1@bastion [command]`. The gateway logs into the
//! target itself (its client key, the target's login, the pinned host key), relays the session
//! (pty, env, shell, exec, subsystem, window changes, signals, data both ways, EOF, exit
//! status), records pty sessions as asciicast v2, warns before the grant ends, and cuts at the
//! end with the reason on screen.
//!
//! The session is on the books (bound to its grant, see [`crate::session`]) from the moment its
//! channel is accepted, not from its command: a channel opened under a grant and kept idle is
//! closed at the grant's end, its login to the target with it, and every request on it (pty,
//! environment, the command) is checked against a live grant when it is made.
//!
//! Phases: [`Recorded::connect`] (the gateway's own login), [`Recorded::await_request`] (pty
//! and environment, up to the command), [`Recorded::begin`] (reported, recording opened, the
//! command sent), [`Relay::run`] (data both ways, the warning, the cut: `recorded/relay.rs`)
//! and [`Recorded::finish`] (the reason on screen, the recording and end reports).

mod files;
mod relay;
mod scp;
mod sftp;

use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_core::catalog::{Target, TargetKind};
use portcullis_core::model::SessionReport;
use portcullis_ssh::{ClientConnection, ConnectOptions, HostKeyPolicy, Identity, SshError};
use russh::server::Msg;
use russh::{Channel, ChannelMsg, ChannelReadHalf, ChannelWriteHalf};

use self::files::FileTap;
use self::relay::Relay;
use crate::recording::{Header, Output, RawRecorder, Recorder, Recording};
use crate::refusals;
use crate::session::{self, Denial, EndReason, Holder, Live, SessionOutcome, Unreachable};
use crate::spool;
use crate::state::GatewayState;

/// What the client asked the session to run.
enum Command {
    Shell,
    Exec(String),
    Subsystem(String),
}

impl Command {
    fn describe(&self, pty: bool) -> String {
        match self {
            Command::Shell => format!("shell{}", if pty { " (pty)" } else { "" }),
            Command::Exec(c) => format!("exec{}: {c}", if pty { " (pty)" } else { "" }),
            Command::Subsystem(n) => format!("subsystem: {n}"),
        }
    }
}

struct Pty {
    term: String,
    cols: u32,
    rows: u32,
}

/// What a recorded session was admitted to.
pub(crate) struct Admitted {
    pub target: Target,
    pub grant: u64,
    /// Keep the raw data of a channel without a pty (`record_data = true`).
    pub record_data: bool,
}

/// Check a recorded session may open: the target is an ssh target and the user holds a grant.
pub(crate) fn check(gw: &GatewayState, who: &Holder, target: &str) -> Result<Admitted, Denial> {
    let catalog = session::admit_user(gw, who)?;
    let t = catalog.targets.get(target).ok_or_else(|| {
        Denial::Target(
            Unreachable::UnknownTarget,
            format!(
                "portcullis: {target:?} is not a configured target - list yours with: {} targets",
                who.reach
            ),
        )
    })?;
    if t.kind != TargetKind::Ssh {
        return Err(Denial::Target(
            Unreachable::ForwardingOnly,
            format!(
                "portcullis: {target} is a forwarding-only target: use ssh -L through the gateway"
            ),
        ));
    }
    let g = session::grant_for(gw, who, target)?;
    // The data of channels without a pty is kept where the target or the grant's policy asks.
    let record_data = t.record_data || catalog.policy(&g.policy).is_some_and(|p| p.record_data);
    Ok(Admitted {
        target: t.clone(),
        grant: g.id,
        record_data,
    })
}

pub(crate) struct Recorded {
    pub gw: Arc<GatewayState>,
    pub who: Holder,
    pub target: Target,
    pub record_data: bool,
    /// On the books since the channel was accepted.
    pub live: Live,
}

/// The gateway's side of the session on the target.
struct TargetLeg {
    conn: ClientConnection,
    read: ChannelReadHalf,
    write: ChannelWriteHalf<russh::client::Msg>,
}

impl Recorded {
    pub async fn run(self, channel: Channel<Msg>) {
        let (mut client, cw) = channel.split();
        let id = self.live.id().to_string();
        let cut = self.live.cut_signal();
        tokio::pin!(cut);
        let leg = tokio::select! {
            leg = self.connect() => leg,
            reason = &mut cut => Err(self.cut_text(&reason)),
        };
        let mut leg = match leg {
            Ok(leg) => leg,
            Err(why) => return self.refuse(&cw, why).await,
        };
        let asked = tokio::select! {
            r = self.await_request(&mut client, &leg) => r,
            reason = &mut cut => Err(self.cut_text(&reason)),
        };
        let (command, pty) = match asked {
            Ok(Some(asked)) => asked,
            Ok(None) => {
                // The client closed the channel before asking for anything.
                leg.conn.close().await;
                return;
            }
            Err(why) => {
                leg.conn.close().await;
                return self.refuse(&cw, why).await;
            }
        };
        let started = Instant::now();
        let recording = match self.begin(&command, pty.as_ref(), &leg).await {
            Ok(r) => r,
            Err(why) => {
                leg.conn.close().await;
                return self.refuse(&cw, why).await;
            }
        };
        tracing::info!(
            "session {id}: {} on {} ({})",
            self.who.user,
            self.target.name,
            command.describe(pty.is_some())
        );
        // Files moved by sftp, scp (over SFTP) or legacy scp become events of the session.
        let files = match &command {
            Command::Subsystem(name) => FileTap::for_subsystem(name),
            Command::Exec(line) if pty.is_none() => FileTap::for_exec(line),
            _ => None,
        };
        let mut relay = Relay {
            session: &self,
            recording,
            pty: pty.is_some(),
            bytes_in: 0,
            bytes_out: 0,
            exit_status: None,
            files,
        };
        let reason = relay.run(&mut client, &cw, &mut leg, cut).await;
        // Before the end report: the session's events stay in order in the log.
        relay.finish_files().await;
        let Relay {
            recording,
            bytes_in,
            bytes_out,
            exit_status,
            ..
        } = relay;
        let _ = leg.write.close().await;
        leg.conn.close().await;
        self.finish(
            &cw,
            recording,
            SessionOutcome {
                reason,
                bytes_in,
                bytes_out,
                started,
                exit_status,
                recording: None,
            },
        )
        .await;
    }

    /// The gateway's own login to the target, host key pinned, and a session channel on it.
    async fn connect(&self) -> Result<TargetLeg, String> {
        let target = &self.target;
        let host_key = match target
            .host_key
            .as_deref()
            .map(portcullis_core::keys::parse_public_key)
        {
            Some(Ok(k)) => k,
            _ => {
                return Err(format!(
                    "portcullis: {} has no usable pinned host key",
                    target.name
                ))
            }
        };
        // A target that trusts the gateway's CA gets a certificate made for this session.
        let certified = crate::target_ca::login(&self.gw, &self.who, target, self.live.id()).await;
        let identity = match certified {
            Ok(Some(identity)) => identity,
            Ok(None) => Identity::Key(self.gw.client_key().clone()),
            Err(why) => {
                return Err(format!(
                    "portcullis: cannot log into {}: {why}",
                    target.name
                ))
            }
        };
        let options = ConnectOptions {
            addr: target.address.clone(),
            user: target.login.clone().unwrap_or_default(),
            identity,
            host_key: HostKeyPolicy::Pinned(host_key),
            connect_timeout: Duration::from_secs(10),
        };
        let conn = match ClientConnection::connect(&options).await {
            Ok(c) => c,
            Err(SshError::HostKey(why)) => {
                let id = self.live.id();
                tracing::error!("session {id}: {why}");
                let _ = spool::submit(
                    &self.gw,
                    &SessionReport::HostKeyMismatch {
                        session: id.to_string(),
                        user: self.who.user.clone(),
                        target: target.name.clone(),
                        presented: why.clone(),
                        at: self.gw.now(),
                    },
                )
                .await;
                return Err(format!(
                    "portcullis: refusing {}: its host key does not match the pinned key (reported to the audit log)",
                    target.name
                ));
            }
            Err(e) => return Err(format!("portcullis: cannot reach {}: {e}", target.name)),
        };
        let channel = match conn.open_session().await {
            Ok(c) => c,
            Err(e) => {
                conn.close().await;
                return Err(format!(
                    "portcullis: {} refused a session: {e}",
                    target.name
                ));
            }
        };
        let (read, write) = channel.split();
        Ok(TargetLeg { conn, read, write })
    }

    /// Everything up to the request that starts the session: pty and environment are relayed
    /// as they come, each checked against a live grant when it is made, as is the command.
    /// `None` if the client closed the channel first.
    async fn await_request(
        &self,
        client: &mut ChannelReadHalf,
        leg: &TargetLeg,
    ) -> Result<Option<(Command, Option<Pty>)>, String> {
        let tw = &leg.write;
        let mut pty: Option<Pty> = None;
        loop {
            let msg = client.wait().await;
            let request = match &msg {
                Some(ChannelMsg::RequestPty { .. }) => Some("pty-req"),
                Some(ChannelMsg::SetEnv { .. }) => Some("env"),
                Some(ChannelMsg::RequestShell { .. }) => Some("shell"),
                Some(ChannelMsg::Exec { .. }) => Some("exec"),
                Some(ChannelMsg::RequestSubsystem { .. }) => Some("subsystem"),
                _ => None,
            };
            if let Some(request) = request {
                if let Err(denial) = self.live.check() {
                    let (who, target, why) = (&self.who, &self.target.name, denial.message());
                    let record =
                        refusals::record(&self.gw, who, request, target, denial.reason(), &why);
                    Box::pin(record).await;
                    return Err(why);
                }
            }
            match msg {
                // Refused to the client already (server.rs): a certificate without permit-pty.
                Some(ChannelMsg::RequestPty { .. })
                    if !portcullis_core::user_ca::permits_pty(&self.who.key) => {}
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
                Some(ChannelMsg::RequestShell { .. }) => return Ok(Some((Command::Shell, pty))),
                Some(ChannelMsg::Exec { command, .. }) => {
                    let line = String::from_utf8_lossy(&command).into_owned();
                    return Ok(Some((Command::Exec(line), pty)));
                }
                Some(ChannelMsg::RequestSubsystem { name, .. }) => {
                    return Ok(Some((Command::Subsystem(name), pty)))
                }
                Some(ChannelMsg::Close) | None => return Ok(None),
                Some(_) => {}
            }
        }
    }

    /// In the audit log before the first byte, the recording opened (failing to open it
    /// refuses the session), then the command sent to the target.
    async fn begin(
        &self,
        command: &Command,
        pty: Option<&Pty>,
        leg: &TargetLeg,
    ) -> Result<Recording, String> {
        let gw = &self.gw;
        let id = self.live.id();
        let what = command.describe(pty.is_some());
        let grant = self
            .live
            .grant()
            .ok_or("portcullis: this session has ended")?;
        session::report_start(gw, &self.live, grant, &what)
            .await
            .map_err(|e| format!("portcullis: cannot record this session ({e}); refused"))?;
        let recording = match pty {
            Some(p) => Recorder::create(
                &gw.recordings_dir(),
                id,
                Header {
                    width: p.cols,
                    height: p.rows,
                    timestamp: gw.now().secs(),
                    term: &p.term,
                    title: &format!("{} on {} ({what})", self.who.user, self.target.name),
                },
                gw.settings().record_input,
            )
            .map(Recording::Cast),
            None if self.record_data => {
                RawRecorder::create(&gw.recordings_dir(), id).map(Recording::Raw)
            }
            None => Ok(Recording::None),
        };
        let recording = match recording {
            Ok(r) => r,
            Err(e) => {
                session::report_end(
                    gw,
                    id,
                    SessionOutcome {
                        reason: EndReason::RecordingFailed,
                        bytes_in: 0,
                        bytes_out: 0,
                        started: Instant::now(),
                        exit_status: None,
                        recording: None,
                    },
                )
                .await;
                return Err(format!(
                    "portcullis: cannot record this session ({e}); refused"
                ));
            }
        };
        let tw = &leg.write;
        let sent = match command {
            Command::Shell => tw.request_shell(false).await,
            Command::Exec(c) => tw.exec(false, c.as_bytes()).await,
            Command::Subsystem(n) => tw.request_subsystem(false, n).await,
        };
        if let Err(e) = sent {
            tracing::warn!("session {id}: target refused the request: {e}");
        }
        Ok(recording)
    }

    /// The reason a cut session is given on screen.
    fn cut_text(&self, reason: &EndReason) -> String {
        session::cut_message(
            &self.gw,
            reason,
            self.live.id(),
            &self.who,
            &self.target.name,
            self.live.grant(),
        )
        .unwrap_or_else(|| "portcullis: this session has ended".into())
    }

    /// A session that never started: the reason on stderr, the channel closed, and the
    /// connection with it if nothing else of it is live.
    async fn refuse(self, cw: &ChannelWriteHalf<Msg>, why: String) {
        tracing::info!(
            "{} {}: session {} on {} not started: {why}",
            self.who.client,
            self.who.user,
            self.live.id(),
            self.target.name
        );
        fail(cw, &why).await;
        let was_cut = self.live.cut_reason().is_some();
        let left = self.live.leave();
        if was_cut {
            session::disconnect_if_last(&self.who, &left, &why).await;
        }
    }

    /// The reason on the user's screen, the channel closed (the connection with it if this
    /// was its last session and it was cut), then the recording and the end reported.
    async fn finish(
        self,
        cw: &ChannelWriteHalf<Msg>,
        recording: Recording,
        mut end: SessionOutcome,
    ) {
        let id = self.live.id().to_string();
        let grant = self.live.grant();
        let why = session::cut_message(
            &self.gw,
            &end.reason,
            &id,
            &self.who,
            &self.target.name,
            grant,
        );
        let mut recording = recording;
        if let Some(why) = &why {
            let line = format!("\r\n{why}\r\n");
            if matches!(recording, Recording::Cast(_)) {
                let _ = cw.data_bytes(line.clone().into_bytes()).await;
                let _ = recording.output(Output::Stdout, line.as_bytes());
            } else {
                let _ = cw.extended_data_bytes(1, line.into_bytes()).await;
            }
            let _ = cw.exit_status(255).await;
        }
        let _ = cw.eof().await;
        let _ = cw.close().await;
        let left = self.live.leave();
        if let Some(why) = &why {
            // The reason is on the screen already: let the client leave first.
            session::disconnect_if_last_later(&self.who, &left, why);
        }
        end.recording = match recording.finish() {
            Some((format, Ok((size, sha)))) => {
                let _ = spool::submit(
                    &self.gw,
                    &SessionReport::Recorded {
                        session: id.clone(),
                        sha256: sha.clone(),
                        size,
                        format: format.to_string(),
                    },
                )
                .await;
                Some((sha, size))
            }
            Some((_, Err(e))) => {
                tracing::error!("session {id}: cannot close the recording: {e}");
                None
            }
            None => None,
        };
        session::report_end(&self.gw, &id, end).await;
    }

    /// The grant the session rests on now and the time it has left.
    fn grant_left(&self) -> Option<(u64, Duration)> {
        let id = self.live.grant()?;
        let g = self.gw.grant(&self.who.user, id)?;
        Some((id, self.gw.now().until(g.ends_at())))
    }

    /// How long until the expiry warning for the current grant is due (`None`: not needed).
    fn warning_due(&self, warned_for: Option<u64>) -> Option<Duration> {
        let (grant, left) = self.grant_left()?;
        if warned_for == Some(grant) {
            return None;
        }
        Some(left.saturating_sub(self.gw.settings().expiry_warning))
    }
}

/// Tell the client why the session cannot go on, and close it.
async fn fail(cw: &ChannelWriteHalf<Msg>, msg: &str) {
    let _ = cw
        .extended_data_bytes(1, format!("{msg}\r\n").into_bytes())
        .await;
    let _ = cw.exit_status(255).await;
    let _ = cw.eof().await;
    let _ = cw.close().await;
}
