//! The SSH approve round trip: an approver's `approve` exec over an established SSH
//! connection to the real approver process, from request to the grant's acknowledgement
//! (policy check, signing, audit chaining, sled commit and flush included).
//! Run: cargo bench -p portcullis --bench approve_round_trip

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis_ssh::{ClientConnection, ConnectOptions, HostKeyPolicy, Identity};

const EXTRA: &str = r#"
[[targets]]
name = "bench-db"
kind = "tcp"
address = "127.0.0.1:55432"
labels = { env = "bench" }

[[policies]]
name = "bench"
match = { env = "bench" }
approvers = ["dba"]
approvals = 1
max_duration = "1h"
"#;

fn connect(rt: &tokio::runtime::Runtime, env: &support::Env, user: &str) -> ClientConnection {
    rt.block_on(ClientConnection::connect(&ConnectOptions {
        addr: env.addr.clone(),
        user: user.into(),
        identity: Identity::KeyFile(env.key(user)),
        host_key: HostKeyPolicy::Pinned(
            portcullis_core::keys::parse_public_key(&env.host_key).unwrap(),
        ),
        connect_timeout: Duration::from_secs(20),
    }))
    .unwrap()
}

fn run(rt: &tokio::runtime::Runtime, conn: &ClientConnection, line: &str) -> String {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let r = rt.block_on(conn.run(line, &mut out, &mut err)).unwrap();
    assert_eq!(r.exit_status, Some(0), "{}", String::from_utf8_lossy(&err));
    String::from_utf8(out).unwrap()
}

fn bench(c: &mut Criterion) {
    support::production_logs();
    let env = support::Env::start_with("24h", EXTRA);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let alice = connect(&rt, &env, "alice");
    let bob = connect(&rt, &env, "bob");
    let mut group = c.benchmark_group("control plane");
    group.sample_size(30);
    group.bench_function("ssh approve round trip (grant issued)", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let out = run(&rt, &alice, "request bench-db --for 10m --json");
                let v: serde_json::Value = serde_json::from_str(&out).unwrap();
                let id = v["request"]["id"].as_u64().unwrap();
                let start = Instant::now();
                let reply = run(&rt, &bob, &format!("approve {id}"));
                total += start.elapsed();
                assert!(reply.contains("approved"), "{reply}");
            }
            total
        })
    });
    group.bench_function("ssh whoami round trip (read only)", |b| {
        b.iter(|| run(&rt, &bob, "whoami"))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
