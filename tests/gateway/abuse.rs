//! Load and abuse at the gateway's door: thousands of half-open connections, the per-source
//! budget, the channel cap per connection, and a client that stops reading. A real user is
//! served throughout, and memory stays bounded.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

use super::common::{self, grant, Tunnel};
use crate::support::targets::free_port;
use crate::support::{rss_kib, SOON};

fn gateway_pid(env: &crate::support::Env) -> u32 {
    env.gateway.as_ref().unwrap().id()
}

/// A real user's whole round trip: handshake, auth, grant check, channel, echo, close.
fn real_user_round_trip(g: &common::GwEnv) -> Duration {
    let start = Instant::now();
    let mut t = Tunnel::open(&g.env, "alice", &format!("echo:{}", g.echo.port));
    assert_eq!(t.echo(b"still served"), b"still served");
    assert_eq!(t.close(), 0);
    start.elapsed()
}

#[test]
fn two_thousand_half_open_connections_and_a_real_user_is_still_served() {
    // 2,000 opened as fast as the test can: lift the handshake rate, so that what is measured
    // is the budget on open connections (the rate has its own test in algorithms.rs).
    let g = common::start_tuned(
        |_| String::new(),
        "new_connections_per_source_per_second = 100000\nnew_connections_per_source_burst = 100000",
    );
    let env = &g.env;
    grant(env, "alice", "echo", "1h");
    let pid = gateway_pid(env);
    let baseline = real_user_round_trip(&g);
    let rss_before = rss_kib(pid);

    let gw: SocketAddr = env.gw_addr.parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // From four source addresses, 500 each: half stop after the version line (the server's
    // key exchange then waits on them), half never say anything. 127.0.0.2 also takes 12
    // more, to fill its budget of 512; the 513th from it must be turned away at once.
    let held = rt.block_on(async {
        let mut held = Vec::new();
        for (i, src) in ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
            .iter()
            .enumerate()
        {
            let n = if i == 0 { 512 } else { 496 };
            for k in 0..n {
                let socket = TcpSocket::new_v4().unwrap();
                socket
                    .bind(SocketAddr::new(src.parse::<IpAddr>().unwrap(), 0))
                    .unwrap();
                let mut s = socket.connect(gw).await.unwrap();
                if k % 2 == 0 {
                    s.write_all(b"SSH-2.0-halfopen\r\n").await.unwrap();
                }
                held.push(s);
            }
        }
        held
    });
    assert_eq!(held.len(), 2000);

    let over_budget = rt.block_on(async {
        let socket = TcpSocket::new_v4().unwrap();
        socket
            .bind(SocketAddr::new("127.0.0.2".parse().unwrap(), 0))
            .unwrap();
        let mut s = socket.connect(gw).await.unwrap();
        let mut buf = [0u8; 256];
        // Dropped without a word: end of stream (or a reset), well before the login grace.
        tokio::time::timeout(SOON, s.read(&mut buf)).await
    });
    match over_budget {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        other => panic!("the 513th connection from one source was served: {other:?}"),
    }
    env.eventually("the budget log line", || {
        env.gw_log()
            .contains("512 connections from 127.0.0.2 already")
    });

    let held_round_trip = real_user_round_trip(&g);
    let rss_held = rss_kib(pid);
    let per_conn = (rss_held.saturating_sub(rss_before)) as f64 / 2000.0;
    eprintln!(
        "2,000 half-open: real user round trip {:.1} ms (alone {:.1} ms); gateway RSS {} KiB -> {} KiB, {:.1} KiB per half-open connection",
        held_round_trip.as_secs_f64() * 1e3,
        baseline.as_secs_f64() * 1e3,
        rss_before,
        rss_held,
        per_conn
    );
    assert!(
        held_round_trip < SOON,
        "a real user waited {held_round_trip:?}"
    );
    // Bounded: a half-open connection costs the gateway a socket and a small task, not a
    // session's buffers.
    assert!(
        per_conn < 256.0,
        "{per_conn:.1} KiB per half-open connection"
    );
    drop(held);
    drop(rt);
}

