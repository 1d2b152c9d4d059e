//! Test harness: a temp directory with user keys made by `ssh-keygen`, a config, and a real
//! approver process; helpers to run the stock `ssh` and `portcullis` against it.
#![allow(dead_code)]

pub mod targets;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// Generous bound for anything that should happen "soon" on a loaded 2-core machine.
pub const SOON: Duration = Duration::from_secs(20);

pub struct Env {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub approver: Option<Child>,
    pub addr: String,
    pub host_key: String,
    pub signing_key: String,
    pub gateway_host_key: String,
    pub gateway: Option<Child>,
    pub gw_addr: String,
    /// Extra lines for the gateway's [gateway] section.
    pub gateway_extra: String,
    /// Run the gateway in its own mount namespace with its recordings folder on a tmpfs of
    /// this many KiB (a disk that fills up).
    pub gateway_recordings_kib: Option<u64>,
    /// More environment for the approver and gateway processes (`PORTCULLIS_LOG_FORMAT`).
    pub daemon_env: Vec<(String, String)>,
}

/// The users every test config has, with their groups.
pub const USERS: &[(&str, &[&str])] = &[
    ("alice", &["dev"]),
    ("bob", &["dba"]),
    ("carol", &["dba"]),
    ("dave", &["dev"]),
    ("ada", &["admins"]),
    ("audrey", &["auditors"]),
];

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    fn from(o: Output) -> Out {
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
    pub fn ok(&self) -> &Self {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
    pub fn fails_with(&self, needle: &str) -> &Self {
        assert_ne!(
            self.code, 0,
            "expected failure\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}\nstdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        self
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }
}

/// Today's weekday name, counted from the clock, offset by `days`.
pub fn weekday(days: i64) -> &'static str {
    const NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let day = secs / 86_400 + days;
    NAMES[((day + 3).rem_euclid(7)) as usize]
}

pub fn keygen(dir: &Path, name: &str) -> String {
    let path = dir.join(format!("{name}_key"));
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .status()
        .expect("ssh-keygen");
    assert!(st.success());
    std::fs::read_to_string(path.with_extension("pub"))
        .unwrap()
        .trim()
        .to_string()
}

/// The standard test policies; `extra` is appended (more targets or policies).
pub fn standard_config(env_dir: &Path, port: u16, request_ttl: &str, extra: &str) -> String {
    let mut t = format!(
        r#"
[approver]
listen = "127.0.0.1:{port}"
data_dir = "{dir}/approver"
request_ttl = "{request_ttl}"

[gateway]
data_dir = "{dir}/gateway"

[[gateways]]
name = "gw-1"
key = "{gw}"
"#,
        dir = env_dir.display(),
        gw = gateway_client_key(env_dir),
    );
    for (name, groups) in USERS {
        let key = std::fs::read_to_string(env_dir.join(format!("{name}_key.pub"))).unwrap();
        t.push_str(&format!(
            "\n[[users]]\nname = \"{name}\"\nkeys = [\"{}\"]\ngroups = [{}]\n",
            key.trim(),
            groups
                .iter()
                .map(|g| format!("\"{g}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    t.push_str(&format!(
        r#"
[[targets]]
name = "pg-prod"
kind = "tcp"
address = "127.0.0.1:15432"
labels = {{ env = "prod" }}

[[targets]]
name = "pg-staging"
kind = "tcp"
address = "127.0.0.1:25432"
labels = {{ env = "staging" }}

[[targets]]
name = "pg-weekend"
kind = "tcp"
address = "127.0.0.1:35432"
labels = {{ env = "weekend" }}

[[targets]]
name = "lonely"
kind = "tcp"
address = "127.0.0.1:45432"

[[policies]]
name = "prod"
match = {{ env = "prod" }}
approvers = ["dba"]
approvals = 2
max_duration = "4h"
default_duration = "1h"
require_reason = true

[[policies]]
name = "staging"
match = {{ env = "staging" }}
auto_approve = {{ groups = ["dev"], windows = ["{in_from}-{in_to} 00:00-24:00 UTC"] }}
max_duration = "8h"
default_duration = "2h"

[[policies]]
name = "weekend-only"
match = {{ env = "weekend" }}
auto_approve = {{ groups = ["dev"], windows = ["{out_day} 00:00-24:00 UTC"] }}
max_duration = "8h"
{extra}"#,
        in_from = weekday(-1),
        in_to = weekday(1),
        out_day = weekday(3),
    ));
    t
}

fn gateway_client_key(dir: &Path) -> String {
    // `portcullis keys` makes it; read it back from the .pub file.
    std::fs::read_to_string(dir.join("gateway/client_key.pub"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

impl Env {
    /// A fresh environment with the standard config and a running approver.
    pub fn start() -> Env {
        Env::start_with("24h", "")
    }

    pub fn start_with(request_ttl: &str, extra: &str) -> Env {
        let mut env = Env::prepare(request_ttl, extra);
        env.start_approver();
        env
    }

    /// Keys and config, but no approver yet.
    pub fn prepare(request_ttl: &str, extra: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        for (name, _) in USERS {
            keygen(dir.path(), name);
        }
        // A placeholder config so `portcullis keys` can make the gateway and approver keys.
        let config = dir.path().join("portcullis.toml");
        std::fs::write(
            &config,
            format!(
                "[approver]\ndata_dir = \"{d}/approver\"\n[gateway]\ndata_dir = \"{d}/gateway\"\n",
                d = dir.path().display()
            ),
        )
        .unwrap();
        let keys = run(Command::new(BIN).args(["keys", "--config"]).arg(&config));
        keys.ok();
        let line = |label: &str| {
            keys.stdout
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{label} ")))
                .unwrap()
                .to_string()
        };
        let port = targets::free_port();
        std::fs::write(
            &config,
            standard_config(dir.path(), port, request_ttl, extra),
        )
        .unwrap();
        Env {
            dir,
            config,
            approver: None,
            addr: String::new(),
            host_key: line("approver-host"),
            signing_key: line("grant-signing"),
            gateway_host_key: line("gateway-host"),
            gateway: None,
            gw_addr: String::new(),
            gateway_extra: String::new(),
            gateway_recordings_kib: None,
            daemon_env: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn key(&self, user: &str) -> PathBuf {
        self.path().join(format!("{user}_key"))
    }

    pub fn start_approver(&mut self) {
        let addr_file = self.path().join("approver/approver.addr");
        let _ = std::fs::remove_file(&addr_file);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path().join("approver.log"))
            .unwrap();
        let child = Command::new(BIN)
            .args(["approver", "--config"])
            .arg(&self.config)
            .env("PORTCULLIS_LOG", log_level())
            .envs(self.daemon_env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn approver");
        self.approver = Some(child);
        let deadline = Instant::now() + SOON;
        loop {
            if let Ok(a) = std::fs::read_to_string(&addr_file) {
                if !a.trim().is_empty() && std::net::TcpStream::connect(a.trim()).is_ok() {
                    self.addr = a.trim().to_string();
                    break;
                }
            }
            if let Some(status) = self.approver.as_mut().unwrap().try_wait().unwrap() {
                panic!("approver exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "approver did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let port = self.addr.rsplit(':').next().unwrap();
        std::fs::write(
            self.path().join("known_hosts"),
            format!("[127.0.0.1]:{port} {}\n", self.host_key),
        )
        .unwrap();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path().join("approver.log")).unwrap_or_default()
    }

    /// SIGKILL the approver: no chance to flush anything it has not already flushed.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.approver.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    pub fn pid(&self) -> u32 {
        self.approver.as_ref().unwrap().id()
    }

    /// Stock OpenSSH: `ssh -p PORT USER@127.0.0.1 ARGS…` with the user's key and the pinned
    /// host key.
    pub fn ssh(&self, user: &str, args: &[&str]) -> Out {
        let port = self.addr.rsplit(':').next().unwrap();
        let mut c = Command::new("ssh");
        c.args(["-p", port, "-i"])
            .arg(self.key(user))
            .args([
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=yes",
            ])
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                self.path().join("known_hosts").display()
            ))
            .args(["-o", "LogLevel=ERROR", "-F", "/dev/null", "-n"])
            .arg(format!("{user}@127.0.0.1"))
            .args(args);
        run(&mut c)
    }

    /// `portcullis admin …` as `user`, host key pinned.
    pub fn admin(&self, user: &str, args: &[&str]) -> Out {
        self.portcullis(user, "admin", args)
    }

    /// `portcullis SUB …` (admin, request, audit) as `user`.
    pub fn portcullis(&self, user: &str, sub: &str, args: &[&str]) -> Out {
        run(&mut self.portcullis_command(user, sub, args))
    }

    /// As [`Env::portcullis`], not yet run: for output too large to hold.
    pub fn portcullis_command(&self, user: &str, sub: &str, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg(sub)
            .args(["--approver", &self.addr, "-l", user, "-i"])
            .arg(self.key(user))
            .args(["--approver-host-key", &self.host_key])
            .args(args)
            .env_remove("SSH_AUTH_SOCK");
        c
    }

    /// Wait until `f` holds, checking on a short interval, up to [`SOON`].
    pub fn eventually(&self, what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + SOON;
        while !f() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Audit events (JSON Lines) as read by an auditor.
    pub fn audit_events(&self) -> Vec<serde_json::Value> {
        // Every event, not the newest 1000 a listing shows by default.
        let out = self.admin("audrey", &["--json", "audit", "log", "--limit", "100000"]);
        out.ok();
        out.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub fn has_event(&self, event: &str, field: &str, value: serde_json::Value) -> bool {
        self.audit_events()
            .iter()
            .any(|e| e["event"] == event && e[field] == value)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for c in [self.approver.take(), self.gateway.take()]
            .into_iter()
            .flatten()
        {
            let mut c = c;
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_for_file(path: &Path, child: &mut Child, log: &Path, what: &str) -> String {
    let deadline = Instant::now() + SOON;
    loop {
        if let Ok(a) = std::fs::read_to_string(path) {
            if !a.trim().is_empty() && std::net::TcpStream::connect(a.trim()).is_ok() {
                return a.trim().to_string();
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "{what} exited with {status}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not start:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Env {
    /// Start the gateway with its own config file (pins, and the approver's address), and wait
    /// until it has the catalog from the approver.
    pub fn start_gateway(&mut self) {
        let cfg = self.path().join("gateway.toml");
        std::fs::write(
            &cfg,
            format!(
                "[gateway]\nname = \"gw-1\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{d}/gateway\"\n\
                 approver = \"{a}\"\napprover_host_key = \"{h}\"\ngrant_signing_key = {s}\n{x}\n",
                x = self.gateway_extra,
                d = self.path().display(),
                a = self.addr,
                h = self.host_key,
                // One key, quoted; or a TOML list as given (a rotation rolling out).
                s = if self.signing_key.starts_with('[') {
                    self.signing_key.clone()
                } else {
                    format!("\"{}\"", self.signing_key)
                },
            ),
        )
        .unwrap();
        let addr_file = self.path().join("gateway/gateway.addr");
        let _ = std::fs::remove_file(&addr_file);
        let log_path = self.path().join("gateway.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let mut command = match self.gateway_recordings_kib {
            // For profiling from a benchmark: PORTCULLIS_GATEWAY_PREFIX="heaptrack -o FILE".
            None => match std::env::var("PORTCULLIS_GATEWAY_PREFIX") {
                Ok(prefix) if !prefix.trim().is_empty() => {
                    let mut words = prefix.split_whitespace();
                    let mut c = Command::new(words.next().unwrap_or("env"));
                    c.args(words).arg(BIN);
                    c
                }
                _ => Command::new(BIN),
            },
            Some(kib) => {
                // unshare: a private mount namespace (as root, or as a mapped root where user
                // namespaces are allowed), so the small disk is the gateway's alone.
                let mut c = Command::new("unshare");
                c.args(["-rm", "--propagation", "private", "sh", "-c"])
                    .arg(format!(
                        "mkdir -p \"$0\" && mount -t tmpfs -o size={kib}k tmpfs \"$0\" && exec \"$@\""
                    ))
                    .arg(self.path().join("gateway/recordings"))
                    .arg(BIN);
                c
            }
        };
        let mut child = command
            .args(["gateway", "--config"])
            .arg(&cfg)
            .env("PORTCULLIS_LOG", log_level())
            .envs(self.daemon_env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn gateway");
        self.gw_addr = wait_for_file(&addr_file, &mut child, &log_path, "gateway");
        self.gateway = Some(child);
        let port = self.gw_port();
        std::fs::write(
            self.path().join("gw_known_hosts"),
            format!("[127.0.0.1]:{port} {}\n", self.gateway_host_key),
        )
        .unwrap();
        // The gateway authenticates users from the catalog it receives: wait for it.
        let deadline = Instant::now() + SOON;
        while self.gw_ssh("alice", &["whoami"]).code != 0 {
            assert!(
                Instant::now() < deadline,
                "gateway never synced:\n{}",
                self.gw_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn gw_log(&self) -> String {
        std::fs::read_to_string(self.path().join("gateway.log")).unwrap_or_default()
    }

    pub fn gw_port(&self) -> String {
        self.gw_addr.rsplit(':').next().unwrap().to_string()
    }

    /// Stop the approver as systemd does (SIGTERM) and wait for it: its exit status, and how
    /// long it took.
    pub fn stop_approver(&mut self) -> (std::process::ExitStatus, Duration) {
        let c = self.approver.take().expect("the approver is running");
        sigterm(c)
    }

    /// Stop the gateway as systemd does (SIGTERM) and wait for it: its exit status, and how
    /// long it took.
    pub fn stop_gateway(&mut self) -> (std::process::ExitStatus, Duration) {
        let c = self.gateway.take().expect("the gateway is running");
        sigterm(c)
    }

    pub fn kill9_gateway(&mut self) {
        if let Some(mut c) = self.gateway.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// An ssh config for going through the gateway: shared options under `Host *` so they
    /// reach `-J` hops too (FIELD-NOTES).
    pub fn ssh_config(&self, user: &str) -> PathBuf {
        let p = self.path().join(format!("ssh_config_{user}"));
        write_if_changed(
            &p,
            format!(
                "Host *\n  IdentityFile {key}\n  IdentitiesOnly yes\n  BatchMode yes\n  StrictHostKeyChecking yes\n  \
                 UserKnownHostsFile {kh}\n  LogLevel INFO\n",
                key = self.key(user).display(),
                kh = self.path().join("gw_known_hosts").display(),
            ),
        )
        .unwrap();
        p
    }

    /// An ssh config for benchmarks: the same client settings on every path compared, with
    /// aes256-gcm and curve25519 forced (FIELD-NOTES), host keys not checked.
    pub fn bench_ssh_config(&self, user: &str) -> PathBuf {
        let p = self.path().join(format!("bench_ssh_config_{user}"));
        write_if_changed(
            &p,
            format!(
                "Host *\n  IdentityFile {}\n  IdentitiesOnly yes\n  BatchMode yes\n  StrictHostKeyChecking no\n  \
                 UserKnownHostsFile /dev/null\n  LogLevel ERROR\n  Ciphers aes256-gcm@openssh.com\n  KexAlgorithms curve25519-sha256\n",
                self.key(user).display()
            ),
        )
        .unwrap();
        p
    }

    /// `ssh -p GATEWAY USER@127.0.0.1 ARGS…` (stock OpenSSH), without running it.
    pub fn gw_command(&self, user: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ssh");
        c.arg("-F")
            .arg(self.ssh_config(user))
            .args(["-p", &self.gw_port()])
            .arg(format!("{user}@127.0.0.1"))
            .args(args);
        c
    }

    pub fn gw_ssh(&self, user: &str, args: &[&str]) -> Out {
        let mut c = Command::new("ssh");
        c.arg("-n")
            .arg("-F")
            .arg(self.ssh_config(user))
            .args(["-p", &self.gw_port()])
            .arg(format!("{user}@127.0.0.1"))
            .args(args);
        run(&mut c)
    }
}

/// What a command run as a gateway answered: its exit status, stdout and stderr.
pub struct GatewayReply {
    pub code: Option<u32>,
    pub stdout: String,
    pub stderr: String,
}

impl Env {
    /// Run `line` on the approver as gateway `name` (its client key at `key`), with `input` as
    /// its standard input: how tests drive the approver's gateway commands (`report`) directly.
    pub fn as_gateway(&self, name: &str, key: &Path, line: &str, input: &[u8]) -> GatewayReply {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let conn = portcullis_ssh::ClientConnection::connect(&portcullis_ssh::ConnectOptions {
                addr: self.addr.clone(),
                user: name.into(),
                identity: portcullis_ssh::Identity::KeyFile(key.to_path_buf()),
                host_key: portcullis_ssh::HostKeyPolicy::Pinned(
                    portcullis_core::keys::parse_public_key(&self.host_key).unwrap(),
                ),
                connect_timeout: SOON,
            })
            .await
            .unwrap();
            let (status, out, err) = conn.run_with_input(line, input).await.unwrap();
            GatewayReply {
                code: status.exit_status,
                stdout: String::from_utf8_lossy(&out).into_owned(),
                stderr: String::from_utf8_lossy(&err).into_owned(),
            }
        })
    }

    /// [`Env::as_gateway`] as this environment's gw-1.
    pub fn as_gw1(&self, line: &str, input: &[u8]) -> GatewayReply {
        self.as_gateway("gw-1", &self.path().join("gateway/client_key"), line, input)
    }
}

/// SIGTERM a daemon and wait for it: its exit status and how long it took.
fn sigterm(mut c: Child) -> (std::process::ExitStatus, Duration) {
    let started = Instant::now();
    let st = Command::new("kill")
        .args(["-TERM", &c.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    (c.wait().unwrap(), started.elapsed())
}

/// Write `text` to `path` unless it is there already: an ssh client that started a moment ago
/// may be reading the file, and a rewrite (truncate, then write) could show it an empty config.
fn write_if_changed(path: &Path, text: String) -> std::io::Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    std::fs::write(path, text)
}

/// Stock `ssh -v -n` to `127.0.0.1:PORT` as `login` with exactly these identity files and
/// public-key authentication only, host keys not checked (for refusals, where the server's
/// identity is not what is tested); `opts` go before the destination, `args` after it.
pub fn ssh_with_keys(port: &str, login: &str, keys: &[&Path], opts: &[&str], args: &[&str]) -> Out {
    let mut c = Command::new("ssh");
    c.args(["-v", "-n", "-F", "/dev/null", "-p", port]);
    for k in keys {
        c.arg("-i").arg(k);
    }
    c.args([
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "PreferredAuthentications=publickey",
    ])
    .args(opts)
    .arg(format!("{login}@127.0.0.1"))
    .args(args);
    run(&mut c)
}

pub fn run(c: &mut Command) -> Out {
    Out::from(c.stdin(Stdio::null()).output().expect("run command"))
}

/// The median of some timings (benchmarks).
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

/// The log level the approver and gateway run with: debug for tests (their logs are read on
/// failure), `PORTCULLIS_TEST_LOG` to change it.
fn log_level() -> String {
    std::env::var("PORTCULLIS_TEST_LOG").unwrap_or_else(|_| "debug".into())
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

/// A `[[targets]]` entry for a TCP service on loopback, labelled `env = "staging"` (which the
/// standard policies auto-approve for the dev group).
pub fn tcp_target(name: &str, port: u16) -> String {
    format!(
        "\n[[targets]]\nname = \"{name}\"\nkind = \"tcp\"\naddress = \"127.0.0.1:{port}\"\nlabels = {{ env = \"staging\" }}\n"
    )
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

/// The request id in `request` JSON output.
pub fn request_id(out: &Out) -> u64 {
    out.ok();
    out.json()["request"]["id"].as_u64().unwrap()
}
