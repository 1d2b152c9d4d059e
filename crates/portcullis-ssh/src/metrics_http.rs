//! The scrape endpoint both daemons serve on their `metrics` address: `GET /metrics` answered
//! with whatever the daemon's registry encodes, 404 for any other path, over HTTP/1.x, one
//! request per connection.
//!
//! Hand-rolled on tokio rather than hyper or axum: one fixed GET is all Prometheus needs, and
//! an HTTP stack for it would be most of a new dependency tree. It is bounded so that a
//! scraper or anyone who can reach the port cannot hold it: the request head is capped
//! ([`MAX_HEAD`]), must arrive within [`READ_TIMEOUT`], the answer must leave within
//! [`WRITE_TIMEOUT`], and at most [`MAX_CONNECTIONS`] are served at once (more are closed
//! unanswered). The body is encoded by the caller's metrics crate, never here.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// The most a request line and headers may take (a scraper's are a few hundred bytes).
pub const MAX_HEAD: usize = 8 * 1024;
/// How long a client has to send its request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the answer may take to leave.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; Prometheus uses one per target.
pub const MAX_CONNECTIONS: usize = 16;

/// What a request head asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /metrics` (a query string is ignored).
    Metrics,
    /// Any other path.
    NotFound,
    /// A method other than GET.
    NotAllowed,
    /// Not an HTTP/1.x request line.
    BadRequest,
}

/// Route a complete request head (request line, headers, blank line).
pub fn route(head: &[u8]) -> Route {
    let Ok(text) = std::str::from_utf8(head) else {
        return Route::BadRequest;
    };
    let line = text.split("\r\n").next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Route::BadRequest;
    }
    if method != "GET" {
        return Route::NotAllowed;
    }
    let path = target.split('?').next().unwrap_or_default();
    if path == "/metrics" {
        Route::Metrics
    } else {
        Route::NotFound
    }
}

/// Where the head ends (just past its blank line), if it has arrived whole.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Serve scrapes on `listener` until the process ends. `render` encodes the registry and gives
/// the body with its content type; it runs once per `GET /metrics`.
pub async fn serve<F>(listener: TcpListener, render: F)
where
    F: Fn() -> (&'static str, String) + Send + Sync + 'static,
{
    let render = Arc::new(render);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors, say: the listener is still good, try again shortly.
                tracing::warn!("metrics listener: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!("metrics: {peer} refused, {MAX_CONNECTIONS} scrapes in progress");
            continue;
        };
        let render = render.clone();
        tokio::spawn(async move {
            answer(stream, &*render).await;
            drop(slot);
        });
    }
}

/// Read one request head (bounded in size and time), answer it, close.
async fn answer(mut stream: TcpStream, render: &(dyn Fn() -> (&'static str, String) + Sync)) {
    let mut buf = Vec::with_capacity(1024);
    let read = tokio::time::timeout(READ_TIMEOUT, async {
        let mut chunk = [0u8; 1024];
        loop {
            if let Some(end) = head_end(&buf) {
                return Some(route(&buf[..end]));
            }
            if buf.len() >= MAX_HEAD {
                return None;
            }
            // Never past the cap: what is not read is not held.
            let room = (MAX_HEAD - buf.len()).min(chunk.len());
            match stream.read(&mut chunk[..room]).await {
                Ok(0) | Err(_) => return Some(Route::BadRequest),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    let (status, content_type, body) = match read {
        // Too slow: nothing is owed.
        Err(_) => return,
        Ok(None) => (
            "431 Request Header Fields Too Large",
            "text/plain",
            String::new(),
        ),
        Ok(Some(Route::Metrics)) => {
            let (ct, body) = render();
            ("200 OK", ct, body)
        }
        Ok(Some(Route::NotFound)) => ("404 Not Found", "text/plain", "not found\n".into()),
        Ok(Some(Route::NotAllowed)) => {
            ("405 Method Not Allowed", "text/plain", "GET only\n".into())
        }
        Ok(Some(Route::BadRequest)) => ("400 Bad Request", "text/plain", String::new()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let r = |s: &str| route(s.as_bytes());
        assert_eq!(
            r("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Metrics
        );
        assert_eq!(r("GET /metrics?x=1 HTTP/1.0\r\n\r\n"), Route::Metrics);
        assert_eq!(r("GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(r("GET /metrics/x HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(r("POST /metrics HTTP/1.1\r\n\r\n"), Route::NotAllowed);
        assert_eq!(r("GET /metrics\r\n\r\n"), Route::BadRequest);
        assert_eq!(r("GET metrics HTTP/1.1\r\n\r\n"), Route::BadRequest);
        assert_eq!(r("GET /metrics SSH-2.0\r\n\r\n"), Route::BadRequest);
        assert_eq!(route(b"GET /\xff HTTP/1.1\r\n\r\n"), Route::BadRequest);
    }

    async fn server() -> std::net::SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(serve(l, || ("text/plain; version=0.0.4", "up 1\n".into())));
        addr
    }

    async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        // A refused connection may be reset rather than closed: what arrived is the answer.
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn serves_metrics_and_nothing_else() {
        let addr = server().await;
        let ok = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(
            ok.contains("Content-Type: text/plain; version=0.0.4\r\n"),
            "{ok}"
        );
        assert!(ok.ends_with("\r\n\r\nup 1\n"), "{ok}");
        let nf = exchange(addr, b"GET /debug HTTP/1.1\r\n\r\n").await;
        assert!(nf.starts_with("HTTP/1.1 404 "), "{nf}");
    }

    #[tokio::test]
    async fn an_endless_head_is_cut_off() {
        let addr = server().await;
        // Exactly the cap, and no blank line: all of it is read, and then refused.
        let mut request = b"GET /metrics HTTP/1.1\r\n".to_vec();
        request.resize(MAX_HEAD, b'a');
        let out = exchange(addr, &request).await;
        assert!(out.starts_with("HTTP/1.1 431 "), "{out}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_is_dropped() {
        let addr = server().await;
        let mut silent = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(READ_TIMEOUT + Duration::from_secs(1)).await;
        let mut out = Vec::new();
        let _ = silent.read_to_end(&mut out).await;
        assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
    }

    #[tokio::test]
    async fn connections_are_capped() {
        let addr = server().await;
        let mut silent = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            silent.push(TcpStream::connect(addr).await.unwrap());
        }
        // One more, while they hold every place, is closed unanswered.
        let out = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
        assert!(out.is_empty(), "{out}");
        // Once they leave, scrapes get through again.
        drop(silent);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let out = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
            if out.starts_with("HTTP/1.1 200 OK") {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{out}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
