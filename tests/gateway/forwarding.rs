//! Forwarding under a grant: `ssh -L` to PostgreSQL with psql, `ssh -J` to sshd, `ssh -W` to a
//! TCP service, each audited with a start before any byte and an end with byte counts.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::common::{self, grant, Tunnel};
use crate::support::targets::{free_port, Postgres, Sshd};
use crate::support::{run, SOON};

#[test]
fn ssh_w_relays_and_is_audited() {
    let g = common::start("");
    let env = &g.env;
    let id = grant(env, "alice", "echo", "10m");
    let t = Tunnel::open(env, "alice", "echo:1");
    // echo:1 names the target but not its port: refused. The real one follows.
    let (code, err, _) = t.wait_cut();
    assert_ne!(code, 0);
    assert!(err.contains("reachable on port"), "{err}");

    let mut t = Tunnel::open(env, "alice", &format!("echo:{}", g.echo.port));
    assert_eq!(
        t.echo(b"hello through the bastion"),
        b"hello through the bastion"
    );
    assert_eq!(t.close(), 0);

    // By exact configured address too.
    let mut t = Tunnel::open(env, "alice", &format!("127.0.0.1:{}", g.echo.port));
    assert_eq!(t.echo(b"x"), b"x");
    assert_eq!(t.close(), 0);

    env.eventually("two sessions recorded", || {
        env.audit_events()
            .iter()
            .filter(|e| e["event"] == "session.ended")
            .count()
            == 2
    });
    let events = env.audit_events();
    let started = events
        .iter()
        .position(|e| e["event"] == "session.started")
        .unwrap();
    let ended = events
        .iter()
        .position(|e| e["event"] == "session.ended")
        .unwrap();
    assert!(started < ended);
    let s = &events[started];
    assert_eq!(s["user"], "alice");
    assert_eq!(s["target"], "echo");
    assert_eq!(s["grant"], id);
    assert_eq!(s["channel"], "direct-tcpip");
    assert!(s["fingerprint"].as_str().unwrap().starts_with("SHA256:"));
    assert!(s["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    let e = &events[ended];
    assert_eq!(e["bytes_in"], 25);
    assert_eq!(e["bytes_out"], 25);
    assert_eq!(e["end_reason"], "closed");
}

#[test]
fn ssh_l_to_a_real_postgres_with_psql() {
    let dir = tempfile::tempdir().unwrap();
    let pg = Postgres::start(dir.path());
    let g = common::start(&format!(
        "\n[[targets]]\nname = \"pg\"\nkind = \"tcp\"\naddress = \"127.0.0.1:{}\"\nlabels = {{ env = \"staging\" }}\n",
        pg.port
    ));
    let env = &g.env;
    grant(env, "alice", "pg", "10m");
    let local = free_port();
    let mut fwd = common::local_forward(env, "alice", &format!("{local}:pg:{}", pg.port))
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + SOON;
    while std::net::TcpStream::connect(("127.0.0.1", local)).is_err() {
        assert!(Instant::now() < deadline, "the forward never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = run(Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &local.to_string(),
            "-U",
            "postgres",
            "-tAc",
            "select 40 + 2",
        ])
        .env("PGCONNECT_TIMEOUT", "10"));
    let _ = fwd.kill();
    let _ = fwd.wait();
    out.ok();
    assert_eq!(out.stdout.trim(), "42");
}

#[test]
fn ssh_j_to_a_real_sshd() {
    let dir = tempfile::tempdir().unwrap();
    let mut sshd = None;
    let g = common::start_with(|env| {
        // With -J the session is end-to-end: the target trusts alice's own key.
        let key = std::fs::read_to_string(env.key("alice").with_extension("pub")).unwrap();
        let s = Sshd::start(dir.path(), &key);
        let target = format!(
            "\n[[targets]]\nname = \"web-1\"\nkind = \"ssh\"\naddress = \"127.0.0.1:{}\"\nlogin = \"{}\"\nhost_key = \"{}\"\nlabels = {{ env = \"staging\" }}\n",
            s.port, s.login, s.host_key
        );
        sshd = Some(s);
        target
    });
    let sshd = sshd.unwrap();
    let env = &g.env;
    // alice's own known_hosts knows the target's key for the end-to-end hop.
    let kh = env.path().join("gw_known_hosts");
    let mut known = std::fs::read_to_string(&kh).unwrap();
    known.push_str(&format!("[web-1]:{} {}\n", sshd.port, sshd.host_key));
    std::fs::write(&kh, known).unwrap();

    let jump = format!("alice@127.0.0.1:{}", env.gw_port());
    let hop = || {
        run(Command::new("ssh")
            .arg("-F")
            .arg(env.ssh_config("alice"))
            .args(["-J", &jump, "-p", &sshd.port.to_string()])
            .arg(format!("{}@web-1", sshd.login))
            .args(["echo", "reached"])
            .stdin(Stdio::null()))
    };
    // Without a grant the jump is refused.
    assert_ne!(hop().code, 0);
    grant(env, "alice", "web-1", "10m");
    let out = hop();
    out.ok();
    assert_eq!(out.stdout.trim(), "reached");
}

/// A client that goes away ends its forward at once, even when the target never says another
/// word: the session ends (and its grant and channel memory are freed) now, not when the grant
/// expires. Before, the relay waited for the target's side too.
#[test]
fn a_forward_whose_client_is_gone_ends_though_the_target_stays_silent() {
    // Takes connections and holds them: never reads, never writes, never closes.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in listener.incoming() {
            held.push(c);
        }
    });
    let g = common::start_with(|_| crate::support::tcp_target("silent", port));
    let env = &g.env;
    grant(env, "alice", "silent", "1h");
    let mut t = Tunnel::open(env, "alice", &format!("silent:{port}"));
    env.eventually("the forward's start", || {
        env.audit_events()
            .iter()
            .any(|e| e["event"] == "session.started" && e["target"] == "silent")
    });
    t.child.kill().unwrap();
    let _ = t.child.wait();
    env.eventually("the forward's end", || {
        env.audit_events()
            .iter()
            .any(|e| e["event"] == "session.ended" && e["target"] == "silent")
    });
}
