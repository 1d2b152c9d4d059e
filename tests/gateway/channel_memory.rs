//! What one user's open channels may make the gateway hold, over all their connections
//! (`max_channel_memory_per_user`): each forward counts for 672 KiB, so 8 MiB is twelve of
//! them, on as many connections; the thirteenth is refused with the reason on the client's
//! screen, a log line and an audit event, and a forward that ends gives its part back.

use super::common::{self, grant, Tunnel};
use super::refused_channels::refusals;
use crate::support::russh_client;

#[test]
fn a_users_channels_past_their_memory_budget_are_refused_with_the_reason() {
    let g = common::start_tuned(|_| String::new(), "max_channel_memory_per_user = \"8 MiB\"");
    let env = &g.env;
    grant(env, "alice", "echo", "1h");
    let dest = format!("echo:{}", g.echo.port);
    // Twelve connections of one forward each: the budget is the user's, not a connection's.
    let mut held: Vec<Tunnel> = (0..12)
        .map(|i| {
            let mut t = Tunnel::open(env, "alice", &dest);
            assert_eq!(t.echo(format!("{i}").as_bytes()), format!("{i}").as_bytes());
            t
        })
        .collect();

    let (code, stderr, _) = Tunnel::open(env, "alice", &dest).wait_cut();
    assert_ne!(code, 0);
    assert!(
        stderr.contains("open failed: resource shortage: portcullis: alice's open channels may already hold 7.9 MiB of the 8.0 MiB one user may have the gateway hold (max_channel_memory_per_user), and a forward needs 672.0 KiB"),
        "{stderr}"
    );
    env.eventually("the refusal in the gateway log", || {
        env.gw_log()
            .contains("forward refused: alice's open channels may already hold")
    });
    env.eventually("the refusal in the audit log", || {
        refusals(env)
            .iter()
            .any(|e| e["reason"] == "channel_memory" && e["user"] == "alice")
    });

    // Another user has a budget of their own.
    grant(env, "dave", "echo", "1h");
    let mut dave = Tunnel::open(env, "dave", &dest);
    assert_eq!(dave.echo(b"dave"), b"dave");

    // A forward that ends gives its part back.
    assert_eq!(held.pop().unwrap().close(), 0);
    env.eventually("room for alice again", || {
        let mut t = Tunnel::open(env, "alice", &dest);
        let echoed = t.try_echo(b"again");
        t.close();
        echoed.as_deref() == Some(b"again".as_slice())
    });
    for t in held {
        assert_eq!(t.close(), 0);
    }
    assert_eq!(dave.close(), 0);
}

/// A session channel closed before it asked for anything (sftp refused on a plain login, a
/// client library's health check) gives its part of the budget back at once. Before, it kept
/// it until the whole connection ended: on a connection kept open (a ControlMaster), five
/// such channels used up 8 MiB and every channel the user opened anywhere was refused.
#[test]
fn a_session_channel_closed_unused_gives_its_memory_back() {
    let g = common::start_tuned(|_| String::new(), "max_channel_memory_per_user = \"8 MiB\"");
    let env = &g.env;
    let secret = russh::keys::load_secret_key(env.key("alice"), None).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let addr = env.gw_addr.clone();
    let ran = rt.block_on(async move {
        let mut h = russh_client::connect(&addr).await;
        let key = russh::keys::PrivateKeyWithHashAlg::new(std::sync::Arc::new(secret), None);
        assert!(h
            .authenticate_publickey("alice", key)
            .await
            .unwrap()
            .success());
        // Each counts for a command channel (1.6 MiB): ten of them are twice the budget.
        for i in 0..10 {
            let ch = h
                .channel_open_session()
                .await
                .unwrap_or_else(|e| panic!("channel {i} refused: {e}"));
            ch.close().await.unwrap();
        }
        let mut ch = h.channel_open_session().await.unwrap();
        ch.exec(true, "whoami").await.unwrap();
        let mut out = Vec::new();
        while let Some(msg) = ch.wait().await {
            match msg {
                russh::ChannelMsg::Data { data } => out.extend_from_slice(&data),
                russh::ChannelMsg::ExitStatus { exit_status } => return (exit_status, out),
                _ => {}
            }
        }
        (255, out)
    });
    assert_eq!(ran.0, 0, "{}", String::from_utf8_lossy(&ran.1));
    assert!(String::from_utf8_lossy(&ran.1).contains("alice"));
}

/// The same as a user meets it with the stock tools: `sftp` through a kept-open connection
/// (ControlMaster) to a plain login, which the gateway refuses (file transfers go to a target:
/// `alice:web-1`), six times; a command through the same master still runs.
#[test]
fn refused_sftp_through_a_control_master_leaves_room_for_commands() {
    let g = common::start_tuned(|_| String::new(), "max_channel_memory_per_user = \"8 MiB\"");
    let env = &g.env;
    let sock = env.path().join("master.sock");
    let control = format!("ControlPath={}", sock.display());
    let master = env
        .gw_command("alice", &["-M", "-N", "-f", "-o", &control])
        .stdin(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(master.success());
    for i in 0..6 {
        let out = crate::support::run(
            std::process::Command::new("sftp")
                .arg("-F")
                .arg(env.ssh_config("alice"))
                .args(["-P", &env.gw_port(), "-o", &control, "-b", "/dev/null"])
                .arg("alice@127.0.0.1"),
        );
        assert_ne!(out.code, 0, "sftp {i} on a plain login: {}", out.stdout);
    }
    let out = crate::support::run(
        env.gw_command("alice", &["-o", &control, "whoami"])
            .stdin(std::process::Stdio::null()),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("alice"), "{}", out.stdout);
    let _ = crate::support::run(&mut env.gw_command("alice", &["-o", &control, "-O", "exit"]));
}
