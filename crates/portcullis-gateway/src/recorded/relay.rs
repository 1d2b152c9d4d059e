//! The running phase of a recorded session ([`Relay`]): data both ways, recorded, while
//! watching for the cut, a per-second tick that flushes the recording and re-reads the grant,
//! and the one-line notice before the grant ends ([`Warning`]).

use std::time::Duration;

use portcullis_core::time::format_duration;
use russh::server::Msg;
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf};

use portcullis_core::model::SessionReport;

use super::files::FileTap;
use super::{Recorded, TargetLeg};
use crate::recording::{Output, Recording};
use crate::session::EndReason;
use crate::spool;

/// How early the expiry warning may fire against the wall clock it is computed from.
const WARNING_SLACK: Duration = Duration::from_millis(20);

/// The running session: data both ways (recorded), the per-second tick, the expiry warning,
/// and the cut.
pub(super) struct Relay<'a> {
    pub session: &'a Recorded,
    pub recording: Recording,
    pub pty: bool,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub exit_status: Option<u32>,
    /// Where the session's file operations are read, if it moves files (`recorded/files.rs`).
    pub files: Option<FileTap>,
}

/// A channel data write under way (see `Relay::run`).
type PendingWrite<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), russh::Error>> + Send + 'a>>;

/// Resolves when the write under way, if any, is done; never while there is none.
async fn written(pending: &mut Option<PendingWrite<'_>>) -> Result<(), russh::Error> {
    match pending {
        Some(write) => write.await,
        None => std::future::pending().await,
    }
}

/// What one step of the relay came to.
enum Step {
    Go,
    /// The session is over, for this reason.
    End(EndReason),
}

