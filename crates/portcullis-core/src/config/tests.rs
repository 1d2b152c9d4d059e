//! The unit tests of config as a whole: text in, a validated file or every problem out.

use std::time::Duration;

use super::*;
use proptest::prelude::*;

pub const ALICE: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGoHkF4rbbzfHvvGr0tPbMM1bFsHr3OxCzNd0R3dTNNb alice";
pub const BOB: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHwH4DnFWu5s5SxdKbJLxTGIbWKs/x6HZfq9J0zS4DzT bob";

fn base() -> String {
    format!(
        r#"
[approver]
data_dir = "/tmp/x"
request_ttl = "1h"

[[users]]
name = "alice"
keys = ["{ALICE}"]
groups = ["dev"]

[[users]]
name = "bob"
keys = ["{BOB}"]
groups = ["dba"]

[[targets]]
name = "pg-prod"
kind = "tcp"
address = "127.0.0.1:5432"
labels = {{ env = "prod" }}

[[policies]]
name = "prod"
match = {{ env = "prod" }}
approvers = ["dba"]
approvals = 1
max_duration = "4h"
"#
    )
}

#[test]
fn a_good_file_validates() {
    let c = parse(&base()).unwrap();
    assert_eq!(c.catalog.users.len(), 2);
    assert_eq!(
        c.catalog.policies[0].default_duration,
        Duration::from_secs(3600)
    );
    assert_eq!(c.approver.unwrap().request_ttl, Duration::from_secs(3600));
    assert!(c.catalog.groups["dba"].contains("bob"));
}

fn problems(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn connection_limits_default_and_validate() {
    let c = parse(&base()).unwrap();
    assert_eq!(c.approver.unwrap().limits, ConnectionLimits::APPROVER);
    let tuned = base().replace(
        "request_ttl = \"1h\"",
        "request_ttl = \"1h\"\nmax_connections = 10\nmax_connections_per_source = 2\nlogin_grace = \"5s\"",
    );
    let limits = parse(&tuned).unwrap().approver.unwrap().limits;
    assert_eq!(limits.max_connections, 10);
    assert_eq!(limits.max_connections_per_source, 2);
    assert_eq!(limits.login_grace, Duration::from_secs(5));
    assert_eq!(
        limits.reserved_connections, 2,
        "a quarter of a small budget"
    );
    let over = base().replace(
        "request_ttl = \"1h\"",
        "request_ttl = \"1h\"\nmax_connections = 10\nreserved_connections = 10\nidle_timeout = \"0s\"",
    );
    let e = problems(&over);
    assert!(
        e.contains("approver.reserved_connections: must be below max_connections (10)"),
        "{e}"
    );
    assert!(
        e.contains("approver.idle_timeout: must be longer than zero"),
        "{e}"
    );
    let rate = base().replace(
        "request_ttl = \"1h\"",
        "request_ttl = \"1h\"\nnew_connections_per_source_per_second = 5\nnew_connections_per_source_burst = 9",
    );
    let limits = parse(&rate).unwrap().approver.unwrap().limits;
    assert_eq!(limits.new_connections_per_source_per_second, 5);
    assert_eq!(limits.new_connections_per_source_burst, 9);
    let e = problems(&base().replace(
        "request_ttl = \"1h\"",
        "request_ttl = \"1h\"\nnew_connections_per_source_per_second = 0\nnew_connections_per_source_burst = 2000000",
    ));
    assert!(
        e.contains("approver.new_connections_per_source_per_second: must be between 1 and 1000000"),
        "{e}"
    );
    assert!(
        e.contains("approver.new_connections_per_source_burst: must be between 1 and 1000000"),
        "{e}"
    );
    let zero = base().replace(
        "request_ttl = \"1h\"",
        "request_ttl = \"1h\"\nmax_connections_per_source = 0\nlogin_grace = \"0s\"",
    );
    let e = problems(&zero);
    assert!(
        e.contains("approver.max_connections_per_source: must be at least 1"),
        "{e}"
    );
    assert!(
        e.contains("approver.login_grace: must be longer than zero"),
        "{e}"
    );
}

#[test]
fn pending_requests_per_user_default_and_validate() {
    let c = parse(&base()).unwrap();
    assert_eq!(c.approver.unwrap().max_pending_requests_per_user, 10);
    let set = |v: &str| {
        base().replace(
            "request_ttl = \"1h\"",
            &format!("request_ttl = \"1h\"\nmax_pending_requests_per_user = {v}"),
        )
    };
    let c = parse(&set("3")).unwrap();
    assert_eq!(c.approver.unwrap().max_pending_requests_per_user, 3);
    let e = problems(&set("0"));
    assert!(
        e.contains("approver.max_pending_requests_per_user: must be at least 1"),
        "{e}"
    );
    assert!(problems(&set("-1")).contains("max_pending_requests_per_user"));
}

#[test]
fn channel_memory_per_user_defaults_and_validates() {
    let gateway = |line: &str| {
        let text = format!("{}\n[gateway]\ndata_dir = \"/tmp/g\"\n{line}\n", base());
        parse(&text).map(|c| c.gateway.unwrap().max_channel_memory_per_user)
    };
    assert_eq!(gateway(""), Ok(DEFAULT_MAX_CHANNEL_MEMORY_PER_USER));
    assert_eq!(
        gateway("max_channel_memory_per_user = \"1 GiB\""),
        Ok(1 << 30)
    );
    let e = gateway("max_channel_memory_per_user = \"1 MiB\"")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("gateway.max_channel_memory_per_user: must be at least 8.0 MiB"),
        "{e}"
    );
    let e = gateway("max_channel_memory_per_user = \"lots\"")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("gateway.max_channel_memory_per_user: \"lots\" is not a size"),
        "{e}"
    );
}

