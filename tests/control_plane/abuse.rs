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
