//! Control commands typed at the gateway (`ssh -p 2222 alice@bastion request …`), relayed to
//! the approver as `as --user alice --key SHA256:… --reach "ssh -p 2222 alice@HOST" -- request
//! …` over the gateway's commands connection, with the answer handed back to the user.
//!
//! A user who stops reading must not hold anything up but their own command: the approver's
//! answer is always drained from the shared connection (in russh, a channel whose reader falls
//! behind stalls every channel of its connection) into a bounded queue towards the user, and a
//! command whose user lets that queue fill is dropped.

use std::sync::Arc;

use russh::server::Msg;
use russh::{Channel, ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
use tokio::sync::mpsc;

use crate::state::GatewayState;

/// Pieces of the approver's answer waiting for the user (each at most one SSH packet, 32 KiB):
/// about a megabyte before a user who does not read loses the command.
pub(crate) const QUEUED_PIECES: usize = 32;

/// Exit status of a command the user went away from (as a shell reports Ctrl-C).
const GONE: u32 = 130;

/// What goes to the user, in order.
enum Piece {
    Out(Vec<u8>),
    Err(Vec<u8>),
}

/// Whom a command is relayed for.
pub(crate) struct Asker {
    pub user: String,
    /// The key they proved to the gateway: the approver checks it is theirs.
    pub fingerprint: String,
    /// How they reach this gateway (`ssh -p 2222 alice@10.0.0.1`): the approver starts the
    /// commands its replies suggest with it, `wait 17` say, where its own address is no use.
    pub reach: String,
    /// They asked for a terminal (`ssh -t`): its output ends lines with CR LF.
    pub pty: bool,
}

/// Run `line` on the approver as `asker` and give the answer back on `channel`. Returns when
/// the command is over; the channel is closed by then.
pub(crate) async fn run(gw: Arc<GatewayState>, asker: Asker, line: String, channel: Channel<Msg>) {
    let user = &asker.user;
    let (mut read, write) = channel.split();
    let (tx, rx) = mpsc::channel(QUEUED_PIECES);
    let to_user = deliver(rx, &write, asker.pty);
    let from_approver = async {
        let code = match relay(&gw, &asker, &line, &tx, &mut read).await {
            Ok(code) => code,
            // `status` the gateway can answer from its replica; the rest must wait.
            Err(Stop::Unreachable(why)) => match crate::offline::answer(&gw, user, &line) {
                Some((out, code)) => {
                    let _ = tx.send(Piece::Out(out.into_bytes())).await;
                    code
                }
                None => {
                    let msg = format!("portcullis: {UNREACHABLE}{why}\n");
                    let _ = tx.send(Piece::Err(msg.into_bytes())).await;
                    1
                }
            },
            Err(Stop::Failed(msg)) => {
                let _ = tx
                    .send(Piece::Err(format!("portcullis: {msg}\n").into_bytes()))
                    .await;
                1
            }
            Err(Stop::Gone) => GONE,
            Err(Stop::NotReading) => {
                tracing::info!(
                    "{user}: relayed command dropped, its output was not being read ({line:?})"
                );
                return None;
            }
        };
        drop(tx);
        Some(code)
    };
    tokio::pin!(to_user);
    tokio::pin!(from_approver);
    let mut delivered = None;
    let code = loop {
        tokio::select! {
            code = &mut from_approver => break code,
            ok = &mut to_user, if delivered.is_none() => delivered = Some(ok),
        }
    };
    let delivered = match (code, delivered) {
        // Dropped: no waiting on a user who does not read.
        (None, _) => false,
        (Some(_), Some(ok)) => ok,
        (Some(_), None) => to_user.await,
    };
    if let (Some(code), true) = (code, delivered) {
        let _ = write.exit_status(code).await;
    }
    let _ = write.eof().await;
    let _ = write.close().await;
}

/// Write the queued pieces to the user until the queue is closed. `false` if the user went.
async fn deliver(mut rx: mpsc::Receiver<Piece>, write: &ChannelWriteHalf<Msg>, pty: bool) -> bool {
    let terminal = |data: Vec<u8>| if pty { onlcr(data) } else { data };
    while let Some(piece) = rx.recv().await {
        let sent = match piece {
            Piece::Out(data) => write.data_bytes(terminal(data)).await,
            Piece::Err(data) => write.extended_data_bytes(1, terminal(data)).await,
        };
        if sent.is_err() {
            return false;
        }
    }
    true
}

/// The exec line that runs `words` on the approver as `asker`.
fn envelope(asker: &Asker, words: Vec<String>) -> String {
    let mut relayed = vec![
        "as".to_string(),
        "--user".into(),
        asker.user.clone(),
        "--key".into(),
        asker.fingerprint.clone(),
        "--reach".into(),
        asker.reach.clone(),
        "--".into(),
    ];
    relayed.extend(words);
    portcullis_core::command::join_words(&relayed)
}

/// The most the gateway reads of an answer to one of its own questions.
const ASK_MAX: usize = 1 << 20;

/// Questions [`ask`] may have open at once, gateway-wide.
static ASKING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(8);

/// Run `words` on the approver as `asker` for the gateway's own use (what a refusal should
/// say), not for a user to read: its stdout if it exits 0 within `limit` and writes at most
/// [`ASK_MAX`] bytes, else `None`, and the caller says what it can without it. Drains the
/// channel until then, as every user of the commands connection must.
pub(crate) async fn ask(
    gw: &GatewayState,
    asker: &Asker,
    words: &[&str],
    limit: std::time::Duration,
) -> Option<Vec<u8>> {
    if !gw.link().is_up() {
        return None;
    }
    // A few at once for the whole gateway, never waited for: these questions come from
    // refusals, which a user can make as fast as they like, and must not crowd out the
    // commands users relay on the same connection.
    let _turn = ASKING.try_acquire().ok()?;
    let line = envelope(asker, words.iter().map(|w| w.to_string()).collect());
    let run = async {
        let conn = gw.link().commands().get(gw).await.ok()?;
        // A channel refused (the approver's places taken) is no reason to drop the
        // connection others' commands share; a dead one is found by the next relayed command.
        let mut channel = conn.exec(&line).await.ok()?;
        let (mut out, mut status) = (Vec::new(), None);
        let answer = loop {
            match channel.wait().await {
                Some(ChannelMsg::Data { data }) if out.len() + data.len() <= ASK_MAX => {
                    out.extend_from_slice(&data)
                }
                Some(ChannelMsg::Data { .. }) => break None,
                Some(ChannelMsg::ExitStatus { exit_status }) => status = Some(exit_status),
                Some(ChannelMsg::Close) | None => break (status == Some(0)).then_some(()),
                Some(_) => {}
            }
        };
        let _ = channel.close().await;
        answer.map(|()| out)
    };
    tokio::time::timeout(limit, run).await.ok().flatten()
}

/// What a pty's output processing (ONLCR) does, for a client that asked for a terminal and
/// so put its own in raw mode: each LF becomes CR LF. Without it `ssh -t` prints a staircase.
fn onlcr(data: Vec<u8>) -> Vec<u8> {
    if !data.contains(&b'\n') {
        return data;
    }
    let mut out = Vec::with_capacity(data.len() + data.len() / 16);
    for b in data {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// What a user is told when their command cannot reach the approver.
const UNREACHABLE: &str = "the approver is unreachable right now: requests and decisions must wait; grants you already hold still work, and `status` answers from this gateway's replica";

enum Stop {
    /// The command could not run; the message says why.
    Failed(String),
    /// The approver could not be reached (the detail, if any, in parentheses).
    Unreachable(String),
    /// The user closed the channel (Ctrl-C during `wait`, say).
    Gone,
    /// The user let the queue fill.
    NotReading,
}

/// Queue a piece for the user without ever waiting for them.
fn queue(tx: &mpsc::Sender<Piece>, piece: Piece) -> Result<(), Stop> {
    tx.try_send(piece).map_err(|e| match e {
        mpsc::error::TrySendError::Full(_) => Stop::NotReading,
        mpsc::error::TrySendError::Closed(_) => Stop::Gone,
    })
}

async fn relay(
    gw: &GatewayState,
    asker: &Asker,
    line: &str,
    tx: &mpsc::Sender<Piece>,
    client: &mut ChannelReadHalf,
) -> Result<u32, Stop> {
    let mut words = shell_words::split(line)
        .map_err(|e| Stop::Failed(format!("cannot split the command line: {e}")))?;
    if words.is_empty() {
        // `ssh … alice@bastion ""`: as with no command at all, the user's commands.
        words.push("help".into());
    }
    if !gw.link().is_up() {
        return Err(Stop::Unreachable(String::new()));
    }
    let line = envelope(asker, words);
    let conn = gw
        .link()
        .commands()
        .get(gw)
        .await
        .map_err(|e| Stop::Unreachable(format!(" ({e})")))?;
    let mut channel = match conn.exec(&line).await {
        Ok(c) => c,
        Err(e) => {
            // The connection may have died under us: the next command connects afresh.
            gw.link().commands().drop_conn(&conn).await;
            return Err(Stop::Unreachable(format!(" ({e})")));
        }
    };
    let mut status = None;
    let result = loop {
        tokio::select! {
            msg = channel.wait() => match msg {
                Some(ChannelMsg::Data { data }) => {
                    if let Err(stop) = queue(tx, Piece::Out(data.to_vec())) { break Err(stop); }
                }
                Some(ChannelMsg::ExtendedData { data, .. }) => {
                    if let Err(stop) = queue(tx, Piece::Err(data.to_vec())) { break Err(stop); }
                }
                Some(ChannelMsg::ExitStatus { exit_status }) => status = Some(exit_status),
                Some(ChannelMsg::Close) | None => break match status {
                    Some(code) => Ok(code),
                    None => Err(Stop::Failed("the approver closed the command without a status".into())),
                },
                Some(_) => {}
            },
            m = client.wait() => {
                if matches!(m, None | Some(ChannelMsg::Close)) {
                    break Err(Stop::Gone);
                }
            }
        }
    };
    if result.is_err() {
        // Stop the command on the approver too (a `wait` would otherwise run on).
        let _ = channel.close().await;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terminal_gets_cr_lf() {
        assert_eq!(onlcr(b"a\nb\n".to_vec()), b"a\r\nb\r\n");
        assert_eq!(onlcr(b"no newline".to_vec()), b"no newline");
    }
}