#[test]
fn metrics_listeners_are_off_by_default_and_validated() {
    let c = parse(&base()).unwrap();
    assert_eq!(c.approver.unwrap().metrics, None);
    let set = |v: &str| {
        base().replace(
            "request_ttl = \"1h\"",
            &format!("request_ttl = \"1h\"\nmetrics = {v}"),
        )
    };
    let c = parse(&set("\"127.0.0.1:9223\"")).unwrap();
    assert_eq!(
        c.approver.unwrap().metrics,
        Some("127.0.0.1:9223".parse().unwrap())
    );
    let e = problems(&set("\"localhost:9223\""));
    assert!(
        e.contains("approver.metrics: \"localhost:9223\" is not an IP:PORT address"),
        "{e}"
    );
    assert!(problems(&set("9223")).contains("metrics"));
}

#[test]
fn unknown_keys_are_named() {
    let e = problems(&base().replace("approvals = 1", "aprovals = 1"));
    assert!(e.contains("aprovals"), "{e}");
}

#[test]
fn bad_durations_are_named() {
    let e = problems(&base().replace("\"4h\"", "\"four hours\""));
    assert!(
        e.contains("policies[0] (prod).max_duration: bad duration"),
        "{e}"
    );
}

#[test]
fn duplicates_and_shared_keys_are_named() {
    let dup = base().replace("name = \"bob\"", "name = \"alice\"");
    let e = problems(&dup);
    assert!(e.contains("users[1].name: duplicate user \"alice\""), "{e}");
    let shared = base().replace(BOB, ALICE);
    let e = problems(&shared);
    assert!(e.contains("key is already registered to user alice"), "{e}");
}

#[test]
fn unknown_groups_are_named() {
    let e = problems(&base().replace("approvers = [\"dba\"]", "approvers = [\"sre\"]"));
    assert!(e.contains("approvers[0]: unknown group \"sre\""), "{e}");
}

#[test]
fn bad_keys_and_windows_are_named() {
    let e = problems(&base().replace(BOB, "ssh-ed25519 garbage"));
    assert!(
        e.contains("users[1] (bob).keys[0]: invalid public key"),
        "{e}"
    );
    let e = problems(&format!(
        "{}auto_approve = {{ groups = [\"dev\"], windows = [\"Someday\"] }}\n",
        base()
    ));
    assert!(e.contains("auto_approve.windows[0]: bad window"), "{e}");
}

#[test]
fn all_problems_are_reported_at_once() {
    let e = parse(
        &base()
            .replace("\"4h\"", "\"x\"")
            .replace("approvers = [\"dba\"]", "approvers = [\"nope\"]"),
    )
    .unwrap_err();
    assert_eq!(e.problems.len(), 2, "{e}");
}

#[test]
fn choices_become_enums_and_unknown_ones_are_named() {
    let gateway = |extra: &str| format!("{}\n[gateway]\ndata_dir = \"/tmp/g\"\n{extra}", base());
    let mode = |text: &str| parse(text).unwrap().gateway.unwrap().fail_mode;
    assert_eq!(mode(&gateway("")), FailMode::OpenUntilExpiry);
    assert_eq!(mode(&gateway("fail_mode = \"closed\"")), FailMode::Closed);
    let e = problems(&gateway("fail_mode = \"shut\""));
    assert!(
        e.contains("gateway.fail_mode: \"shut\" is not one of \"open-until-expiry\", \"closed\""),
        "{e}"
    );
    let e = problems(&base().replace("kind = \"tcp\"", "kind = \"udp\""));
    assert!(
        e.contains(
            "targets[0] (pg-prod).kind: \"udp\" is not one of \"tcp\" (forwarding only), \"ssh\""
        ),
        "{e}"
    );
}

#[test]
fn host_port() {
    assert_eq!(split_host_port("db:5432"), Ok(("db".into(), 5432)));
    assert_eq!(split_host_port("[::1]:22"), Ok(("::1".into(), 22)));
    assert!(split_host_port("db").is_err());
    assert!(split_host_port("db:0").is_err());
    assert!(split_host_port("::1:22").is_err());
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,200}") { let _ = parse(&s); }

    #[test]
    fn mutated_config_never_panics(pos in 0usize..2000, byte in any::<char>()) {
        let mut text: Vec<char> = base().chars().collect();
        let pos = pos % text.len();
        text[pos] = byte;
        let s: String = text.into_iter().collect();
        let _ = parse(&s);
    }
}
