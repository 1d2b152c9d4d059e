//! One exec channel on the control port, from its command line to its end. Most commands run
//! and send their reply; `report` first reads what the gateway sends (`intake`); `watch`,
//! `wait`, `audit export` and `audit replay` last until they are done or the client goes.

use std::sync::Arc;

use russh::server::Msg;
use russh::{Channel, ChannelMsg};

use crate::app::Approver;
use crate::commands::{self, Caller, Outcome, Reply};
use crate::{intake, playback, watch};

/// Run `line` for `caller` on `channel`, within the acting user's budget of running commands.
/// `pty`: the client asked for a terminal (`ssh -t`), so replies end their lines as one does.
pub(crate) async fn run_channel(
    app: Arc<Approver>,
    caller: Caller,
    line: String,
    channel: Channel<Msg>,
    pty: bool,
) {
    let (mut read, write) = channel.split();
    let terminal = |reply: Reply| if pty { reply.for_terminal() } else { reply };
    // The acting user's place among their running commands, held until this one ends.
    let _running = match commands::acting_user(&caller, &line).map(|u| app.running.start(&u)) {
        Some(Err(e)) => {
            return send_reply(&write, terminal(commands::error_reply(&e, false))).await
        }
        Some(Ok(place)) => Some(place),
        None => None,
    };
    let reply = match commands::execute(&app, &caller, &line).await {
        Outcome::Done(reply) => reply,
        Outcome::Report { seq, instance } => {
            intake::receive_report(&app, &caller, seq, &instance, &mut read).await
        }
        Outcome::Export { path, raw, session } => {
            tokio::select! {
                r = playback::export(&path, raw, &session, &write) => match r {
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
                r = playback::replay_file(&path, raw, &session, replay, &write) => match r {
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
                r = watch::stream(&app, from, &write) => {
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
    send_reply(&write, terminal(reply)).await;
}

/// Resolves when the client goes away, so that blocking commands stop with it.
pub(crate) async fn client_gone(read: &mut russh::ChannelReadHalf) {
    while let Some(msg) = read.wait().await {
        if matches!(msg, ChannelMsg::Close) {
            break;
        }
    }
}

pub(crate) async fn send_reply(write: &russh::ChannelWriteHalf<Msg>, reply: Reply) {
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
