//! Compliance: a recorded session's export is asciicast v2 holding its output, replay plays it
//! back, `audit sessions` lists it, and `audit verify` catches one changed byte of it.

use std::process::Command;

use super::common::grant;
use super::recorded;
use crate::support::{run, BIN};

#[test]
fn export_replay_list_and_verify_a_recording() {
    let r = recorded::start();
    let env = &r.g.env;
    grant(env, "alice", "web-1", "10m");
    let out = r.in_pty(
        80,
        24,
        "alice:web-1@127.0.0.1 'echo recorded-marker-$((40+2))'",
    );
    assert!(out.stdout.contains("recorded-marker-42"), "{}", out.stdout);

    let mut session = String::new();
    env.eventually("the recording to reach the approver", || {
        let ended = env
            .audit_events()
            .into_iter()
            .find(|e| e["event"] == "session.ended" && e["recording_sha256"].is_string());
        match ended {
            Some(e) => {
                session = e["session"].as_str().unwrap().to_string();
                env.portcullis("audrey", "audit", &["export", &session])
                    .code
                    == 0
            }
            None => false,
        }
    });

    let export = env.portcullis("audrey", "audit", &["export", &session]);
    export.ok();
    let mut lines = export.stdout.lines();
    let header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(header["version"], 2);
    assert_eq!(header["width"], 80);
    assert_eq!(header["height"], 24);
    let events: Vec<serde_json::Value> = lines.map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(events
        .iter()
        .all(|e| e[0].is_f64() && e[1].is_string() && e[2].is_string()));
    let output: String = events
        .iter()
        .filter(|e| e[1] == "o")
        .map(|e| e[2].as_str().unwrap())
        .collect();
    assert!(output.contains("recorded-marker-42"), "{output}");

    let replay = env.portcullis("audrey", "audit", &["replay", &session, "--speed", "50"]);
    replay.ok();
    assert!(
        replay.stdout.contains("recorded-marker-42"),
        "{}",
        replay.stdout
    );

    let listed = env.portcullis(
        "audrey",
        "audit",
        &["--json", "sessions", "--user", "alice"],
    );
    listed.ok();
    assert!(listed.json()["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["id"] == session.as_str()));
    // Not for everyone.
    env.portcullis("alice", "audit", &["export", &session])
        .fails_with("admins or auditors");

    env.portcullis("audrey", "audit", &["verify"]).ok();

    // One byte of the stored recording changed: verify names it, online and offline.
    let mut env_mut = r;
    env_mut.g.env.kill9();
    {
        let file = env_mut
            .g
            .env
            .path()
            .join(format!("approver/recordings/{session}.cast"));
        let mut cast = std::fs::read(&file).unwrap();
        let n = cast.len() - 5;
        cast[n] ^= 0x01;
        std::fs::write(&file, &cast).unwrap();
    }
    let offline = run(Command::new(BIN)
        .args(["audit", "verify", "--data-dir"])
        .arg(env_mut.g.env.path().join("approver")));
    assert_eq!(offline.code, 1);
    assert!(
        offline
            .stderr
            .contains(&format!("recording of session {session} was altered")),
        "{}",
        offline.stderr
    );
    env_mut.g.env.start_approver();
    env_mut
        .g
        .env
        .portcullis("audrey", "audit", &["verify"])
        .fails_with("was altered");
}

/// The session id of the first ended session, once its end (and recording, if `recorded`)
/// reached the approver.
fn ended_session(env: &crate::support::Env, recorded: bool) -> serde_json::Value {
    let mut found = serde_json::Value::Null;
    env.eventually("the session's end event", || {
        match env
            .audit_events()
            .into_iter()
            .find(|e| e["event"] == "session.ended")
        {
            Some(e) if !recorded || e["recording_sha256"].is_string() => {
                found = e;
                true
            }
            _ => false,
        }
    });
    found
}

#[test]
fn exec_data_is_kept_where_record_data_is_set() {
    let r = recorded::start_opts(false, true);
    let env = &r.g.env;
    grant(env, "alice", "web-1", "10m");
    let out = run(r
        .ssh(&[], &["echo secret-$((1+1))"])
        .stdin(std::process::Stdio::null()));
    out.ok();
    let ended = ended_session(env, true);
    let session = ended["session"].as_str().unwrap().to_string();
    env.eventually("the data recording at the approver", || {
        env.portcullis("audrey", "audit", &["export", &session])
            .code
            == 0
    });
    let export = env.portcullis("audrey", "audit", &["export", &session]);
    export.ok();
    let header: serde_json::Value =
        serde_json::from_str(export.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(header["version"], 2);
    assert!(export.stdout.contains("secret-2"), "{}", export.stdout);
    let replay = env.portcullis("audrey", "audit", &["replay", &session, "--speed", "50"]);
    replay.ok();
    assert!(replay.stdout.contains("secret-2"), "{}", replay.stdout);
    env.portcullis("audrey", "audit", &["verify"]).ok();
}

#[test]
fn exec_data_is_not_kept_by_default_but_the_command_is() {
    let r = recorded::start();
    let env = &r.g.env;
    grant(env, "alice", "web-1", "10m");
    run(r
        .ssh(&[], &["echo not-kept"])
        .stdin(std::process::Stdio::null()))
    .ok();
    let ended = ended_session(env, false);
    assert!(ended["recording_sha256"].is_null(), "{ended}");
    let session = ended["session"].as_str().unwrap();
    let started = env
        .audit_events()
        .into_iter()
        .find(|e| e["event"] == "session.started" && e["session"] == session)
        .unwrap();
    assert_eq!(started["channel"], "exec: echo not-kept");
    assert!(ended["bytes_out"].as_u64().unwrap() >= 9);
}

/// Run `c` to success, reading its standard output as it comes: its first bytes and how many
/// there were in all.
fn count_output(mut c: Command) -> (Vec<u8>, u64) {
    use std::io::Read as _;
    let mut child = c
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let (mut buf, mut first, mut total) = (vec![0u8; 1 << 20], Vec::new(), 0u64);
    loop {
        let n = out.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        if first.len() < 256 {
            first.extend_from_slice(&buf[..n.min(256)]);
        }
        total += n as u64;
    }
    assert!(child.wait().unwrap().success(), "{c:?}");
    (first, total)
}

/// The approver's peak resident memory (VmHWM), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// A data recording bigger than the approver used to take in one piece (256 MiB, held in
/// memory) reaches it whole: the gateway sends it from its file and the approver writes it as
/// it arrives, so neither holds it; `audit verify` hashes it in pieces, and `audit export` and
/// `audit replay` convert and send it in pieces. Before, such a recording was refused on every try and
/// held up every report behind it.
#[test]
fn a_recording_larger_than_memory_arrives_and_exports_in_pieces() {
    // Just over the 256 MiB the approver once took at most.
    const MIB: u64 = 260;
    let r = recorded::start_opts(false, true);
    let env = &r.g.env;
    grant(env, "alice", "web-1", "10m");
    let approver = env.approver.as_ref().unwrap().id();
    let before = peak_rss_kib(approver);
    let status = r
        .ssh(&[], &[&format!("yes abcdefgh | head -c {MIB}M")])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let ended = ended_session(env, true);
    let size = ended["recording_size"].as_u64().unwrap();
    assert!(size > MIB << 20, "{ended}");
    let session = ended["session"].as_str().unwrap().to_string();
    let stored = env
        .path()
        .join("approver/recordings")
        .join(format!("{session}.data"));
    env.eventually("the whole recording at the approver", || {
        std::fs::metadata(&stored).is_ok_and(|m| m.len() == size)
    });
    env.portcullis("audrey", "audit", &["verify"]).ok();

    // The export and the replay, counted as they come rather than held.
    let (first, total) =
        count_output(env.portcullis_command("audrey", "audit", &["export", &session]));
    let header = String::from_utf8_lossy(&first);
    assert!(
        header.starts_with('{') && header.contains("\"version\":2"),
        "{header}"
    );
    // Every byte came out (each "abcdefgh\n" escaped as "abcdefgh\\n" in the events).
    assert!(
        total > size,
        "{total} bytes exported from a {size}-byte recording"
    );
    let (first, total) = count_output(env.portcullis_command(
        "audrey",
        "audit",
        &["replay", &session, "--speed", "1000"],
    ));
    assert!(
        first.starts_with(b"abcdefgh\n"),
        "{}",
        String::from_utf8_lossy(&first)
    );
    assert_eq!(
        total,
        MIB << 20,
        "the replay shows the output, byte for byte"
    );

    // The approver's peak grew by a few MiB of buffers, not by the recording's size.
    let grown = peak_rss_kib(approver).saturating_sub(before);
    eprintln!("approver peak memory: grew by {grown} KiB for a {size}-byte recording");
    assert!(
        grown < 64 * 1024,
        "the approver's peak memory grew by {grown} KiB for a {size}-byte recording"
    );
}
