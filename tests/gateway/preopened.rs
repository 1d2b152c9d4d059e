//! An ordinary user's way around a grant's end, tried with a scripted SSH client (russh, as
//! any client library could): session channels opened on `alice:web-1` while the grant holds
//! and kept without a command, so as to send `exec` after the grant is revoked, has expired or
//! the user's key is gone. Each such channel is bound to its grant like a running session
//! (closed, with the gateway's login to the target, at the grant's end) and every request on
//! it is checked when it is made. Also: an authenticated connection that holds nothing live is
//! closed after `idle_timeout`.

use std::time::{Duration, Instant};

use portcullis_ssh::{ClientConnection, ConnectOptions, HostKeyPolicy, Identity};
use russh::client::Msg;
use russh::{Channel, ChannelMsg};

use super::common::grant;
use super::recorded;
use crate::support::{Env, SOON};

/// Worker threads of their own, so that channels watched for their close are watched while the
/// test blocks on a command (`revoke`, `reload`).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// `alice:web-1@gateway` with alice's key, the gateway's host key pinned.
async fn connect(env: &Env, login: &str) -> ClientConnection {
    ClientConnection::connect(&ConnectOptions {
        addr: env.gw_addr.clone(),
        user: login.into(),
        identity: Identity::KeyFile(env.key("alice")),
        host_key: HostKeyPolicy::Pinned(
            portcullis_core::keys::parse_public_key(&env.gateway_host_key).unwrap(),
        ),
        connect_timeout: SOON,
    })
    .await
    .unwrap()
}

/// A folder the target's login can write to, and the command that leaves a mark in it: the
/// proof that a command ran on the target, whether or not its output came back.
fn marker() -> (tempfile::TempDir, String) {
    let dir = crate::support::targets::shared_dir();
    let command = format!("touch {}/pwned; echo PWNED", dir.path().display());
    (dir, command)
}

fn ran(dir: &tempfile::TempDir) -> bool {
    // A command sent a moment ago may still be starting.
    std::thread::sleep(Duration::from_millis(500));
    dir.path().join("pwned").exists()
}

/// Send `exec` on a held channel and gather what comes back until it closes (or `limit`).
async fn exec_on(channel: &mut Channel<Msg>, command: &str, limit: Duration) -> (String, bool) {
    let _ = channel.exec(true, command).await;
    let mut out = String::new();
    let mut refused = false;
    let _ = tokio::time::timeout(limit, async {
        while let Some(msg) = channel.wait().await {
            match msg {
                ChannelMsg::Data { data } | ChannelMsg::ExtendedData { data, .. } => {
                    out.push_str(&String::from_utf8_lossy(&data))
                }
                ChannelMsg::Failure => refused = true,
                ChannelMsg::Close => break,
                _ => {}
            }
        }
    })
    .await;
    (out, refused)
}

/// Wait until a held channel is closed by the gateway; how long that took from `since`.
async fn closed(channel: &mut Channel<Msg>, since: Instant) -> Option<Duration> {
    tokio::time::timeout(SOON, async {
        while let Some(msg) = channel.wait().await {
            if matches!(msg, ChannelMsg::Close) {
                break;
            }
        }
        since.elapsed()
    })
    .await
    .ok()
}

/// `12ms after X` or `3ms before X` (the gateway can cut before the thin client has exited).
fn relative(at: Instant, mark: Instant, what: &str) -> String {
    match at.checked_duration_since(mark) {
        Some(d) => format!("{d:?} after {what}"),
        None => format!("{:?} before {what}", mark.duration_since(at)),
    }
}

/// When a held channel is closed by the gateway (`None`: not within [`SOON`]).
async fn closed_at(channel: &mut Channel<Msg>) -> Option<Instant> {
    let since = Instant::now();
    closed(channel, since).await.map(|took| since + took)
}

#[test]
fn a_channel_opened_under_a_grant_cannot_run_a_command_after_its_revocation() {
    let rec = recorded::start();
    let env = &rec.g.env;
    let id = grant(env, "alice", "web-1", "10m");
    let (dir, pwn) = marker();
    runtime().block_on(async {
        let conn = connect(env, "alice:web-1").await;
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(conn.open_session().await.unwrap());
        }
        let mut first = held.remove(0);
        // The channels that just sit there are closed at the grant's end: watched from now.
        let watchers: Vec<_> = held
            .into_iter()
            .map(|mut ch| tokio::spawn(async move { closed_at(&mut ch).await }))
            .collect();
        env.admin("ada", &["revoke", &id.to_string()]).ok();
        let revoked = Instant::now();
        // At the moment of use: the command never reaches the target.
        let (out, _) = exec_on(&mut first, &pwn, Duration::from_secs(3)).await;
        assert!(!out.contains("PWNED"), "ran after the revocation: {out:?}");
        assert!(
            !ran(&dir),
            "the command ran on the target after the revocation"
        );
        for w in watchers {
            let at = w.await.unwrap().expect("held channel never closed");
            let after = at.saturating_duration_since(revoked);
            eprintln!(
                "held channel closed {}",
                relative(at, revoked, "revoke returned")
            );
            assert!(after < Duration::from_secs(2), "{after:?}");
        }
    });
    assert!(
        env.gw_log().contains("revoked; cut"),
        "the cut names the revocation:\n{}",
        env.gw_log()
    );
}

