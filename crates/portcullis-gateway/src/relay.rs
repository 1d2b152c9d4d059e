//! Moving bytes between a channel and a target, counted, until either side closes or the
//! session is cut. Backpressure is end to end: a bounded buffer per direction, and the SSH
//! window on the channel side.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

use crate::state::EndReason;

/// Bytes each way, readable while the relay runs and after it is cut.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Client to target.
    pub to_target: AtomicU64,
    /// Target to client.
    pub to_client: AtomicU64,
}

/// The target side of a relay, counting what passes.
struct Counted<T> {
    inner: T,
    counters: Arc<Counters>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.counters
            .to_client
            .fetch_add(n as u64, Ordering::Relaxed);
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            self.counters
                .to_target
                .fetch_add(*n as u64, Ordering::Relaxed);
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Relay until both sides are done or `cut` says why not. The caller drops the streams when
/// it is ready to (after telling the client why, when cut), which closes them.
pub(crate) async fn run<C, T>(
    channel: &mut C,
    target: &mut T,
    counters: Arc<Counters>,
    mut cut: watch::Receiver<Option<EndReason>>,
) -> EndReason
where
    C: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
{
    let mut target = Counted {
        inner: target,
        counters,
    };
    if let Some(r) = cut.borrow().clone() {
        return r;
    }
    tokio::select! {
        _ = tokio::io::copy_bidirectional_with_sizes(channel, &mut target, 64 * 1024, 64 * 1024) => EndReason::Closed,
        r = cut.wait_for(|c| c.is_some()) => match r {
            Ok(reason) => reason.clone().unwrap_or(EndReason::Closed),
            Err(_) => EndReason::Closed,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn counts_both_ways_and_stops_when_cut() {
        let (client, mut client_far) = tokio::io::duplex(1024);
        let (target, mut target_far) = tokio::io::duplex(1024);
        let counters = Arc::new(Counters::default());
        let counters_seen = counters.clone();
        let (tx, rx) = watch::channel(None);
        let relay = tokio::spawn(async move {
            let (mut client, mut target) = (client, target);
            run(&mut client, &mut target, counters.clone(), rx).await
        });
        client_far.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        target_far.read_exact(&mut buf).await.unwrap();
        target_far.write_all(b"hi").await.unwrap();
        let mut buf = [0u8; 2];
        client_far.read_exact(&mut buf).await.unwrap();
        tx.send_replace(Some(EndReason::Revoked));
        assert_eq!(relay.await.unwrap(), EndReason::Revoked);
        let counters = counters_seen;
        assert_eq!(counters.to_target.load(Ordering::Relaxed), 5);
        assert_eq!(counters.to_client.load(Ordering::Relaxed), 2);
        // The far ends see the close.
        let mut rest = Vec::new();
        assert_eq!(client_far.read_to_end(&mut rest).await.unwrap(), 0);
    }
}
