//! Portcullis side by side with OpenSSH's own sshd as the jump host, same client, same cipher
//! (aes256-gcm) and key exchange (curve25519) on every hop, on loopback:
//! - forward throughput: `ssh -N -L` through the gateway vs through sshd, 256 MiB a run;
//! - connect latency: `ssh -W target:port` (handshake, auth, channel open, close) through each.
//!
//! A benchmark, not a test: it prints a table of ratios measured in the same run.
//! Run: cargo bench -p portcullis --bench versus_openssh   (FORWARD_MB=256 RUNS=5 CONNECTS=20)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../../tests/support/mod.rs"]
mod support;

use std::process::{Child, Command, Stdio};
use std::time::Instant;

use support::median;
use support::targets::{free_port, throughput_sink, timed_push, Sshd};

fn main() {
    support::production_logs();
    let mb: u64 = support::env_or("FORWARD_MB", 256);
    let runs: usize = support::env_or("RUNS", 5);
    let connects: usize = support::env_or("CONNECTS", 20);
    let sink_port = throughput_sink();
    let dir = tempfile::tempdir().unwrap();
    let mut env = support::Env::prepare("24h", &support::tcp_target("sink", sink_port));
    let alice = std::fs::read_to_string(env.key("alice").with_extension("pub")).unwrap();
    let sshd = Sshd::start(dir.path(), &alice);
    env.start_approver();
    env.start_gateway();
    assert_eq!(
        env.ssh("alice", &["request", "sink", "--for", "1h"]).code,
        0
    );
    let cfg = env.bench_ssh_config("alice");
    let gw_port = env.gw_port();
    let sshd_port = sshd.port.to_string();
    let forward = |via_gateway: bool| -> (Child, u16) {
        let local = free_port();
        let mut c = Command::new("ssh");
        c.arg("-F")
            .arg(&cfg)
            .args(["-N", "-o", "ExitOnForwardFailure=yes"]);
        if via_gateway {
            c.args([
                "-p",
                &gw_port,
                "-L",
                &format!("{local}:sink:{sink_port}"),
                "alice@127.0.0.1",
            ]);
        } else {
            c.args([
                "-p",
                &sshd_port,
                "-L",
                &format!("{local}:127.0.0.1:{sink_port}"),
            ])
            .arg(format!("{}@127.0.0.1", sshd.login));
        }
        (c.stdin(Stdio::null()).spawn().unwrap(), local)
    };
    let bytes = mb * 1024 * 1024;
    let (mut tg, mut ts) = (Vec::new(), Vec::new());
    for run in 0..runs {
        // Which path goes first alternates too, so that neither always follows the other's
        // teardown.
        let order = if run % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for via in order {
            let (mut child, port) = forward(via);
            let t = timed_push(port, bytes);
            let _ = child.kill();
            let _ = child.wait();
            if via {
                tg.push(t)
            } else {
                ts.push(t)
            }
        }
    }
    let connect = |via_gateway: bool| -> f64 {
        let mut c = Command::new("ssh");
        c.arg("-F").arg(&cfg);
        if via_gateway {
            c.args([
                "-p",
                &gw_port,
                "-W",
                &format!("sink:{sink_port}"),
                "alice@127.0.0.1",
            ]);
        } else {
            c.args(["-p", &sshd_port, "-W", &format!("127.0.0.1:{sink_port}")])
                .arg(format!("{}@127.0.0.1", sshd.login));
        }
        let start = Instant::now();
        let st = c
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
        start.elapsed().as_secs_f64() * 1000.0
    };
    let (mut cg, mut cs) = (Vec::new(), Vec::new());
    for _ in 0..connects {
        cg.push(connect(true));
        cs.push(connect(false));
    }
    let ratio = support::paired_ratio(&ts, &tg);
    let (tg, ts, cg, cs) = (median(tg), median(ts), median(cg), median(cs));
    let m = mb as f64;
    println!("| path | OpenSSH sshd as jump host | portcullis gateway | ratio (sshd/portcullis time) | target |");
    println!("|---|---|---|---|---|");
    println!(
        "| `ssh -N -L` forward, {mb} MiB, {runs} alternating pairs: medians, median of the pairs' ratios | {:.0} MB/s | {:.0} MB/s | {ratio:.2}× | ≥ 1.0× |",
        m / ts,
        m / tg,
    );
    println!(
        "| connect `ssh -W target:port` round trip, median of {connects} | {cs:.1} ms | {cg:.1} ms | {:.2}× (latency ratio {:.2}) | latency ≤ 1.1× |",
        cs / cg,
        cg / cs
    );
    support::summary(
        "`ssh -L` forward throughput vs through sshd",
        &format!("{ratio:.2}×"),
        "≥ 1.0×",
        ratio >= 1.0,
    );
    support::summary(
        "connect `ssh -W` through the gateway vs through sshd (time)",
        &format!("{:.2}× ({cg:.0} vs {cs:.0} ms)", cg / cs),
        "≤ 1.1×",
        cg / cs <= 1.1,
    );
}
