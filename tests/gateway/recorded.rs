//! Recorded sessions through the gateway to a real sshd: exec, pty, scp, sftp, warnings,
//! cuts with the reason on screen, extension by a second grant, and refusal on a wrong pin.

use std::process::{Command, Stdio};

use super::common::{self, grant, GwEnv};
use crate::support::targets::Sshd;
use crate::support::{run, Out};

pub struct Rec {
    pub g: GwEnv,
    /// Kept alive for the test: dropping it stops sshd.
    pub _sshd: Sshd,
    _dir: tempfile::TempDir,
}

/// An environment with `web-1`, a real sshd that trusts the gateway's client key, pinned with
/// `host_key` (the real one unless told otherwise).
pub fn start_with_pin(wrong_pin: bool) -> Rec {
    start_opts(wrong_pin, false)
}

/// As [`start_with_pin`], optionally with `record_data = true` on web-1.
pub fn start_opts(wrong_pin: bool, record_data: bool) -> Rec {
    start_on_disk(wrong_pin, record_data, None)
}

/// As [`start_opts`], optionally with the gateway's recordings on a disk of this many KiB.
pub fn start_on_disk(wrong_pin: bool, record_data: bool, recordings_kib: Option<u64>) -> Rec {
    let dir = tempfile::tempdir().unwrap();
    let mut sshd = None;
    let g = common::start_full(
        |env| {
            let gw_key =
                std::fs::read_to_string(env.path().join("gateway/client_key.pub")).unwrap();
            let s = Sshd::start(dir.path(), &gw_key);
            let pin = if wrong_pin {
                crate::support::keygen(env.path(), "not_the_target")
            } else {
                s.host_key.clone()
            };
            let t = format!(
            "\n[[targets]]\nname = \"web-1\"\nkind = \"ssh\"\naddress = \"127.0.0.1:{}\"\nlogin = \"{}\"\nhost_key = \"{}\"\nlabels = {{ env = \"staging\" }}\nrecord_data = {record_data}\n",
            s.port, s.login, pin
        );
            sshd = Some(s);
            t
        },
        "",
        recordings_kib,
    );
    Rec {
        g,
        _sshd: sshd.unwrap(),
        _dir: dir,
    }
}

pub fn start() -> Rec {
    start_with_pin(false)
}

impl Rec {
    /// `ssh [opts] -p GW alice:web-1@127.0.0.1 [command]`.
    pub fn ssh(&self, opts: &[&str], command: &[&str]) -> Command {
        let env = &self.g.env;
        let mut c = Command::new("ssh");
        c.arg("-F")
            .arg(env.ssh_config("alice"))
            .args(["-p", &env.gw_port()])
            .args(opts)
            .arg("alice:web-1@127.0.0.1")
            .args(command);
        c
    }

    /// Run through a pseudo-terminal of a known size (`script` gives ssh a real tty).
    pub fn in_pty(&self, cols: u32, rows: u32, ssh_args: &str) -> Out {
        let env = &self.g.env;
        let line = format!(
            "stty cols {cols} rows {rows}; ssh -tt -F {} -p {} {ssh_args}",
            env.ssh_config("alice").display(),
            env.gw_port()
        );
        run(Command::new("script")
            .args(["-q", "-e", "-c", &line, "/dev/null"])
            .env("TERM", "xterm-256color")
            .stdin(Stdio::null()))
    }
}

#[test]
fn exec_passes_exit_status_and_keeps_stderr_apart() {
    let r = start();
    grant(&r.g.env, "alice", "web-1", "10m");
    let out = run(r
        .ssh(&[], &["echo to-stdout; echo to-stderr >&2; exit 3"])
        .stdin(Stdio::null()));
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "to-stdout");
    assert!(out.stderr.contains("to-stderr"), "{}", out.stderr);
    assert!(!out.stdout.contains("to-stderr"));
}

