//! Listings people read (#18): sessions under a header in columns that line up, by start time,
//! with a mark on those whose recording is kept; counts and durations in words ("1 day",
//! "1 approval", not "1 days", "1 approval(s)").

use std::time::Duration;

use crate::support::Env;
use portcullis_core::codec;
use portcullis_core::model::SessionReport;
use portcullis_core::Timestamp;

/// SHA-256 of `abc`.
const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

fn framed(r: &SessionReport) -> Vec<u8> {
    codec::frame(&codec::encode(r))
}

/// `report --seq SEQ` as gw-1 with `input`.
fn report(env: &Env, seq: u64, input: Vec<u8>) {
    let r = env.as_gw1(&format!("report --seq {seq} --instance t"), &input);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
}

fn hours_ago(h: u64) -> Timestamp {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    Timestamp(now - h * 3_600_000)
}

fn started(session: &str, user: &str, channel: &str, at: Timestamp) -> Vec<u8> {
    framed(&SessionReport::Started {
        session: session.into(),
        user: user.into(),
        target: "pg-prod".into(),
        grant: 1,
        client: "127.0.0.1:1".into(),
        fingerprint: "SHA256:x".into(),
        channel: channel.into(),
        at,
    })
}

/// Where each of `words` starts on `line`, in characters.
fn columns(line: &str, words: &[&str]) -> Vec<usize> {
    words
        .iter()
        .map(|w| {
            let at = line
                .find(w)
                .unwrap_or_else(|| panic!("no {w:?} in {line:?}"));
            line[..at].chars().count()
        })
        .collect()
}

#[test]
fn sessions_are_listed_under_a_header_by_start_with_recordings_marked() {
    let env = Env::start();
    // Reported out of order, with ids that sort otherwise than their starts.
    report(
        &env,
        1,
        started("gw-1-t-10", "carol", "exec: true", hours_ago(1)),
    );
    report(
        &env,
        2,
        started("gw-1-t-9", "alice", "pty shell", hours_ago(3)),
    );
    let recorded = SessionReport::Recorded {
        session: "gw-1-t-9".into(),
        sha256: ABC.into(),
        size: 3,
        format: "data".into(),
    };
    report(&env, 3, [framed(&recorded), b"abc".to_vec()].concat());
    let ended = SessionReport::Ended {
        session: "gw-1-t-9".into(),
        bytes_in: 1536,
        bytes_out: 3,
        duration: Duration::from_secs(25 * 3600),
        reason: "closed".into(),
        exit_status: Some(0),
        at: hours_ago(2),
        recording: Some((ABC.into(), 3)),
    };
    report(&env, 4, framed(&ended));
    report(
        &env,
        5,
        started("gw-1-t-100", "bob", "direct-tcpip", hours_ago(2)),
    );

    for args in [&["sessions"][..], &["audit", "sessions"]] {
        let out = env.ssh("audrey", args);
        out.ok();
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(lines.len(), 4, "{}", out.stdout);
        let header = [
            "SESSION", "USER", "TARGET", "GRANT", "STARTED", "STATE", "DURATION", "IN", "OUT",
            "REC", "CHANNEL",
        ];
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            header,
            "{}",
            out.stdout
        );
        // By start time: alice's (3h ago), bob's (2h), carol's (1h).
        let users: Vec<&str> = lines[1..]
            .iter()
            .map(|l| l.split_whitespace().nth(1).unwrap())
            .collect();
        assert_eq!(users, ["alice", "bob", "carol"], "{}", out.stdout);
        // Fixed columns: each row's values start where their header does.
        let at = columns(lines[0], &["USER", "TARGET", "STARTED", "CHANNEL"]);
        assert_eq!(
            columns(lines[1], &["alice", "pg-prod", "20", "pty shell"]),
            at
        );
        assert_eq!(
            columns(lines[2], &["bob", "pg-prod", "20", "direct-tcpip"]),
            at
        );
        assert_eq!(
            columns(lines[3], &["carol", "pg-prod", "20", "exec: true"]),
            at
        );
        // The ended one: its end, its duration in words, its bytes, and the recording mark.
        let rec = columns(lines[0], &["REC"])[0];
        assert!(lines[1].contains("closed"), "{}", lines[1]);
        assert!(lines[1].contains("1 day 1h"), "{}", lines[1]);
        assert!(lines[1].contains("1.5 KiB"), "{}", lines[1]);
        assert_eq!(lines[1].chars().nth(rec), Some('*'), "{}", out.stdout);
        // Live ones: no recording yet, bytes counted at the end.
        for live in &lines[2..] {
            assert!(live.contains(" live "), "{live}");
            assert_eq!(live.chars().nth(rec), Some(' '), "{}", out.stdout);
        }
    }
    let j = env.ssh("audrey", &["sessions", "--json"]).json();
    let marks: Vec<bool> = j["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["recorded"].as_bool().unwrap())
        .collect();
    assert_eq!(marks, [true, false, false]);

    // Live only, and a cap of one: the header, the newest, and a line for the rest.
    let out = env.ssh("audrey", &["sessions", "--live", "--limit", "1"]);
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    assert!(lines[1].contains("carol"), "{}", out.stdout);
    assert!(
        lines[2].contains("1 more not shown: the newest is listed"),
        "{}",
        out.stdout
    );
}

#[test]
fn counts_and_durations_read_as_words() {
    // A policy one approval satisfies, and one that grants more than a day at once.
    let env = Env::start_with(
        "24h",
        r#"
[[targets]]
name = "pg-one"
kind = "tcp"
address = "127.0.0.1:55432"
labels = { env = "one" }

[[targets]]
name = "pg-long"
kind = "tcp"
address = "127.0.0.1:55433"
labels = { env = "long" }

[[policies]]
name = "one"
match = { env = "one" }
approvers = ["dba"]
approvals = 1
max_duration = "4h"

[[policies]]
name = "long"
match = { env = "long" }
auto_approve = { groups = ["dev"] }
max_duration = "48h"
"#,
    );
    let targets = env.ssh("alice", &["targets"]);
    targets.ok();
    assert!(
        targets.stdout.contains("1 approval from dba\n"),
        "{}",
        targets.stdout
    );
    assert!(
        targets.stdout.contains("2 approvals from dba\n"),
        "{}",
        targets.stdout
    );

    let pending = env.ssh("alice", &["request", "pg-one", "--for", "1h"]);
    pending.ok();
    assert!(
        pending
            .stdout
            .contains("needs 1 approval from dba; it lapses in 1 day if undecided"),
        "{}",
        pending.stdout
    );

    let long = env.ssh("alice", &["request", "pg-long", "--for", "25h"]);
    long.ok();
    assert!(
        long.stdout.contains("for 1 day 1h, until"),
        "{}",
        long.stdout
    );
    let status = env.ssh("alice", &["status"]);
    assert!(status.stdout.contains(" left (until"), "{}", status.stdout);
    assert!(status.stdout.contains("1 day "), "{}", status.stdout);
    let all = env.ssh("alice", &["requests", "--all"]);
    assert!(all.stdout.contains("1 day 1h"), "{}", all.stdout);
    for out in [&targets, &pending, &long, &status, &all] {
        for wrong in ["1 days", "1days", "approval(s)", "1 approvals"] {
            assert!(!out.stdout.contains(wrong), "{wrong:?} in {}", out.stdout);
        }
    }

    let reload = env.ssh("ada", &["reload"]);
    reload.ok();
    assert!(
        reload
            .stdout
            .ends_with(": 6 users, 6 targets, 5 policies, 1 gateway\n"),
        "{}",
        reload.stdout
    );
}