#[test]
fn a_channel_held_past_its_grants_expiry_is_closed_then() {
    let rec = recorded::start();
    let env = &rec.g.env;
    grant(env, "alice", "web-1", "3s");
    let issued = Instant::now();
    let (dir, pwn) = marker();
    runtime().block_on(async {
        let conn = connect(env, "alice:web-1").await;
        let mut held = conn.open_session().await.unwrap();
        let mut spare = conn.open_session().await.unwrap();
        let took = closed(&mut held, issued)
            .await
            .expect("held channel never closed");
        eprintln!("held channel closed {took:?} after the 3 s grant was issued");
        assert!(took < Duration::from_secs(5), "{took:?}");
        let (out, _) = exec_on(&mut spare, &pwn, Duration::from_secs(3)).await;
        assert!(!out.contains("PWNED"), "ran after the expiry: {out:?}");
        assert!(!ran(&dir), "the command ran on the target after the expiry");
    });
    assert!(env.gw_log().contains("expired; cut"), "{}", env.gw_log());
}

#[test]
fn a_channel_held_by_a_removed_key_is_closed_at_the_reload() {
    let rec = recorded::start();
    let env = &rec.g.env;
    grant(env, "alice", "web-1", "10m");
    let (dir, pwn) = marker();
    runtime().block_on(async {
        let conn = connect(env, "alice:web-1").await;
        let mut held = conn.open_session().await.unwrap();
        let mut spare = conn.open_session().await.unwrap();
        let old = std::fs::read_to_string(env.key("alice").with_extension("pub")).unwrap();
        let new = crate::support::keygen(env.path(), "alice_new");
        let cfg = std::fs::read_to_string(&env.config)
            .unwrap()
            .replace(old.trim(), new.trim());
        std::fs::write(&env.config, cfg).unwrap();
        let watcher = tokio::spawn(async move { closed_at(&mut held).await });
        env.admin("ada", &["reload"]).ok();
        let reloaded = Instant::now();
        let (out, _) = exec_on(&mut spare, &pwn, Duration::from_secs(3)).await;
        assert!(
            !out.contains("PWNED"),
            "ran after the key was removed: {out:?}"
        );
        assert!(
            !ran(&dir),
            "the command ran on the target after the key was removed"
        );
        let at = watcher.await.unwrap().expect("never closed");
        eprintln!(
            "held channel closed {}",
            relative(at, reloaded, "the reload returned")
        );
    });
}

#[test]
fn a_pty_or_environment_request_after_the_revocation_is_refused_too() {
    let rec = recorded::start();
    let env = &rec.g.env;
    let id = grant(env, "alice", "web-1", "10m");
    let (dir, pwn) = marker();
    runtime().block_on(async {
        let conn = connect(env, "alice:web-1").await;
        let mut held = conn.open_session().await.unwrap();
        env.admin("ada", &["revoke", &id.to_string()]).ok();
        let _ = held.request_pty(true, "xterm", 80, 24, 0, 0, &[]).await;
        let _ = held.set_env(true, "LANG", "C").await;
        let _ = held.request_shell(true).await;
        let _ = held.data(format!("{pwn}; exit\n").as_bytes()).await;
        let mut out = String::new();
        let _ = tokio::time::timeout(Duration::from_secs(3), async {
            while let Some(msg) = held.wait().await {
                match msg {
                    ChannelMsg::Data { data } => out.push_str(&String::from_utf8_lossy(&data)),
                    ChannelMsg::Close => break,
                    _ => {}
                }
            }
        })
        .await;
        assert!(
            !out.contains("PWNED"),
            "a shell ran after the revocation: {out:?}"
        );
        assert!(
            !ran(&dir),
            "a shell command ran on the target after the revocation"
        );
    });
}

/// Stock `ssh -N` holding an authenticated connection with nothing on it is closed after
/// `idle_timeout`; one with a live forward is not.
#[test]
fn an_authenticated_connection_holding_nothing_is_closed_after_idle_timeout() {
    let g = super::common::start_tuned(|_| String::new(), "idle_timeout = \"2s\"");
    let env = &g.env;
    grant(env, "alice", "echo", "10m");
    let mut idle = env
        .gw_command("alice", &["-N"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut busy = super::common::Tunnel::open(env, "alice", &format!("echo:{}", g.echo.port));
    assert_eq!(busy.echo(b"x"), b"x");
    let started = Instant::now();
    let status = loop {
        if let Some(st) = idle.try_wait().unwrap() {
            break st;
        }
        assert!(
            started.elapsed() < SOON,
            "the idle connection was never closed"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = started.elapsed();
    eprintln!("idle ssh -N closed after {took:?} (idle_timeout 2s)");
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut idle.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("idle"), "{err}");
    // The forward, live all along, is still open.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(busy.echo(b"still here"), b"still here");
    busy.close();
}
