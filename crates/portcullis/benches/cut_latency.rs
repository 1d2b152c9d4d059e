//! Cut latency: from a grant's end (its expiry instant, or `revoke` returning) to the moment
//! the SSH client sees its forwarded channel closed, over many sessions through the real
//! gateway. A benchmark, not a test: it prints a table and asserts nothing about time.
//! Run: cargo bench -p portcullis --bench cut_latency  (SESSIONS=50 ROUNDS=4 by default)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../../tests/support/mod.rs"]
mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_ssh::{ClientConnection, ConnectOptions, HostKeyPolicy, Identity};
use russh::ChannelMsg;
use support::targets::EchoProcess;

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

fn options(env: &support::Env, user: &str, addr: &str, host_key: &str) -> ConnectOptions {
    ConnectOptions {
        addr: addr.to_string(),
        user: user.into(),
        identity: Identity::KeyFile(env.key(user)),
        host_key: HostKeyPolicy::Pinned(portcullis_core::keys::parse_public_key(host_key).unwrap()),
        connect_timeout: Duration::from_secs(30),
    }
}

async fn exec(conn: &ClientConnection, line: &str) -> String {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let r = conn.run(line, &mut out, &mut err).await.unwrap();
    assert_eq!(r.exit_status, Some(0), "{}", String::from_utf8_lossy(&err));
    String::from_utf8(out).unwrap()
}

/// Open `n` sessions at once (one connection each) to the echo target; once all are up,
/// return tasks that yield the instant (ms since the epoch) each saw its channel close.
async fn sessions(
    env: &support::Env,
    n: usize,
    echo_port: u16,
) -> Vec<tokio::task::JoinHandle<f64>> {
    let mut handles = Vec::new();
    let mut ready = Vec::new();
    for _ in 0..n {
        let opts = options(env, "alice", &env.gw_addr, &env.gateway_host_key);
        let (up_tx, up_rx) = tokio::sync::oneshot::channel();
        ready.push(up_rx);
        handles.push(tokio::spawn(async move {
            let conn = ClientConnection::connect(&opts).await.unwrap();
            let mut ch = conn
                .direct_tcpip("echo", u32::from(echo_port))
                .await
                .unwrap();
            ch.data(&b"ping"[..]).await.unwrap();
            // Wait for the echo so the session is fully up before the clock starts.
            loop {
                match ch.wait().await {
                    Some(ChannelMsg::Data { .. }) => break,
                    Some(_) => {}
                    None => panic!("channel closed before the echo"),
                }
            }
            let _ = up_tx.send(());
            loop {
                match ch.wait().await {
                    Some(ChannelMsg::Close) | None => return now_ms(),
                    Some(_) => {}
                }
            }
        }));
    }
    for r in ready {
        r.await.unwrap();
    }
    handles
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn main() {
    support::targets::serve_echo_if_asked();
    support::production_logs();
    let per_round: usize = support::env_or("SESSIONS", 50);
    let rounds: usize = support::env_or("ROUNDS", 4);
    let echo = EchoProcess::start();
    let mut env = support::Env::prepare("24h", &support::tcp_target("echo", echo.port));
    env.start_approver();
    // One user holds every session, each on a connection of its own: past the per-user cap.
    env.gateway_extra = format!(
        "max_connections_per_user = {}\nmax_channel_memory_per_user = \"{} MiB\"",
        per_round * 2 + 16,
        (per_round * 2 + 16) * 6
    );
    env.start_gateway();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (expiry, revoke) = rt.block_on(async {
        let alice = ClientConnection::connect(&options(&env, "alice", &env.addr, &env.host_key))
            .await
            .unwrap();
        let ada = ClientConnection::connect(&options(&env, "ada", &env.addr, &env.host_key))
            .await
            .unwrap();
        let mut expiry = Vec::new();
        let mut revoke = Vec::new();
        for _ in 0..rounds {
            // Expiry: a grant long enough to open every session under it first.
            let grant: serde_json::Value =
                serde_json::from_str(&exec(&alice, "request echo --for 20s --json").await).unwrap();
            let end = grant["grant"]["expires_at_ms"].as_f64().unwrap();
            let hs = sessions(&env, per_round, echo.port).await;
            assert!(
                now_ms() < end,
                "opening {per_round} sessions took longer than the grant"
            );
            for h in hs {
                expiry.push(h.await.unwrap() - end);
            }

            // Revocation: measured from the moment `revoke` returns.
            let grant: serde_json::Value =
                serde_json::from_str(&exec(&alice, "request echo --for 10m --json").await).unwrap();
            let id = grant["grant"]["id"].as_u64().unwrap();
            let hs = sessions(&env, per_round, echo.port).await;
            exec(&ada, &format!("revoke {id}")).await;
            let returned = now_ms();
            for h in hs {
                revoke.push(h.await.unwrap() - returned);
            }
        }
        (expiry, revoke)
    });
    let table = |name: &str, mut v: Vec<f64>, target: &str| -> f64 {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "| {name} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {target} |",
            v.len(),
            percentile(&v, 0.5),
            percentile(&v, 0.99),
            v[v.len() - 1],
        );
        percentile(&v, 0.99)
    };
    println!("| cut after | sessions | p50 | p99 | max | target p99 |");
    println!("|---|---|---|---|---|---|");
    let n_expiry = expiry.len();
    let expiry_p99 = table(
        "grant expiry (expires_at → client sees close)",
        expiry,
        "< 10 ms",
    );
    let revoke_p99 = table(
        "revoke (revoke returns → client sees close)",
        revoke,
        "< 50 ms",
    );
    support::summary(
        &format!("cut after expiry, p99 over {n_expiry} sessions"),
        &format!("{expiry_p99:.1} ms"),
        "< 10 ms",
        expiry_p99 < 10.0,
    );
    support::summary(
        "cut after revoke, p99",
        &format!("{revoke_p99:.1} ms"),
        "< 50 ms",
        revoke_p99 < 50.0,
    );
}
