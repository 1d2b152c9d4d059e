//! Forward throughput with `[gateway] metrics` on against off: the same `ssh -N -L` forward
//! through the real gateway, restarted with and without the metrics listener in alternating
//! pairs, while a scraper reads `/metrics` every SCRAPE_MS (1 s: fifteen times Prometheus's
//! default rate, to be pessimistic).
//!
//! Run: cargo bench -p portcullis --bench metrics_overhead   (FORWARD_MB=256 RUNS=7 SCRAPE_MS=1000)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../../tests/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::median;
use support::targets::{free_port, throughput_sink, timed_push};

/// Scrape `/metrics` at `addr_file`'s address every `every` until `stop`.
fn scraper(addr_file: std::path::PathBuf, every: Duration, stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if let Ok(addr) = std::fs::read_to_string(&addr_file) {
                if let Ok(mut s) = TcpStream::connect(addr.trim()) {
                    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n");
                    let mut out = Vec::new();
                    let _ = s.read_to_end(&mut out);
                }
            }
            std::thread::sleep(every);
        }
    });
}

fn main() {
    support::production_logs();
    let mb: u64 = support::env_or("FORWARD_MB", 256);
    let runs: usize = support::env_or("RUNS", 7);
    let scrape = Duration::from_millis(support::env_or("SCRAPE_MS", 1000));
    let sink_port = throughput_sink();
    let mut env = support::Env::prepare("24h", &support::tcp_target("sink", sink_port));
    env.start_approver();
    assert_eq!(
        env.ssh("alice", &["request", "sink", "--for", "1h"]).code,
        0
    );
    let cfg = env.bench_ssh_config("alice");
    let addr_file = env.path().join("gateway/metrics.addr");
    let bytes = mb * 1024 * 1024;
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let order = if run % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for metrics in order {
            env.kill9_gateway();
            let _ = std::fs::remove_file(&addr_file);
            env.gateway_extra = if metrics {
                "metrics = \"127.0.0.1:0\"\n".into()
            } else {
                String::new()
            };
            env.start_gateway();
            let stop = Arc::new(AtomicBool::new(false));
            if metrics {
                scraper(addr_file.clone(), scrape, stop.clone());
            }
            let local = free_port();
            let mut child = Command::new("ssh")
                .arg("-F")
                .arg(&cfg)
                .args(["-N", "-o", "ExitOnForwardFailure=yes", "-p", &env.gw_port()])
                .args([
                    "-L",
                    &format!("{local}:sink:{sink_port}"),
                    "alice@127.0.0.1",
                ])
                .stdin(Stdio::null())
                .spawn()
                .unwrap();
            let t = timed_push(local, bytes);
            stop.store(true, Ordering::Relaxed);
            let _ = child.kill();
            let _ = child.wait();
            if metrics {
                on.push(t)
            } else {
                off.push(t)
            }
        }
    }
    // Time off over time on, pair by pair: above 1 means metrics on was faster.
    let ratio = support::paired_ratio(&off, &on);
    let (on, off) = (median(on), median(off));
    let m = mb as f64;
    println!("| path | metrics off | metrics on (scraped every {scrape:?}) | ratio (off/on time) | target |");
    println!("|---|---|---|---|---|");
    println!(
        "| `ssh -N -L` forward through the gateway, {mb} MiB, {runs} alternating pairs: medians, median of the pairs' ratios | {:.0} MB/s | {:.0} MB/s | {ratio:.2}× | ≥ 0.98× |",
        m / off,
        m / on,
    );
    support::summary(
        "forward throughput, metrics on vs off",
        &format!("{ratio:.2}×"),
        "≥ 0.98×",
        ratio >= 0.98,
    );
}
