//! Recorded-session throughput against plain `ssh` to the same sshd, same cipher
//! (aes256-gcm) on every hop: bulk output, and a pty flood with recording on.
//! A benchmark, not a test: it prints a table of ratios measured in the same run.
//! Run: cargo bench -p portcullis --bench recorded_throughput   (BULK_MB=512 RUNS=3; ONLY_BULK=1
//! runs nothing but the bulk through the gateway, for a profiler)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../../tests/support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::Instant;

use support::median;
use support::targets::Sshd;

/// Keystrokes per echo measurement, in rounds that alternate between the two paths so that a
/// slow spell of the machine lands on both: 20 × 1000 keys a path puts p99 at the 200th
/// worst. (With 5 rounds, the same two builds gave p99 ratios from 1.2× to 2.0× in one
/// afternoon: a p99 over 5,000 samples moves with a single slow spell.)
const KEY_ROUNDS: usize = 20;
const KEYS_PER_ROUND: usize = 1000;

fn timed(mut c: Command) -> f64 {
    let start = Instant::now();
    let st = c
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "{c:?} failed");
    start.elapsed().as_secs_f64()
}

/// Keystroke echo: one byte typed into `cat` on a pty, until the terminal's echo of it comes
/// back; `n` times, in milliseconds. With `pid`, also the CPU that process spent over the `n`
/// keystrokes (login and shell start-up left out), in nanoseconds.
fn echo_latency(mut c: Command, n: usize, pid: Option<u32>) -> (Vec<f64>, u64) {
    use std::io::{Read, Write};
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let mut output = child.stdout.take().unwrap();
    let mut byte = [0u8; 1];
    // Wait until the far side echoes at all (login and shell start-up are not measured).
    input.write_all(b"r").unwrap();
    input.flush().unwrap();
    loop {
        output.read_exact(&mut byte).unwrap();
        if byte[0] == b'r' {
            break;
        }
    }
    let mut times = Vec::with_capacity(n);
    let cpu_before = pid.map(support::cpu_ns);
    for _ in 0..n {
        let start = Instant::now();
        input.write_all(b"k").unwrap();
        input.flush().unwrap();
        loop {
            output.read_exact(&mut byte).unwrap();
            if byte[0] == b'k' {
                break;
            }
        }
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    let cpu = match (pid, cpu_before) {
        (Some(p), Some(before)) => support::cpu_ns(p).saturating_sub(before),
        _ => 0,
    };
    let _ = child.kill();
    let _ = child.wait();
    (times, cpu)
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    support::production_logs();
    let bulk_mb: u64 = support::env_or("BULK_MB", 512);
    let runs: usize = support::env_or("RUNS", 3);
    let dir = tempfile::tempdir().unwrap();
    let mut env = support::Env::prepare("24h", "");
    let alice = std::fs::read_to_string(env.key("alice").with_extension("pub")).unwrap();
    let gw = std::fs::read_to_string(env.path().join("gateway/client_key.pub")).unwrap();
    let sshd = Sshd::start(dir.path(), &format!("{alice}\n{gw}"));
    let cfg = std::fs::read_to_string(&env.config).unwrap()
        + &format!(
            "\n[[targets]]\nname = \"web-1\"\nkind = \"ssh\"\naddress = \"127.0.0.1:{}\"\nlogin = \"{}\"\nhost_key = \"{}\"\nlabels = {{ env = \"staging\" }}\n",
            sshd.port, sshd.login, sshd.host_key
        );
    std::fs::write(&env.config, cfg).unwrap();
    env.start_approver();
    env.start_gateway();
    let out = env.ssh("alice", &["request", "web-1", "--for", "1h"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // Both paths: same client, same cipher, same key exchange.
    let ssh_cfg = env.bench_ssh_config("alice");
    let direct = |cmd: &str, tty: bool| {
        let mut c = Command::new("ssh");
        c.arg("-F")
            .arg(&ssh_cfg)
            .args(["-p", &sshd.port.to_string()]);
        if tty {
            c.arg("-tt");
        }
        c.arg(format!("{}@127.0.0.1", sshd.login)).arg(cmd);
        c
    };
    let through = |cmd: &str, tty: bool| {
        let mut c = Command::new("ssh");
        c.arg("-F").arg(&ssh_cfg).args(["-p", &env.gw_port()]);
        if tty {
            c.arg("-tt");
        }
        c.arg("alice:web-1@127.0.0.1").arg(cmd);
        c
    };
    let bulk = format!("head -c {}M /dev/zero", bulk_mb);
    if std::env::var_os("ONLY_BULK").is_some() {
        // For profiling the gateway's data path (under callgrind, say): bulk through the
        // gateway only, nothing else.
        for _ in 0..runs {
            timed(through(&bulk, false));
        }
        // A moment for a profiler attached to the gateway to collect before it is stopped.
        std::thread::sleep(std::time::Duration::from_secs(3));
        return;
    }
    let flood = "seq 1 3000000";
    let (mut bd, mut bg, mut fd, mut fg) = (vec![], vec![], vec![], vec![]);
    let gw_pid = env.gateway.as_ref().unwrap().id();
    let mut bulk_cpu_ns = 0;
    let mut through_bulk = || {
        let before = support::cpu_ns(gw_pid);
        let t = timed(through(&bulk, false));
        bulk_cpu_ns += support::cpu_ns(gw_pid).saturating_sub(before);
        t
    };
    for run in 0..runs {
        // Which path goes first alternates, so that neither always follows the other.
        if run % 2 == 0 {
            bd.push(timed(direct(&bulk, false)));
            bg.push(through_bulk());
            fd.push(timed(direct(flood, true)));
            fg.push(timed(through(flood, true)));
        } else {
            bg.push(through_bulk());
            bd.push(timed(direct(&bulk, false)));
            fg.push(timed(through(flood, true)));
            fd.push(timed(direct(flood, true)));
        }
    }
    // Not a verdict either: the gateway's CPU per MiB of bulk (its connects included).
    eprintln!(
        "gateway CPU per MiB of recorded bulk: {:.2} ms",
        bulk_cpu_ns as f64 / 1e6 / (runs as f64 * bulk_mb as f64)
    );
    let (bulk_ratio, flood_ratio) = (
        support::paired_ratio(&bd, &bg),
        support::paired_ratio(&fd, &fg),
    );
    let (bd, bg, fd, fg) = (median(bd), median(bg), median(fd), median(fg));
    // Connect: `ssh … true`, the whole round trip (handshake, auth, exec, close).
    let (mut cd, mut cg) = (vec![], vec![]);
    for _ in 0..20 {
        cd.push(timed(direct("true", false)) * 1000.0);
        cg.push(timed(through("true", false)) * 1000.0);
    }
    let (cd, cg) = (median(cd), median(cg));
    let (mut ed, mut eg) = (vec![], vec![]);
    let mut gw_cpu_ns = 0;
    for _ in 0..KEY_ROUNDS {
        ed.extend(echo_latency(direct("cat", true), KEYS_PER_ROUND, None).0);
        let (times, cpu) = echo_latency(through("cat", true), KEYS_PER_ROUND, Some(gw_pid));
        eg.extend(times);
        gw_cpu_ns += cpu;
    }
    // Not a verdict (an absolute cost, machine-bound): what one echoed keystroke costs the
    // gateway, for comparing builds on the same machine.
    eprintln!(
        "gateway CPU per echoed keystroke: {:.1} us",
        gw_cpu_ns as f64 / 1000.0 / (KEY_ROUNDS * KEYS_PER_ROUND) as f64
    );
    let (ed50, ed99) = (percentile(ed.clone(), 0.5), percentile(ed, 0.99));
    let (eg50, eg99) = (percentile(eg.clone(), 0.5), percentile(eg, 0.99));
    let mb = bulk_mb as f64;
    println!("| path | direct ssh | through portcullis (recorded) | ratio | target |");
    println!("|---|---|---|---|---|");
    println!(
        "| bulk `head -c {bulk_mb}M /dev/zero` | {:.0} MB/s | {:.0} MB/s | {bulk_ratio:.2}× | ≥ 0.9× |",
        mb / bd,
        mb / bg,
    );
    println!(
        "| pty flood `ssh -tt … 'seq 1 3000000'`, recording on | {:.2} s | {:.2} s | {flood_ratio:.2}× | ≥ 0.7× |",
        fd,
        fg,
    );
    println!(
        "| keystroke echo on a pty (`cat`), {} keys in {KEY_ROUNDS} alternating rounds, p50 / p99 | {ed50:.2} / {ed99:.2} ms | {eg50:.2} / {eg99:.2} ms | p99 {:.2}× | p99 ≤ 1.5× |",
        KEY_ROUNDS * KEYS_PER_ROUND,
        eg99 / ed99
    );
    println!(
        "| connect `ssh … true`, median of 20 | {cd:.1} ms | {cg:.1} ms | {:.2}× time | ≤ 1.1× |",
        cg / cd
    );
    println!(
        "(throughput: medians of {runs} alternating runs a path; ratios: the median of each pair's own ratio)"
    );
    support::summary(
        "recorded bulk throughput vs direct ssh",
        &format!("{bulk_ratio:.2}×"),
        "≥ 0.9×",
        bulk_ratio >= 0.9,
    );
    support::summary(
        "pty flood with recording vs direct ssh",
        &format!("{flood_ratio:.2}×"),
        "≥ 0.7×",
        flood_ratio >= 0.7,
    );
    support::summary(
        "connect `ssh … true` through the gateway vs direct ssh (time)",
        &format!("{:.2}× ({cg:.0} vs {cd:.0} ms)", cg / cd),
        "≤ 1.1×",
        cg / cd <= 1.1,
    );
    support::summary(
        "keystroke echo p99 vs direct ssh",
        &format!("{:.2}× ({eg99:.2} vs {ed99:.2} ms)", eg99 / ed99),
        "≤ 1.5×",
        eg99 / ed99 <= 1.5,
    );
}
