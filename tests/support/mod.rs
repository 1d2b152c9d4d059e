//! Test harness: a temp directory with user keys made by `ssh-keygen`, a config, and a real
//! approver process; helpers to run the stock `ssh` and `portcullis` against it.
#![allow(dead_code)]

pub mod agent;
mod bench;
mod config;
pub mod docs;
pub mod fido;
mod gateway;
mod out;
pub mod russh_client;
pub mod targets;

// Each test crate and bench uses its own part of the harness.
#[allow(unused_imports)]
pub use {bench::*, config::*, gateway::*, out::*};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// The log level the approver and gateway run with: debug for tests (their logs are read on
/// failure), `PORTCULLIS_TEST_LOG` to change it.
fn log_level() -> String {
    std::env::var("PORTCULLIS_TEST_LOG").unwrap_or_else(|_| "debug".into())
}
