//! Moving bytes between a forwarded channel and its target, counted, until the client closes
//! the channel (or its connection is gone), both sides are done, or the session is cut; after
//! a client's EOF the target's answer still goes through.
//!
//! An idle session holds no buffer: the client's data arrives in the buffers russh already
//! made for it and is written straight to the target, and a buffer for the target's data is
//! taken only once the socket is readable, then handed to russh without a copy. (A
//! `copy_bidirectional` with 64 KiB each way held 128 KiB for every idle session.)
//! Backpressure is end to end: the target is not read while the channel's SSH window is shut,
//! and the client's data is not taken from russh while the target's socket is full.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use russh::server::Msg;
use russh::{Channel, ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::session::EndReason;

/// The most read from the target at once: one SSH packet's worth is 32 KiB; two let russh
/// fill the window without a wake-up between them.
pub(crate) const READ_CHUNK: usize = 64 * 1024;

/// Bytes each way, readable while the relay runs and after it is cut.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Client to target.
    pub to_target: AtomicU64,
    /// Target to client.
    pub to_client: AtomicU64,
}

/// Relay until both sides are done, the client closes the channel (or its connection is
/// gone), or `cut` says why not. The streams are dropped (closed) on return; telling the
/// client why is the caller's. Once the client has closed, nobody reads what the target might
/// still send: a target that stays silent must not keep the session (its grant, its part of
/// the user's channel memory) alive until the grant ends.
pub(crate) async fn run(
    channel: Channel<Msg>,
    target: TcpStream,
    counters: Arc<Counters>,
    mut cut: watch::Receiver<Option<EndReason>>,
) -> EndReason {
    if let Some(r) = cut.borrow().clone() {
        return r;
    }
    let (from_client, to_client) = channel.split();
    let (from_target, to_target) = target.into_split();
    let both = async {
        let client = client_to_target(from_client, to_target, &counters);
        let target = target_to_client(from_target, &to_client, &counters);
        tokio::pin!(client, target);
        tokio::select! {
            end = &mut client => match end {
                ClientEnd::Closed => {}
                // The target stopped taking data; what it still sends goes to the client.
                ClientEnd::TargetGone => target.await,
                // A half-close: the answer goes on until the target ends it, or until the
                // client closes after all.
                ClientEnd::Eof(mut rest) => tokio::select! {
                    () = &mut target => {}
                    () = closed(&mut rest) => {}
                },
            },
            () = &mut target => {
                client.await;
            }
        }
    };
    tokio::select! {
        _ = both => EndReason::Closed,
        r = cut.wait_for(|c| c.is_some()) => match r {
            Ok(reason) => reason.clone().unwrap_or(EndReason::Closed),
            Err(_) => EndReason::Closed,
        },
    }
}

/// How the client's side of a relay ended.
enum ClientEnd {
    /// The client closed the channel, or its connection is gone: nobody reads any more.
    Closed,
    /// The client sent EOF (a half-close) and may still read the target's answer; the rest
    /// of its channel, to see it close.
    Eof(ChannelReadHalf),
    /// Writing to the target failed; the client may still read what the target sends.
    TargetGone,
}

/// The client's data, as russh hands it over, written to the target; its EOF becomes the
/// target's.
async fn client_to_target(
    mut from_client: ChannelReadHalf,
    mut to_target: OwnedWriteHalf,
    counters: &Counters,
) -> ClientEnd {
    while let Some(msg) = from_client.wait().await {
        match msg {
            ChannelMsg::Data { data } => {
                if to_target.write_all(&data).await.is_err() {
                    return ClientEnd::TargetGone;
                }
                counters
                    .to_target
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
            }
            ChannelMsg::Eof => {
                let _ = to_target.shutdown().await;
                return ClientEnd::Eof(from_client);
            }
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    let _ = to_target.shutdown().await;
    ClientEnd::Closed
}

/// Resolves when the client closes the channel or its connection is gone.
async fn closed(from_client: &mut ChannelReadHalf) {
    while let Some(msg) = from_client.wait().await {
        if matches!(msg, ChannelMsg::Close) {
            return;
        }
    }
}

/// The target's data, read only when there is some, handed to russh (which waits for window);
/// its EOF becomes the channel's.
async fn target_to_client(
    from_target: OwnedReadHalf,
    to_client: &ChannelWriteHalf<Msg>,
    counters: &Counters,
) {
    loop {
        if from_target.readable().await.is_err() {
            break;
        }
        let mut buf = Vec::with_capacity(READ_CHUNK);
        match from_target.try_read_buf(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to_client.data_bytes(buf).await.is_err() {
                    return;
                }
                counters.to_client.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => break,
        }
    }
    let _ = to_client.eof().await;
}
