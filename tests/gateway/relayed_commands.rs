//! Control commands through the gateway run on the approver as the authenticated user.

use super::common;

#[test]
fn commands_run_as_the_user_with_their_rights() {
    let g = common::start("");
    let env = &g.env;
    let out = env.gw_ssh("alice", &["request", "echo", "--for", "5m", "--json"]);
    out.ok();
    assert_eq!(out.json()["grant"]["user"], "alice");
    let status = env.gw_ssh("alice", &["status"]);
    status.ok();
    assert!(status.stdout.contains("echo"), "{}", status.stdout);

    // A two-approval request, decided through the gateway by bob and carol.
    let req = env.gw_ssh(
        "alice",
        &["request", "pg-prod", "--reason", "INC", "7", "--json"],
    );
    let id = req.json()["request"]["id"].as_u64().unwrap().to_string();
    env.gw_ssh("alice", &["approve", &id])
        .fails_with("cannot approve your own request");
    env.gw_ssh("bob", &["approve", &id]).ok();
    env.gw_ssh("carol", &["approve", &id]).ok();
    let w = env.gw_ssh("alice", &["wait", &id]);
    w.ok();
    assert!(w.stdout.contains("approved"), "{}", w.stdout);
    // The reason survived two hops of word splitting.
    assert!(env.has_event("request.created", "reason", serde_json::json!("INC 7")));

    // Admin-only commands stay admin-only through the gateway.
    env.gw_ssh("alice", &["reload"])
        .fails_with("is for members of admins");
    // Usage errors come back as such.
    assert_eq!(env.gw_ssh("alice", &["frobnicate"]).code, 2);
}

#[test]
fn a_pending_request_through_the_gateway_suggests_the_whole_wait_line() {
    let g = common::start("");
    let env = &g.env;
    let out = env.gw_ssh("alice", &["request", "pg-prod", "--reason", "INC-7"]);
    out.ok();
    let id = env.gw_ssh("alice", &["requests", "--json"]).json()["requests"][0]["id"]
        .as_u64()
        .unwrap();
    // The address and port alice reached the gateway at, and her name: the line works as
    // printed, where the approver's own address would not.
    let wait = format!(
        "wait for the decision: ssh -p {} alice@127.0.0.1 wait {id}\n",
        env.gw_port()
    );
    assert!(out.stdout.contains(&wait), "{}", out.stdout);
}

/// `ssh -p 2222 alice@bastion` with no command (a shell request, with or without `-t`): the
/// commands alice may run, to be typed the way she reached the gateway; exit 0.
#[test]
fn no_command_lists_the_users_commands() {
    let g = common::start("");
    let env = &g.env;
    let plain = env.gw_ssh("alice", &[]);
    plain.ok();
    let header = format!(
        "portcullis: commands alice may run, as `ssh -p {} alice@127.0.0.1 COMMAND`:",
        env.gw_port()
    );
    assert!(plain.stdout.starts_with(&header), "{}", plain.stdout);
    assert!(plain.stdout.contains("\n  status "), "{}", plain.stdout);
    assert!(!plain.stdout.contains("\n  approve "), "{}", plain.stdout);
    assert!(!plain.stdout.contains("Usage:"), "{}", plain.stdout);
    assert!(env.gw_ssh("bob", &[]).stdout.contains("\n  approve ID"));
    assert!(env.gw_ssh("alice", &[" "]).stdout.starts_with(&header));

    let mut c = std::process::Command::new("ssh");
    c.arg("-tt").arg("-F").arg(env.ssh_config("alice")).args([
        "-p",
        &env.gw_port(),
        "alice@127.0.0.1",
    ]);
    let tty = crate::support::run(&mut c);
    tty.ok();
    assert!(
        tty.stdout
            .starts_with(&format!("{header}\r\n  request TARGET")),
        "{:?}",
        tty.stdout
    );
}
