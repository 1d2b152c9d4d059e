//! A user who stops reading a relayed command's output (`ssh bastion audit export S | sleep`)
//! must hold up nothing but that command: the watch stream carries a revocation to the cut in
//! the usual time, and session reports keep flowing to the approver.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_core::codec;
use portcullis_core::model::SessionReport;

use super::common::{self, grant, session_events, Tunnel};
use crate::support::Env;

/// A 24 MiB asciicast recording stored at the approver for session `gw-1-t-1`, sent as the
/// gateway would (its own report numbering, instance `t`): far more than every buffer between
/// the approver and a user who does not read (russh's channel queues and windows, the pipe).
fn store_big_recording(env: &Env) -> String {
    let mut cast = b"{\"version\": 2, \"width\": 80, \"height\": 24}\n".to_vec();
    let line = format!("[0.0, \"o\", \"{}\"]\n", "x".repeat(1000));
    while cast.len() < 24 * 1024 * 1024 {
        cast.extend_from_slice(line.as_bytes());
    }
    let path = env.path().join("big.cast");
    std::fs::write(&path, &cast).unwrap();
    let sum = Command::new("sha256sum").arg(&path).output().unwrap();
    let sha = String::from_utf8_lossy(&sum.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let report = codec::frame(&codec::encode(&SessionReport::Recorded {
        session: "gw-1-t-1".into(),
        sha256: sha,
        size: cast.len() as u64,
        format: "cast".into(),
    }));
    let input = [report, cast].concat();
    let r = env.as_gw1("report --seq 1 --instance t", &input);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    "gw-1-t-1".into()
}

#[test]
fn a_user_who_stops_reading_a_relayed_command_delays_no_revocation() {
    let g = common::start("");
    let env = &g.env;
    let session = store_big_recording(env);
    let id = grant(env, "alice", "echo", "10m");
    let mut t = Tunnel::open(env, "alice", &format!("echo:{}", g.echo.port));
    assert_eq!(t.echo(b"x"), b"x");

    // An auditor exports the recording through the gateway and never reads the output.
    let mut stalled = Command::new("ssh")
        .arg("-F")
        .arg(env.ssh_config("audrey"))
        .args(["-p", &env.gw_port(), "audrey@127.0.0.1", "audit", "export"])
        .arg(&session)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Let every buffer on the way fill.
    std::thread::sleep(Duration::from_secs(3));

    env.admin("ada", &["revoke", &id.to_string()]).ok();
    let revoked = Instant::now();
    let (code, err, _) = t.wait_cut();
    let took = revoked.elapsed();
    eprintln!("revocation cut the forward {took:?} after revoke returned, with a stalled reader");
    assert_eq!(code, 255, "{err}");
    assert!(err.contains("revoked"), "{err}");
    assert!(took < Duration::from_secs(2), "cut only after {took:?}");

    // Reports still flow: the forward's end reaches the audit log.
    let live = env.admin("ada", &["--json", "sessions"]);
    let forward = live.json()["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["user"] == "alice")
        .map(|s| s["id"].as_str().unwrap().to_string())
        .unwrap();
    env.eventually("the forward's end event", || {
        session_events(env, &forward)
            .iter()
            .any(|e| e["event"] == "session.ended" && e["end_reason"] == "revoked")
    });
    let _ = stalled.kill();
    let _ = stalled.wait();
}
