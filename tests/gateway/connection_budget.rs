//! An ordinary user's key is no licence to fill a server: idle authenticated connections
//! held by users count against a per-user cap and, together, leave a reserve that admins and
//! gateways always get into. Driven with stock `ssh -N` holding connections to the approver.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::common::{grant, Tunnel};
use crate::support::{targets::Echo, tcp_target, Env};

/// Stock `ssh -N` to the approver as `user`, held open; `None` if it was refused.
fn hold(env: &Env, user: &str) -> Option<Child> {
    let port = env.addr.rsplit(':').next().unwrap().to_string();
    let mut child = Command::new("ssh")
        .args(["-N", "-p", &port, "-i"])
        .arg(env.key(user))
        .args([
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            env.path().join("known_hosts").display()
        ))
        .args(["-o", "LogLevel=ERROR", "-F", "/dev/null"])
        .arg(format!("{user}@127.0.0.1"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Authenticated and holding, or refused: tell by whether it is still running a moment on.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1500) {
        if child.try_wait().unwrap().is_some() {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(child)
}

#[test]
fn users_holding_idle_connections_leave_room_for_admins_and_gateways() {
    let echo = Echo::start();
    let mut env = Env::prepare("24h", &tcp_target("echo", echo.port));
    let cfg = std::fs::read_to_string(&env.config).unwrap().replacen(
        "request_ttl = \"24h\"",
        "request_ttl = \"24h\"\nmax_connections = 10\nreserved_connections = 4\nmax_connections_per_user = 3\nidle_timeout = \"1h\"",
        1,
    );
    std::fs::write(&env.config, cfg).unwrap();
    env.start_approver();
    env.start_gateway();
    grant(&env, "alice", "echo", "1h");

    // alice holds her maximum; a fourth is refused.
    let mut held: Vec<Child> = (0..3)
        .map(|_| hold(&env, "alice").expect("alice's first three connections"))
        .collect();
    assert!(hold(&env, "alice").is_none(), "alice got past her cap");
    // Other users fill what ordinary users may take together (10 - 4 reserved, less the
    // gateway's own connections, which do not count as ordinary).
    for user in ["dave", "bob"] {
        for _ in 0..3 {
            if let Some(c) = hold(&env, user) {
                held.push(c);
            }
        }
    }
    assert!(
        hold(&env, "carol").is_none(),
        "an ordinary user got into the reserve"
    );

    // An admin still gets in.
    let started = Instant::now();
    env.admin("ada", &["status"]).ok();
    eprintln!(
        "admin connected in {:?} with users holding their maximum",
        started.elapsed()
    );

    // And so does a gateway (restarted, it reconnects), whose forwards keep working.
    env.kill9_gateway();
    env.start_gateway();
    let mut t = Tunnel::open(&env, "alice", &format!("echo:{}", echo.port));
    assert_eq!(t.echo(b"x"), b"x");
    t.close();
    assert!(
        env.log().contains("max_connections_per_user"),
        "the refusal is logged with its reason:\n{}",
        env.log()
    );
    for mut c in held {
        let _ = c.kill();
        let _ = c.wait();
    }
}
