//! Every channel the gateway refuses an authenticated user is an audit event
//! (`session.refused`): forwards with no grant, to a port not granted or to an address that is
//! no target, and recorded sessions on an unknown target, a forwarding-only target or with no
//! grant. A user looping refused channels costs the log ten events a minute and a count.

use std::io::Read;
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::common::{self, grant, Tunnel};
use super::recorded;
use crate::support::targets::free_port;
use crate::support::{run, Env, SOON};

/// `ssh -N -L PORT:DEST` as `user`, once it listens.
struct LocalForward {
    child: Child,
    port: u16,
}

impl LocalForward {
    fn open(env: &Env, user: &str, dest: &str) -> LocalForward {
        let port = free_port();
        let child = common::local_forward(env, user, &format!("{port}:{dest}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + SOON;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "ssh -L never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
        LocalForward { child, port }
    }

    /// Connect through the forward and wait for ssh to drop the connection: the gateway
    /// refused its channel. (The connection made by `open` to see it listen was one too.)
    fn refused_once(&self) {
        let mut c = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        c.set_read_timeout(Some(SOON)).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(
            c.read(&mut buf).unwrap_or(0),
            0,
            "the channel was not refused"
        );
    }
}

impl Drop for LocalForward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `session.refused` events, as `audit log --kind session.refused` lists them.
pub(super) fn refusals(env: &Env) -> Vec<Value> {
    let out = env.admin(
        "audrey",
        &[
            "--json",
            "audit",
            "log",
            "--kind",
            "session.refused",
            "--limit",
            "100000",
        ],
    );
    out.ok();
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Wait for the `session.refused` event whose destination is `dest`.
fn refusal_of(env: &Env, dest: &str) -> Value {
    let mut found = Value::Null;
    env.eventually(&format!("the refusal of {dest}"), || {
        match refusals(env).into_iter().find(|e| e["destination"] == dest) {
            Some(e) => {
                found = e;
                true
            }
            None => false,
        }
    });
    found
}

#[test]
fn each_kind_of_refused_channel_is_an_audit_event() {
    let r = recorded::start();
    let env = &r.g.env;
    let (echo, stray) = (r.g.echo.port, r.g.stray.port);

    // A forward with no grant (-L).
    let no_grant = format!("echo:{echo}");
    LocalForward::open(env, "alice", &no_grant).refused_once();
    let e = refusal_of(env, &no_grant);
    assert_eq!(e["reason"], "no_grant", "{e}");
    assert_eq!(e["channel"], "direct-tcpip");
    assert_eq!(e["user"], "alice");
    assert_eq!(e["target"], "echo");
    assert_eq!(e["gateway"], "gw-1");
    assert_eq!(e["actor"], "gw-1");
    assert!(
        e["client"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{e}"
    );
    assert!(e["fingerprint"].as_str().unwrap().starts_with("SHA256:"));
    assert!(e["message"]
        .as_str()
        .unwrap()
        .contains("no active grant for alice on echo"));

    // A forward to a port the target is not on (-L), under a grant for that target.
    grant(env, "alice", "echo", "10m");
    let wrong_port = format!("echo:{}", free_port());
    LocalForward::open(env, "alice", &wrong_port).refused_once();
    let e = refusal_of(env, &wrong_port);
    assert_eq!(e["reason"], "port_not_allowed", "{e}");
    assert_eq!(e["target"], "echo");

    // An address that is no target (-W): no target named.
    let unknown = format!("127.0.0.1:{stray}");
    let (code, _, _) = Tunnel::open(env, "alice", &unknown).wait_cut();
    assert_ne!(code, 0);
    let e = refusal_of(env, &unknown);
    assert_eq!(e["reason"], "unknown_target", "{e}");
    assert!(e.get("target").is_none(), "{e}");
    assert_eq!(r.g.stray.connections(), 0);

    // Recorded sessions: an unknown target, a forwarding-only one, and no grant.
    let login = |target: &str| {
        run(std::process::Command::new("ssh")
            .arg("-F")
            .arg(env.ssh_config("alice"))
            .args(["-p", &env.gw_port()])
            .arg(format!("alice:{target}@127.0.0.1"))
            .arg("true"))
    };
    login("unknown").fails_with("is not a configured target");
    let e = refusal_of(env, "unknown");
    assert_eq!(
        (e["reason"].as_str(), e["channel"].as_str()),
        (Some("unknown_target"), Some("session"))
    );
    login("echo").fails_with("forwarding-only");
    let e = refusal_of(env, "echo");
    assert_eq!(e["reason"], "forwarding_only", "{e}");
    assert_eq!(e["target"], "echo");
    login("web-1").fails_with("no active grant for alice on web-1");
    let e = refusal_of(env, "web-1");
    assert_eq!(e["reason"], "no_grant", "{e}");
    assert_eq!(e["target"], "web-1");

    // Filters: by user, and by target.
    let by_user = env.admin(
        "audrey",
        &[
            "--json", "audit", "log", "--kind", "session", "--user", "dave",
        ],
    );
    by_user.ok();
    assert!(by_user.stdout.trim().is_empty(), "{}", by_user.stdout);
    let by_target = env.admin(
        "audrey",
        &[
            "--json",
            "audit",
            "log",
            "--kind",
            "session.refused",
            "--target",
            "web-1",
        ],
    );
    assert_eq!(by_target.stdout.lines().count(), 1, "{}", by_target.stdout);
    // No refusal numbered a session.
    let sessions = env.admin("ada", &["--json", "sessions"]).json();
    assert_eq!(sessions["sessions"].as_array().unwrap().len(), 0);
    env.admin("audrey", &["audit", "verify"]).ok();
}

#[test]
fn a_flood_of_refused_channels_is_counted_past_ten_a_minute() {
    let g = common::start("");
    let env = &g.env;
    // An address that is no target: refused at once (a missing grant would wait a second for
    // one that may be on its way).
    let dest = format!("127.0.0.1:{}", g.stray.port);
    let forward = LocalForward::open(env, "alice", &dest);
    // 40 in all, with the one `open` made.
    for _ in 0..39 {
        forward.refused_once();
    }
    let mut events = Vec::new();
    env.eventually("the counted refusals", || {
        events = refusals(env);
        events
            .iter()
            .filter_map(|e| e["count"].as_u64())
            .sum::<u64>()
            == 30
    });
    let one_by_one: Vec<&Value> = events.iter().filter(|e| e["count"].is_null()).collect();
    assert_eq!(one_by_one.len(), 10, "{events:#?}");
    let counted: Vec<&Value> = events.iter().filter(|e| e["count"].is_u64()).collect();
    for c in &counted {
        assert_eq!(c["user"], "alice");
        assert_eq!(c["event"], "session.refused");
        assert!(c["first_at"].is_string() && c["last_at"].is_string());
        assert_eq!(c["reasons"]["unknown_target"], c["count"], "{c}");
    }
    // One count per flush interval, not one per refusal.
    assert!(counted.len() <= 3, "{counted:#?}");
    assert_eq!(g.stray.connections(), 0);
}