#[test]
fn no_grant_no_session() {
    let r = start();
    let out = run(r.ssh(&[], &["true"]).stdin(Stdio::null()));
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("no active grant for alice on web-1"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_pty_gets_term_and_window_size_and_is_recorded() {
    let r = start();
    let env = &r.g.env;
    grant(env, "alice", "web-1", "10m");
    let out = r.in_pty(
        100,
        40,
        "alice:web-1@127.0.0.1 'echo term=$TERM; stty size'",
    );
    assert!(out.stdout.contains("term=xterm-256color"), "{}", out.stdout);
    assert!(out.stdout.contains("40 100"), "{}", out.stdout);
    env.eventually("the recorded end event", || {
        env.audit_events().iter().any(|e| {
            e["event"] == "session.ended"
                && e["recording_sha256"]
                    .as_str()
                    .is_some_and(|s| s.len() == 64)
        })
    });
}

#[test]
fn scp_both_ways_is_byte_exact() {
    let r = start();
    let env = &r.g.env;
    grant(env, "alice", "web-1", "10m");
    let data: Vec<u8> = (0..6 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let local = env.path().join("upload.bin");
    std::fs::write(&local, &data).unwrap();
    let remote_dir = crate::support::targets::shared_dir();
    let remote = remote_dir.path().join("on-target.bin");
    let scp = |from: String, to: String| {
        run(Command::new("scp")
            .arg("-F")
            .arg(env.ssh_config("alice"))
            .args(["-P", &env.gw_port(), "-o", "User=alice:web-1"])
            .arg(from)
            .arg(to)
            .stdin(Stdio::null()))
    };
    scp(
        local.display().to_string(),
        format!("127.0.0.1:{}", remote.display()),
    )
    .ok();
    assert_eq!(std::fs::read(&remote).unwrap(), data, "upload differs");
    let back = env.path().join("download.bin");
    scp(
        format!("127.0.0.1:{}", remote.display()),
        back.display().to_string(),
    )
    .ok();
    assert_eq!(std::fs::read(&back).unwrap(), data, "download differs");
}

#[test]
fn sftp_put_and_get() {
    let r = start();
    let env = &r.g.env;
    grant(env, "alice", "web-1", "10m");
    let remote_dir = crate::support::targets::shared_dir();
    let src = env.path().join("put.txt");
    std::fs::write(&src, "sftp through the bastion\n").unwrap();
    let got = env.path().join("got.txt");
    let batch = env.path().join("batch");
    std::fs::write(
        &batch,
        format!(
            "put {} {rd}/put.txt\nget {rd}/put.txt {}\n",
            src.display(),
            got.display(),
            rd = remote_dir.path().display()
        ),
    )
    .unwrap();
    run(Command::new("sftp")
        .arg("-F")
        .arg(env.ssh_config("alice"))
        .args(["-P", &env.gw_port(), "-o", "User=alice:web-1", "-b"])
        .arg(&batch)
        .arg("127.0.0.1")
        .stdin(Stdio::null()))
    .ok();
    assert_eq!(
        std::fs::read_to_string(&got).unwrap(),
        "sftp through the bastion\n"
    );
}

#[test]
fn a_long_session_is_warned_then_cut_with_the_reason_on_screen() {
    let r = start();
    let env = &r.g.env;
    // The test gateway warns 2 s before the end.
    grant(env, "alice", "web-1", "4s");
    let out = r.in_pty(
        80,
        24,
        "alice:web-1@127.0.0.1 'echo started; sleep 30; echo never'",
    );
    assert!(out.stdout.contains("started"), "{}", out.stdout);
    assert!(
        out.stdout.contains("grant on web-1 ends in"),
        "no warning: {}",
        out.stdout
    );
    assert!(out.stdout.contains("expired"), "no reason: {}", out.stdout);
    assert!(!out.stdout.contains("never"));
}

#[test]
fn a_second_grant_extends_the_session_without_a_disconnect() {
    let r = start();
    let env = &r.g.env;
    grant(env, "alice", "web-1", "3s");
    let child = r
        .ssh(&[], &["sleep 6; echo survived"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1000));
    grant(env, "alice", "web-1", "10m");
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "survived");
}

#[test]
fn a_wrong_pinned_host_key_refuses_the_session() {
    let r = start_with_pin(true);
    let env = &r.g.env;
    grant(env, "alice", "web-1", "10m");
    let out = run(r.ssh(&[], &["echo reached"]).stdin(Stdio::null()));
    assert_ne!(out.code, 0);
    assert!(!out.stdout.contains("reached"));
    assert!(
        out.stderr.contains("host key does not match"),
        "{}",
        out.stderr
    );
    env.eventually("the mismatch audit event", || {
        env.audit_events()
            .iter()
            .any(|e| e["event"] == "target.host_key_mismatch" && e["target"] == "web-1")
    });
}

#[test]
fn recorded_sessions_are_listed_live_and_can_be_killed() {
    let r = start();
    let env = &r.g.env;
    grant(env, "alice", "web-1", "10m");
    let child = r
        .ssh(&[], &["echo up; sleep 30"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut id = String::new();
    env.eventually("the live recorded session", || {
        let out = env.admin("ada", &["--json", "sessions", "--live"]);
        match out.json()["sessions"][0]["id"].as_str() {
            Some(s) => {
                id = s.to_string();
                true
            }
            None => false,
        }
    });
    env.admin("ada", &["kill", &id]).ok();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ended by an admin"), "{err}");
}

#[test]
fn a_gateway_crash_still_delivers_the_recording_so_far() {
    let mut r = start();
    grant(&r.g.env, "alice", "web-1", "10m");
    let port = r.g.env.gw_port();
    let cfg = r.g.env.ssh_config("alice");
    let mut child = Command::new("script")
        .args([
            "-q",
            "-e",
            "-c",
            &format!(
                "ssh -tt -F {} -p {port} alice:web-1@127.0.0.1 'echo before-the-crash; sleep 30'",
                cfg.display()
            ),
            "/dev/null",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // The recording is flushed at least once a second: wait for the output to be on disk.
    let recordings = r.g.env.path().join("gateway/recordings");
    r.g.env.eventually("the output in the recording", || {
        std::fs::read_dir(&recordings)
            .map(|d| {
                d.filter_map(|e| e.ok()).any(|e| {
                    std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains("before-the-crash"))
                })
            })
            .unwrap_or(false)
    });
    r.g.env.kill9_gateway();
    let _ = child.kill();
    let _ = child.wait();
    r.g.env.start_gateway();
    let env = &r.g.env;
    let mut session = String::new();
    env.eventually("the end event with the recording", || {
        match env.audit_events().into_iter().find(|e| {
            e["event"] == "session.ended"
                && e["end_reason"] == "gateway restart"
                && e["recording_sha256"].is_string()
        }) {
            Some(e) => {
                session = e["session"].as_str().unwrap().to_string();
                true
            }
            None => false,
        }
    });
    let export = env.portcullis("audrey", "audit", &["export", &session]);
    export.ok();
    assert!(
        export.stdout.contains("before-the-crash"),
        "{}",
        export.stdout
    );
    env.portcullis("audrey", "audit", &["verify"]).ok();
}

#[test]
fn a_full_disk_under_the_recordings_ends_the_session_with_an_event() {
    // The small disk is a tmpfs in a mount namespace of the gateway's own (unshare -rm). Where
    // the machine allows no namespaces at all, say so loudly rather than fail on the machine.
    let can_unshare = Command::new("unshare")
        .args(["-rm", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !can_unshare {
        eprintln!("SKIPPED: this machine allows no mount namespace (unshare -rm true failed)");
        return;
    }
    // 256 KiB for recordings; the session writes megabytes to its terminal.
    let r = start_on_disk(false, false, Some(256));
    let env = &r.g.env;
    grant(env, "alice", "web-1", "10m");
    let out = r.in_pty(
        80,
        24,
        "alice:web-1@127.0.0.1 'while true; do yes portcullis | head -n 20000; sleep 0.1; done'",
    );
    assert_ne!(out.code, 0);
    assert!(
        out.stdout.contains("the recording of this session failed"),
        "{}",
        &out.stdout[out.stdout.len().saturating_sub(400)..]
    );
    env.eventually("the end event", || {
        env.audit_events()
            .iter()
            .any(|e| e["event"] == "session.ended" && e["end_reason"] == "recording failed")
    });
    // While the disk is full, a new recorded session is refused rather than run unrecorded.
    let again = r.in_pty(80, 24, "alice:web-1@127.0.0.1 'echo should-not-run'");
    assert_ne!(again.code, 0);
    assert!(!again.stdout.contains("should-not-run"), "{}", again.stdout);
    assert!(again.stdout.contains("record"), "{}", again.stdout);
    // Nothing in the audit trail is lost or broken.
    env.ssh("audrey", &["audit", "verify"]).ok();
}

/// Once the approver has a recording durably, the gateway's copy goes: a gateway's disk holds
/// only what is not yet delivered. (The approver takes the same recording again as a retry,
/// so a crash between its acknowledgement and the removal re-sends, never loses it.)
#[test]
fn a_delivered_recording_leaves_the_gateways_disk() {
    let r = start_opts(false, true);
    let env = &r.g.env;
    grant(env, "alice", "web-1", "10m");
    let out = run(&mut r.ssh(&[], &["echo", "kept-at-the-approver"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let files = |dir: &str| -> Vec<String> {
        std::fs::read_dir(env.path().join(dir))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    env.eventually(
        "the recording at the approver and gone from the gateway",
        || {
            files("approver/recordings")
                .iter()
                .any(|f| f.ends_with(".data"))
                && files("gateway/recordings").is_empty()
        },
    );
    env.admin("audrey", &["audit", "verify"]).ok();
}
