//! On a recorded target, every file operation of stock `sftp` and `scp` (SFTP, and the legacy
//! protocol of `scp -O`) is an event of its session: open with its flags, close with the bytes
//! through the handle, rename, remove, mkdir, rmdir, each with the target's answer; legacy scp
//! files and directories with their names and sizes. `audit log --kind sftp --session S`
//! lists them.

use std::process::{Command, Stdio};

use serde_json::Value;

use super::common::grant;
use super::recorded::{self, Rec};
use crate::support::{run, Env, Out};

/// The events of `session` of kinds under `kind`, as `audit log --kind K --session S` lists them.
fn events_of(env: &Env, kind: &str, session: &str) -> Vec<Value> {
    let out = env.admin(
        "audrey",
        &[
            "--json",
            "audit",
            "log",
            "--kind",
            kind,
            "--session",
            session,
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

/// The sessions ended so far, in order, once `n` have.
fn ended_sessions(env: &Env, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    env.eventually(&format!("{n} sessions ended"), || {
        ids = env
            .audit_events()
            .iter()
            .filter(|e| e["event"] == "session.ended")
            .map(|e| e["session"].as_str().unwrap().to_string())
            .collect();
        ids.len() >= n
    });
    ids
}

/// (event, path) of each event, with `from→to` for renames.
fn shape(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| {
            let path = match e["event"].as_str().unwrap() {
                "sftp.rename" => format!(
                    "{}→{}",
                    e["from"].as_str().unwrap(),
                    e["to"].as_str().unwrap()
                ),
                _ => e["path"].as_str().unwrap_or("").to_string(),
            };
            (e["event"].as_str().unwrap().to_string(), path)
        })
        .collect()
}

fn sftp_batch(r: &Rec, batch: &str) -> Out {
    let env = &r.g.env;
    let file = env.path().join("batch");
    std::fs::write(&file, batch).unwrap();
    run(Command::new("sftp")
        .arg("-F")
        .arg(env.ssh_config("alice"))
        .args(["-P", &env.gw_port(), "-o", "User=alice:web-1", "-b"])
        .arg(&file)
        .arg("127.0.0.1")
        .stdin(Stdio::null()))
}

fn scp(r: &Rec, legacy: bool, from: String, to: String) -> Out {
    let env = &r.g.env;
    let mut c = Command::new("scp");
    if legacy {
        c.arg("-O");
    }
    run(c
        .arg("-F")
        .arg(env.ssh_config("alice"))
        .args(["-P", &env.gw_port(), "-o", "User=alice:web-1"])
        .arg(from)
        .arg(to)
        .stdin(Stdio::null()))
}

#[test]
fn sftp_put_get_rename_rm_mkdir_rmdir_are_events_of_the_session() {
    let r = recorded::start();
    let env = &r.g.env;
    grant(env, "alice", "web-1", "10m");
    let remote = crate::support::targets::shared_dir();
    let rd = remote.path().display().to_string();
    let src = env.path().join("put.txt");
    std::fs::write(&src, "twelve bytes").unwrap();
    let got = env.path().join("got.txt");
    // `-rm` does not stop the batch at its failure: the target refuses to remove a file
    // that is not there.
    let out = sftp_batch(
        &r,
        &format!(
            "put {src} {rd}/put.txt\n\
             get {rd}/put.txt {got}\n\
             rename {rd}/put.txt {rd}/moved.txt\n\
             mkdir {rd}/sub\n\
             rmdir {rd}/sub\n\
             rm {rd}/moved.txt\n\
             -rm {rd}/never-there.txt\n",
            src = src.display(),
            got = got.display(),
        ),
    );
    out.ok();
    assert_eq!(std::fs::read_to_string(&got).unwrap(), "twelve bytes");

    let session = ended_sessions(env, 1).remove(0);
    let events = events_of(env, "sftp", &session);
    let p = |name: &str| format!("{rd}/{name}");
    assert_eq!(
        shape(&events),
        [
            ("sftp.open", p("put.txt")),
            ("sftp.close", p("put.txt")),
            ("sftp.open", p("put.txt")),
            ("sftp.close", p("put.txt")),
            (
                "sftp.rename",
                format!("{}→{}", p("put.txt"), p("moved.txt"))
            ),
            ("sftp.mkdir", p("sub")),
            ("sftp.rmdir", p("sub")),
            ("sftp.remove", p("moved.txt")),
            ("sftp.remove", p("never-there.txt")),
        ]
        .map(|(e, p)| (e.to_string(), p)),
        "{events:#?}"
    );
    let put_open = &events[0];
    assert_eq!(put_open["flags"], "write,create,truncate", "{put_open}");
    assert_eq!(put_open["outcome"], "ok");
    assert_eq!(put_open["user"], "alice");
    assert_eq!(put_open["target"], "web-1");
    assert!(put_open["grant"].is_u64());
    assert_eq!(put_open["actor"], "gw-1");
    assert_eq!(
        (
            events[1]["bytes_written"].as_u64(),
            events[1]["bytes_read"].as_u64()
        ),
        (Some(12), Some(0)),
        "{}",
        events[1]
    );
    assert_eq!(events[2]["flags"], "read");
    assert_eq!(events[3]["bytes_read"], 12, "{}", events[3]);
    assert!(
        events[4..8].iter().all(|e| e["outcome"] == "ok"),
        "{events:#?}"
    );
    assert_eq!(events[8]["outcome"], "no such file", "{}", events[8]);

    // In the log between the session's start and its end.
    let all = env.audit_events();
    let seq = |pred: &dyn Fn(&Value) -> bool| {
        all.iter().find(|e| pred(e)).unwrap()["seq"]
            .as_u64()
            .unwrap()
    };
    let started = seq(&|e| e["event"] == "session.started" && e["session"] == session.as_str());
    let ended = seq(&|e| e["event"] == "session.ended" && e["session"] == session.as_str());
    assert!(events.iter().all(|e| {
        let s = e["seq"].as_u64().unwrap();
        started < s && s < ended
    }));
    env.admin("audrey", &["audit", "verify"]).ok();
}

#[test]
fn scp_both_ways_and_legacy_scp_are_events_of_their_sessions() {
    let r = recorded::start();
    let env = &r.g.env;
    grant(env, "alice", "web-1", "10m");
    let remote = crate::support::targets::shared_dir();
    let rd = remote.path().display().to_string();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let local = env.path().join("up.bin");
    std::fs::write(&local, &data).unwrap();
    let back = env.path().join("back.bin");
    let legacy_back = env.path().join("legacy-back.bin");

    // scp over SFTP (the default since OpenSSH 9.0), up then down.
    scp(
        &r,
        false,
        local.display().to_string(),
        format!("127.0.0.1:{rd}/up.bin"),
    )
    .ok();
    scp(
        &r,
        false,
        format!("127.0.0.1:{rd}/up.bin"),
        back.display().to_string(),
    )
    .ok();
    // The legacy protocol, up then down.
    scp(
        &r,
        true,
        local.display().to_string(),
        format!("127.0.0.1:{rd}/legacy.bin"),
    )
    .ok();
    scp(
        &r,
        true,
        format!("127.0.0.1:{rd}/legacy.bin"),
        legacy_back.display().to_string(),
    )
    .ok();
    assert_eq!(std::fs::read(&back).unwrap(), data);
    assert_eq!(std::fs::read(&legacy_back).unwrap(), data);

    let ids = ended_sessions(env, 4);
    let size = data.len() as u64;
    // Upload over SFTP: opened for writing, closed with every byte written.
    let up = events_of(env, "sftp", &ids[0]);
    let close = up
        .iter()
        .find(|e| e["event"] == "sftp.close" && e["path"] == format!("{rd}/up.bin"))
        .unwrap_or_else(|| panic!("{up:#?}"));
    assert_eq!(close["bytes_written"], size, "{close}");
    assert!(up
        .iter()
        .any(|e| e["event"] == "sftp.open" && e["flags"].as_str().unwrap().contains("write")));
    // Download over SFTP: every byte read.
    let down = events_of(env, "sftp", &ids[1]);
    let close = down
        .iter()
        .find(|e| e["event"] == "sftp.close")
        .unwrap_or_else(|| panic!("{down:#?}"));
    assert_eq!(close["bytes_read"], size, "{close}");
    assert_eq!(close["path"], format!("{rd}/up.bin"));

    // Legacy scp: the file's name and size, and which way it went.
    let file = |id: &str| {
        let e = events_of(env, "scp", id);
        assert_eq!(e.len(), 1, "{e:#?}");
        e[0].clone()
    };
    let up = file(&ids[2]);
    assert_eq!(
        (
            up["direction"].as_str(),
            up["path"].as_str(),
            up["size"].as_u64()
        ),
        (Some("upload"), Some("up.bin"), Some(size)),
        "{up}"
    );
    let mode = up["mode"].as_str().unwrap();
    assert!(mode.len() == 4 && mode.starts_with('0'), "{up}");
    let down = file(&ids[3]);
    assert_eq!(
        (
            down["direction"].as_str(),
            down["path"].as_str(),
            down["size"].as_u64()
        ),
        (Some("download"), Some("legacy.bin"), Some(size)),
        "{down}"
    );
    env.admin("audrey", &["audit", "verify"]).ok();
}

/// File operations and refusals go through the gateway's spool like the session's start and
/// end: what happened while the approver was away reaches the log once it is back.
#[test]
fn file_operations_and_refusals_wait_in_the_spool_while_the_approver_is_away() {
    let mut r = recorded::start();
    grant(&r.g.env, "alice", "web-1", "10m");
    // The grant has reached the gateway once a session opens under it.
    sftp_batch(&r, "pwd\n").ok();
    r.g.env.kill9();
    let remote = crate::support::targets::shared_dir();
    let dir = format!("{}/made-while-away", remote.path().display());
    sftp_batch(&r, &format!("mkdir {dir}\n")).ok();
    let refused = crate::support::run(
        r.g.env
            .gw_command("alice", &["-W", &format!("127.0.0.1:{}", r.g.stray.port)])
            .stdin(Stdio::null()),
    );
    assert_ne!(refused.code, 0);
    r.g.env.start_approver();
    let env = &r.g.env;
    env.eventually("the mkdir and the refusal", || {
        let all = env.audit_events();
        all.iter()
            .any(|e| e["event"] == "sftp.mkdir" && e["path"] == dir.as_str())
            && all
                .iter()
                .any(|e| e["event"] == "session.refused" && e["reason"] == "unknown_target")
    });
    env.admin("audrey", &["audit", "verify"]).ok();
}
