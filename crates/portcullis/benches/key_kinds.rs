//! Connect latency through the gateway by kind of credential (#13): the stock `ssh -W
//! target:port` round trip (handshake, authentication, channel open, close) with an ed25519
//! key, an RSA-3072 key, an ECDSA-256 key and an ed25519 key with a user certificate
//! (`ssh-keygen -s`), interleaved, aes256-gcm and curve25519 forced. The reference is
//! ed25519; the target is each within 1.1× of it.
//!
//! A benchmark, not a test: it prints a table of ratios measured in the same run.
//! Run: cargo bench -p portcullis --bench key_kinds   (CONNECTS=40)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use support::median;
use support::targets::throughput_sink;

fn keygen(dir: &Path, name: &str, kind: &str, bits: &str) -> PathBuf {
    let path = dir.join(name);
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-b", bits, "-N", "", "-C", name, "-f"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(st.success());
    path
}

fn public(key: &Path) -> String {
    std::fs::read_to_string(key.with_extension("pub"))
        .unwrap()
        .trim()
        .to_string()
}

fn main() {
    support::production_logs();
    let connects: usize = support::env_or("CONNECTS", 40);
    let sink_port = throughput_sink();
    let keys = tempfile::tempdir().unwrap();
    let ed = keygen(keys.path(), "ed25519", "ed25519", "256");
    let rsa = keygen(keys.path(), "rsa3072", "rsa", "3072");
    let ecdsa = keygen(keys.path(), "ecdsa256", "ecdsa", "256");
    let ca = keygen(keys.path(), "ca", "ed25519", "256");
    let cert_key = keygen(keys.path(), "certified", "ed25519", "256");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-s"])
        .arg(&ca)
        .args(["-I", "bench", "-n", "cora", "-V", "-5m:+2h", "-z", "1"])
        .arg(cert_key.with_extension("pub"))
        .status()
        .unwrap();
    assert!(st.success());
    let extra = format!(
        "{}\n[[users]]\nname = \"kim\"\nkeys = [\"{}\", \"{}\", \"{}\"]\ngroups = [\"dev\"]\n\n\
         [[users]]\nname = \"cora\"\ngroups = [\"dev\"]\n\n[[user_cas]]\nname = \"corp\"\nkey = \"{}\"\n",
        support::tcp_target("sink", sink_port),
        public(&ed),
        public(&rsa),
        public(&ecdsa),
        public(&ca),
    );
    let mut env = support::Env::prepare("24h", &extra);
    env.start_approver();
    env.start_gateway();
    for user in ["kim", "cora"] {
        let out = support::ssh_with_keys(
            &env.gw_port(),
            user,
            &[if user == "kim" { &ed } else { &cert_key }],
            &[],
            &["request", "sink", "--for", "1h"],
        );
        assert_eq!(out.code, 0, "{user}: {}", out.stderr);
    }
    let config = |key: &Path, name: &str, extra: &str| -> PathBuf {
        let p = keys.path().join(format!("cfg-{name}"));
        std::fs::write(
            &p,
            format!(
                "Host *\n  IdentityFile {}\n  IdentitiesOnly yes\n  BatchMode yes\n  StrictHostKeyChecking no\n  \
                 UserKnownHostsFile /dev/null\n  LogLevel ERROR\n  Ciphers aes256-gcm@openssh.com\n  KexAlgorithms curve25519-sha256\n{extra}",
                key.display()
            ),
        )
        .unwrap();
        p
    };
    // (label, user, ssh config): the certificate is picked up beside its key.
    // OpenSSH offers the plain key before its certificate; the plain key is nobody's, and its
    // offer is refused (after the gateway's 1 ms refusal floor) before the certificate is
    // tried. The last row has the client offer only certificates: the certificate path alone.
    let kinds = [
        ("ed25519 key", "kim", config(&ed, "ed", "")),
        ("RSA-3072 key", "kim", config(&rsa, "rsa", "")),
        ("ECDSA-256 key", "kim", config(&ecdsa, "ecdsa", "")),
        (
            "ed25519 user certificate, as ssh offers it (plain key first)",
            "cora",
            config(&cert_key, "cert", ""),
        ),
        (
            "ed25519 user certificate, offered first (PubkeyAcceptedAlgorithms)",
            "cora",
            config(
                &cert_key,
                "cert-first",
                "  PubkeyAcceptedAlgorithms ssh-ed25519-cert-v01@openssh.com\n",
            ),
        ),
    ];
    let gw_port = env.gw_port();
    let connect = |user: &str, cfg: &Path| -> f64 {
        let start = Instant::now();
        let st = Command::new("ssh")
            .arg("-F")
            .arg(cfg)
            .args(["-p", &gw_port, "-W", &format!("sink:{sink_port}")])
            .arg(format!("{user}@127.0.0.1"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "{user} {}", cfg.display());
        start.elapsed().as_secs_f64() * 1000.0
    };
    // Warm up each path once, then interleave so that a slow spell of the machine falls on
    // every kind alike.
    for (_, user, cfg) in &kinds {
        connect(user, cfg);
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); kinds.len()];
    for round in 0..connects {
        for i in 0..kinds.len() {
            // Rotate which kind goes first each round.
            let k = (i + round) % kinds.len();
            let (_, user, cfg) = &kinds[k];
            times[k].push(connect(user, cfg));
        }
    }
    // Ratios per round against that round's ed25519 connect, then the median of those.
    let reference = times[0].clone();
    println!("| credential | connect `ssh -W` round trip, median of {connects} | ratio to ed25519 (median of per-round ratios) | target |");
    println!("|---|---|---|---|");
    for (k, (label, _, _)) in kinds.iter().enumerate() {
        let ratio = median(
            times[k]
                .iter()
                .zip(&reference)
                .map(|(t, r)| t / r)
                .collect(),
        );
        let m = median(times[k].clone());
        let target = if k == 0 { "reference" } else { "≤ 1.1×" };
        println!("| {label} | {m:.1} ms | {ratio:.2}× | {target} |");
        if k > 0 {
            support::summary(
                &format!("connect through the gateway, {label}, vs an ed25519 key (time)"),
                &format!(
                    "{ratio:.2}× ({m:.0} vs {:.0} ms)",
                    median(reference.clone())
                ),
                "≤ 1.1×",
                ratio <= 1.1,
            );
        }
    }
}
