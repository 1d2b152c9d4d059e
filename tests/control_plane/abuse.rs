//! Silent and garbage-sending peers never stall the door for a real user.

use std::io::Write;
use std::net::TcpStream;

use crate::support::Env;

#[test]
fn silent_and_garbage_peers_do_not_block_a_real_user() {
    let env = Env::start();
    let mut held = Vec::new();
    for i in 0..100 {
        let mut s = TcpStream::connect(&env.addr).unwrap();
        if i % 2 == 0 {
            // Garbage instead of an SSH version line.
            let _ = s.write_all(b"GET / HTTP/1.1\r\n\r\n\x00\xff\xfe garbage");
        }
        held.push(s);
    }
    let start = std::time::Instant::now();
    env.ssh("alice", &["whoami"]).ok();
    assert!(
        start.elapsed() < crate::support::SOON,
        "a real user waited behind 100 idle peers"
    );
    drop(held);
}

#[test]
fn approver_limits_are_configurable() {
    use std::io::Read;

    let mut env = Env::prepare("24h", "");
    let cfg = std::fs::read_to_string(&env.config).unwrap().replace(
        "request_ttl = \"24h\"",
        "request_ttl = \"24h\"\nlogin_grace = \"1s\"\nmax_connections_per_source = 3",
    );
    std::fs::write(&env.config, cfg).unwrap();
    env.start_approver();
    // From 127.0.0.2, so that the readiness probe's connection (from 127.0.0.1, perhaps not
    // yet closed on the server's side) does not share the budget.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let addr: std::net::SocketAddr = env.addr.parse().unwrap();
    let from_two = || -> TcpStream {
        rt.block_on(async {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
            let s = socket.connect(addr).await.unwrap();
            s.into_std().unwrap()
        })
    };
    let silent: Vec<TcpStream> = (0..3).map(|_| from_two()).collect();
    // The fourth from the same address is dropped at once, with a log line.
    let mut fourth = from_two();
    fourth.set_nonblocking(false).unwrap();
    fourth.set_read_timeout(Some(crate::support::SOON)).unwrap();
    let mut buf = [0u8; 64];
    assert!(matches!(fourth.read(&mut buf), Ok(0) | Err(_)));
    env.eventually("the budget log line", || {
        env.log().contains("3 connections from 127.0.0.2 already")
    });
    // The silent three are dropped at the login grace.
    for mut s in silent {
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(crate::support::SOON)).unwrap();
        let start = std::time::Instant::now();
        let mut got = Vec::new();
        // The server's version line comes first; then the end of the stream.
        let _ = s.read_to_end(&mut got);
        assert!(start.elapsed() < crate::support::SOON);
        assert!(got.starts_with(b"SSH-2.0-"), "{got:?}");
    }
    env.eventually("the login-grace log line", || {
        env.log().contains("within 1s; dropped")
    });
    let start = std::time::Instant::now();
    env.ssh("alice", &["whoami"]).ok();
    assert!(start.elapsed() < crate::support::SOON);
}