impl Relay<'_> {
    pub async fn run(
        &mut self,
        client: &mut ChannelReadHalf,
        cw: &ChannelWriteHalf<Msg>,
        leg: &mut TargetLeg,
        cut: std::pin::Pin<&mut impl std::future::Future<Output = EndReason>>,
    ) -> EndReason {
        let mut cut = cut;
        // The per-second tick flushes the recording and re-reads the grant the session rests
        // on (a switch to another grant moves the warning). Nothing below runs per message
        // but the relay itself: no table lock, no clock read, no timer to arm.
        let mut flush = tokio::time::interval(Duration::from_secs(1));
        let mut warning = Warning::default();
        let timer = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(timer);
        let mut client_open = true;
        // A data write waiting for the peer's window, one each way. While one waits, the loop
        // goes on taking the other side's messages and watching for a cut. Awaiting the write
        // in place would stop taking the client's input while its window is shut; russh
        // queues only a few packets per channel (portcullis_ssh::server::CHANNEL_QUEUE) and
        // then reads nothing more from the connection, the window adjustment that would end
        // the wait included: a client that typed while not reading was wedged for good.
        // Messages after a data write wait for it, so the order on each side is kept.
        let mut to_client: Option<PendingWrite<'_>> = None;
        let mut to_target: Option<PendingWrite<'_>> = None;
        loop {
            let step = tokio::select! {
                m = client.wait(), if client_open && to_target.is_none() => {
                    if matches!(m, Some(ChannelMsg::Close) | None) {
                        client_open = false;
                    }
                    match m {
                        Some(ChannelMsg::Data { data }) => match self.client_data(&data) {
                            Ok(()) => {
                                to_target = Some(Box::pin(leg.write.data_bytes(data)));
                                self.report_files_if_due().await;
                                Step::Go
                            }
                            Err(step) => step,
                        },
                        m => self.client_said(m, &leg.write).await,
                    }
                }
                r = written(&mut to_target) => {
                    to_target = None;
                    match r {
                        Ok(()) => Step::Go,
                        Err(_) => Step::End(EndReason::Closed),
                    }
                }
                m = leg.read.wait(), if to_client.is_none() => match m {
                    Some(ChannelMsg::Data { data }) => {
                        match self.target_data(Output::Stdout, &data) {
                            Ok(()) => {
                                to_client = Some(Box::pin(cw.data_bytes(data)));
                                self.report_files_if_due().await;
                                Step::Go
                            }
                            Err(step) => step,
                        }
                    }
                    Some(ChannelMsg::ExtendedData { data, ext }) => {
                        match self.target_data(Output::Stderr, &data) {
                            Ok(()) => {
                                to_client = Some(Box::pin(cw.extended_data_bytes(ext, data)));
                                Step::Go
                            }
                            Err(step) => step,
                        }
                    }
                    m => self.target_said(m, cw).await,
                },
                r = written(&mut to_client) => {
                    to_client = None;
                    match r {
                        Ok(()) => Step::Go,
                        Err(_) => Step::End(EndReason::Closed),
                    }
                }
                r = &mut cut => Step::End(r),
                _ = flush.tick() => match self.recording.flush() {
                    Err(e) => self.failed(e),
                    Ok(()) => {
                        // The first tick comes at once, so the warning is armed from the start.
                        warning.arm(self.session, timer.as_mut());
                        self.report_files().await;
                        Step::Go
                    }
                },
                // After the output already on its way, not in the middle of it.
                // The notice goes out as the pending write towards the client, like its
                // output: a client that keeps its window shut then holds up only the notice,
                // while this loop still watches for the cut. (Awaited here, it stopped the
                // loop, and the session outlived its grant until the client left.)
                () = &mut timer, if warning.armed && to_client.is_none() => {
                    if let Some(note) = warning.fire(self.session, self.pty, timer.as_mut()) {
                        to_client = Some(Box::pin(cw.data_bytes(note)));
                    }
                    Step::Go
                }
            };
            if let Step::End(reason) = step {
                return reason;
            }
        }
    }

    fn failed(&self, e: std::io::Error) -> Step {
        tracing::error!(
            "session {}: recording failed ({e}); ending it",
            self.session.live.id()
        );
        Step::End(EndReason::RecordingFailed)
    }

    /// Count and record the client's input; a recording that fails ends the session.
    fn client_data(&mut self, data: &[u8]) -> Result<(), Step> {
        self.bytes_in += data.len() as u64;
        if let Some(files) = &mut self.files {
            // The clock is read only when an operation completes.
            let gw = &self.session.gw;
            files.client_sent(data, &|| gw.now());
        }
        self.recording.input(data).map_err(|e| self.failed(e))
    }

    /// Count and record the target's output.
    fn target_data(&mut self, stream: Output, data: &[u8]) -> Result<(), Step> {
        self.bytes_out += data.len() as u64;
        if let (Some(files), Output::Stdout) = (&mut self.files, stream) {
            let gw = &self.session.gw;
            files.target_sent(data, &|| gw.now());
        }
        self.recording
            .output(stream, data)
            .map_err(|e| self.failed(e))
    }

    /// Report the file operations waiting if there are enough of them for a report: a burst
    /// does not wait for the tick, and the queue stays short.
    async fn report_files_if_due(&mut self) {
        if self.files.as_mut().is_some_and(|f| f.log().due()) {
            self.report_files().await;
        }
    }

    /// Spool the file operations waiting, in order, a few dozen to a report: durable within
    /// a second of happening, like the recording.
    async fn report_files(&mut self) {
        let Some(files) = &mut self.files else {
            return;
        };
        let session = self.session.live.id();
        for ops in files.log().take() {
            let report = SessionReport::FileOps {
                session: session.to_string(),
                ops,
            };
            if let Err(e) = spool::submit(&self.session.gw, &report).await {
                tracing::error!("session {session}: cannot record its file operations: {e}");
            }
        }
    }

    /// The session is over: files still open, and operations past the budget, are reported
    /// with the rest.
    pub async fn finish_files(&mut self) {
        if let Some(files) = &mut self.files {
            files.finish(self.session.gw.now());
        }
        self.report_files().await;
    }

    async fn client_said(
        &mut self,
        m: Option<ChannelMsg>,
        tw: &ChannelWriteHalf<russh::client::Msg>,
    ) -> Step {
        // Data is not among them: `run` writes it without waiting here.
        match m {
            Some(ChannelMsg::Eof) => {
                let _ = tw.eof().await;
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
                if let Err(e) = self.recording.resize(col_width, row_height) {
                    return self.failed(e);
                }
            }
            Some(ChannelMsg::Signal { signal }) => {
                let _ = tw.signal(signal).await;
            }
            Some(ChannelMsg::Close) | None => {
                let _ = tw.close().await;
            }
            Some(_) => {}
        }
        Step::Go
    }

    async fn target_said(&mut self, m: Option<ChannelMsg>, cw: &ChannelWriteHalf<Msg>) -> Step {
        // Data is not among them: `run` writes it without waiting here.
        match m {
            Some(ChannelMsg::Eof) => {
                let _ = cw.eof().await;
            }
            Some(ChannelMsg::ExitStatus { exit_status }) => {
                self.exit_status = Some(exit_status);
                let _ = cw.exit_status(exit_status).await;
            }
            Some(ChannelMsg::ExitSignal {
                signal_name,
                core_dumped,
                error_message,
                lang_tag,
            }) => {
                if let Some(handle) = &self.session.who.handle {
                    let _ = handle
                        .exit_signal_request(
                            cw.id(),
                            signal_name,
                            core_dumped,
                            error_message,
                            lang_tag,
                        )
                        .await;
                }
            }
            Some(ChannelMsg::Close) | None => return Step::End(EndReason::Closed),
            Some(_) => {}
        }
        Step::Go
    }
}

/// The one-line notice before a grant ends, once per grant the session rests on.
#[derive(Default)]
struct Warning {
    armed: bool,
    warned_for: Option<u64>,
}

impl Warning {
    /// Aim the timer at the current grant's warning, if one is still due.
    fn arm(&mut self, session: &Recorded, timer: std::pin::Pin<&mut tokio::time::Sleep>) {
        let due = session.warning_due(self.warned_for);
        self.armed = due.is_some();
        if let Some(d) = due {
            timer.reset(tokio::time::Instant::now() + d);
        }
    }

    /// The notice to send the client now, if it is due (the timer is moved if it is not).
    fn fire(
        &mut self,
        session: &Recorded,
        pty: bool,
        timer: std::pin::Pin<&mut tokio::time::Sleep>,
    ) -> Option<Vec<u8>> {
        // The session may have moved to a longer grant since the tick that armed this: warn
        // only when the warning is due now, else wait for it.
        match session.warning_due(self.warned_for) {
            Some(d) if d > WARNING_SLACK => {
                timer.reset(tokio::time::Instant::now() + d);
                return None;
            }
            Some(_) => {}
            None => {
                self.armed = false;
                return None;
            }
        }
        self.armed = false;
        let (grant, left) = session.grant_left()?;
        self.warned_for = Some(grant);
        pty.then(|| {
            format!(
                "\r\nportcullis: grant on {t} ends in {left} - request more: {reach} request {t} --for 1h --reason \"...\"\r\n",
                t = session.target.name,
                left = format_duration(left),
                reach = session.who.reach,
            )
            .into_bytes()
        })
    }
}
