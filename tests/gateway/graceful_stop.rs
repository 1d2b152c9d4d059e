//! SIGTERM, as systemd's stop sends it, with live forwarded and recorded sessions: each is told
//! "gateway stopping" and ended with that reason in the audit log, the recording arrives
//! whole, the gateway exits 0, and after a restart nothing is reported twice.

use std::process::Stdio;
use std::time::Duration;

use super::common::{grant, session_events, Tunnel};
use super::recorded;

#[test]
fn sigterm_ends_every_session_with_gateway_stopping_and_loses_nothing() {
    let rec = recorded::start();
    let mut env = rec.g.env;
    grant(&env, "alice", "echo", "10m");
    grant(&env, "alice", "web-1", "10m");
    let mut forward = Tunnel::open(&env, "alice", &format!("echo:{}", rec.g.echo.port));
    assert_eq!(forward.echo(b"x"), b"x");
    // A recorded terminal session that would run for a minute.
    let mut c = std::process::Command::new("ssh");
    c.arg("-F")
        .arg(env.ssh_config("alice"))
        .args([
            "-tt",
            "-p",
            &env.gw_port(),
            "alice:web-1@127.0.0.1",
            "echo started; sleep 60",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let shell = c.spawn().unwrap();
    env.eventually("both sessions live", || {
        let out = env.admin("ada", &["--json", "sessions", "--live"]);
        out.json()["sessions"].as_array().map(|a| a.len()) == Some(2)
    });
    let live = env.admin("ada", &["--json", "sessions", "--live"]).json();
    let ids: Vec<String> = live["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    // The shell's session must have put something in its recording first.
    std::thread::sleep(Duration::from_millis(500));

    let (status, took) = env.stop_gateway();
    eprintln!("gateway exited {status} {took:?} after SIGTERM with 2 live sessions");
    assert!(status.success(), "{status}");
    let (code, err, _) = forward.wait_cut();
    assert_eq!(code, 255, "{err}");
    assert!(err.contains("gateway stopping"), "{err}");
    let out = shell.wait_with_output().unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    if !screen.contains("gateway stopping") {
        let _ = std::fs::write("/tmp/graceful-gw.log", env.gw_log());
    }
    assert!(
        screen.contains("gateway stopping"),
        "{screen}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let ended = |env: &crate::support::Env, id: &str| {
        session_events(env, id)
            .iter()
            .filter(|e| e["event"] == "session.ended")
            .map(|e| e["end_reason"].as_str().unwrap_or("").to_string())
            .collect::<Vec<_>>()
    };
    for id in &ids {
        assert_eq!(ended(&env, id), vec!["gateway-stopping"], "{id}");
    }
    // The recording arrived whole: verify re-hashes it against the end event.
    env.admin("audrey", &["audit", "verify"]).ok();
    let shell_id = ids
        .iter()
        .find(|id| {
            session_events(&env, id)
                .iter()
                .any(|e| e["event"] == "session.ended" && e["recording"].is_object())
                || env
                    .admin("audrey", &["audit", "export", id])
                    .stdout
                    .contains("started")
        })
        .expect("the shell's recording at the approver");
    eprintln!("recording of {shell_id} delivered");

    // After a restart, nothing is reported a second time.
    env.start_gateway();
    std::thread::sleep(Duration::from_secs(2));
    for id in &ids {
        assert_eq!(ended(&env, id).len(), 1, "{id}: {:?}", ended(&env, id));
    }
}
