//! Terminal escapes in users' text never reach an admin's terminal (issue 16, item 6): the
//! human-readable output escapes control characters; `--json` keeps the text exact.

use portcullis_core::codec;
use portcullis_core::model::SessionReport;
use portcullis_core::Timestamp;

use crate::support::{request_id, Env, Out};

/// Clears the screen, retitles the terminal, and starts a fake prompt on a new line; plus a
/// C1 control (CSI as one character) and DEL.
const NASTY: &str = "ok\u{1b}[2J\u{1b}]0;pwned\u{7}\nPASSWORD: \u{9b}31m\u{7f}";

fn assert_escaped(out: &Out, what: &str) {
    out.ok();
    for c in out.stdout.chars() {
        let control = (c.is_control() && c != '\n') || ('\u{80}'..='\u{9f}').contains(&c);
        assert!(!control, "{what}: raw {c:?} in\n{}", out.stdout);
    }
    // `\x1b` (the approver's own listings) or `\u{1b}` (the audit log's quoted values).
    assert!(
        out.stdout.contains("\\x1b[2J") || out.stdout.contains("\\u{1b}[2J"),
        "{what}: the escape is not shown escaped\n{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("\nPASSWORD"),
        "{what}: a newline in the text starts a line of its own\n{}",
        out.stdout
    );
}

#[test]
fn notes_and_reasons_are_escaped_in_requests_and_wait() {
    let env = Env::start();
    // Quoted for the approver's shell-style split, so that the newline arrives as typed.
    let quoted = format!("'{NASTY}'");
    let id = request_id(&env.ssh(
        "alice",
        &["request", "pg-prod", "--reason", &quoted, "--json"],
    ))
    .to_string();
    env.ssh("bob", &["deny", &id, "--note", &quoted]).ok();

    assert_escaped(&env.ssh("alice", &["requests", "--all"]), "requests --all");
    assert_escaped(
        &env.ssh("bob", &["requests", "--all"]),
        "requests --all (approver)",
    );
    let w = env.ssh("alice", &["wait", &id]);
    assert_eq!(w.code, 1);
    let w = Out { code: 0, ..w };
    assert_escaped(&w, "wait");
    assert_escaped(&env.ssh("audrey", &["audit", "log"]), "audit log");

    // --json keeps the text exact.
    let j = env.ssh("alice", &["requests", "--all", "--json"]).json();
    assert_eq!(j["requests"][0]["reason"], NASTY);
    assert_eq!(j["requests"][0]["approvals"], serde_json::json!([]));
    let w = env.ssh("alice", &["wait", &id, "--json"]);
    assert_eq!(w.json()["denied_by"], "bob");
}

/// Send one `Started` report as gateway gw-1, with text a user chose (the command they ran).
fn report_started(env: &Env) {
    let report = SessionReport::Started {
        session: "gw-1-t-1".into(),
        user: "alice".into(),
        target: "pg-prod".into(),
        grant: 1,
        client: "127.0.0.1:5555".into(),
        fingerprint: "SHA256:x".into(),
        channel: format!("exec printf '{NASTY}'"),
        at: Timestamp(1),
    };
    let input = codec::frame(&codec::encode(&report));
    let r = env.as_gw1("report --seq 1 --instance t", &input);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
}

#[test]
fn exec_commands_are_escaped_in_sessions_and_audit_sessions() {
    let env = Env::start();
    report_started(&env);
    assert_escaped(&env.ssh("audrey", &["sessions"]), "sessions");
    assert_escaped(&env.ssh("audrey", &["audit", "sessions"]), "audit sessions");
    assert_escaped(&env.ssh("audrey", &["audit", "log"]), "audit log");
    let j = env.ssh("audrey", &["sessions", "--json"]).json();
    assert_eq!(
        j["sessions"][0]["channel"],
        format!("exec printf '{NASTY}'")
    );
}
