//! What the benchmarks share: process measurements, their shape from the environment, and
//! the verdict lines `bench/run` gathers.

/// A process's resident memory in KiB, from /proc.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// CPU time a process's live threads have spent running, in nanoseconds (the first field of
/// each thread's `schedstat`: exact, where `/proc/PID/stat` counts 10 ms ticks). Threads that
/// exited no longer count (tokio's blocking threads leave after 10 s idle), so take
/// differences with `saturating_sub` and over spans where the work keeps them alive.
pub fn cpu_ns(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Benchmarks run the processes as production does: info-level logs (russh's per-packet debug
/// lines cost a measurable share of a bulk transfer).
pub fn production_logs() {
    if std::env::var_os("PORTCULLIS_TEST_LOG").is_none() {
        std::env::set_var("PORTCULLIS_TEST_LOG", "info");
    }
}

/// A benchmark's shape from the environment (`SESSIONS=2000`), or its default.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// One line of a benchmark's verdict, for `bench/run` to gather into the summary table of
/// docs/benchmarks.md: what was measured, the number, the target, and whether it was met.
pub fn summary(what: &str, measured: &str, target: &str, met: bool) {
    println!(
        "SUMMARY|{what}|{measured}|{target}|{}",
        if met { "met" } else { "**missed**" }
    );
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// The median of each alternating pair's own ratio, reference time over candidate time (above
/// 1 when the candidate is faster): the two runs of a pair are seconds apart, so a slow spell of
/// the machine weighs on both sides of one ratio rather than on one side's median.
pub fn paired_ratio(reference: &[f64], candidate: &[f64]) -> f64 {
    median(
        reference
            .iter()
            .zip(candidate)
            .map(|(r, c)| r / c)
            .collect(),
    )
}