#[test]
fn channels_per_connection_are_capped() {
    let g = common::start_tuned(|_| String::new(), "max_channels_per_connection = 2");
    let env = &g.env;
    grant(env, "alice", "echo", "1h");
    let local = free_port();
    let mut fwd = common::local_forward(
        env,
        "alice",
        &format!("127.0.0.1:{local}:echo:{}", g.echo.port),
    )
    .stdin(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let connect = || {
        let deadline = Instant::now() + SOON;
        loop {
            match std::net::TcpStream::connect(("127.0.0.1", local)) {
                Ok(s) => {
                    s.set_read_timeout(Some(SOON)).unwrap();
                    return s;
                }
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("the forward never listened: {e}"),
            }
        }
    };
    let echo = |s: &mut std::net::TcpStream, bytes: &[u8]| -> Option<Vec<u8>> {
        s.write_all(bytes).ok()?;
        let mut buf = vec![0u8; bytes.len()];
        s.read_exact(&mut buf).ok()?;
        Some(buf)
    };
    let mut first = connect();
    assert_eq!(echo(&mut first, b"one").as_deref(), Some(&b"one"[..]));
    let mut second = connect();
    assert_eq!(echo(&mut second, b"two").as_deref(), Some(&b"two"[..]));
    // The third channel on the same connection is refused; ssh closes the local socket.
    let mut third = connect();
    assert_eq!(
        echo(&mut third, b"three"),
        None,
        "a third channel was opened"
    );
    env.eventually("the refusal in the gateway log", || {
        env.gw_log()
            .contains("forward refused, the connection holds its maximum")
    });
    // A closed channel gives its place back.
    drop(first);
    env.eventually("the slot given back", || {
        let mut again = connect();
        echo(&mut again, b"again").as_deref() == Some(&b"again"[..])
    });
    assert_eq!(echo(&mut second, b"still").as_deref(), Some(&b"still"[..]));
    fwd.kill().unwrap();
    fwd.wait().unwrap();
}

#[test]
fn a_client_that_stops_reading_holds_back_the_target() {
    // A target that writes as fast as it can and counts what the kernel took.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    std::thread::spawn(move || {
        if let Ok((mut conn, _)) = listener.accept() {
            let block = vec![b'x'; 64 * 1024];
            while conn.write_all(&block).is_ok() {
                counter.fetch_add(block.len() as u64, Ordering::SeqCst);
            }
        }
    });
    let g = common::start(&crate::support::tcp_target("flood", port));
    let env = &g.env;
    grant(env, "alice", "flood", "1h");
    let pid = gateway_pid(env);
    let rss_before = rss_kib(pid);
    // ssh -W with a stdout nobody reads: after the pipe fills, the client stops reading.
    let mut child = env
        .gw_command("alice", &["-W", &format!("flood:{port}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the target is held back: nothing more sent for a full second.
    let deadline = Instant::now() + SOON * 3;
    let mut last = 0;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = sent.load(Ordering::SeqCst);
        if now > 0 && now == last {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the target never stopped: {now} bytes so far"
        );
        last = now;
    }
    let rss_held = rss_kib(pid);
    eprintln!(
        "a stalled reader: the target got {} KiB out before it was held back; gateway RSS {} KiB -> {} KiB",
        last / 1024,
        rss_before,
        rss_held
    );
    // What is in flight is bounded by the socket buffers and the SSH window, not the
    // target's appetite.
    assert!(last < 64 << 20, "{last} bytes sent into a stalled reader");
    assert!(
        rss_held < rss_before + (64 << 10),
        "the gateway grew from {rss_before} to {rss_held} KiB"
    );
    // And the stream is intact once the client reads again.
    let mut out = child.stdout.take().unwrap();
    let mut buf = vec![0u8; 1 << 20];
    out.read_exact(&mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == b'x'));
    child.kill().unwrap();
    child.wait().unwrap();
}
