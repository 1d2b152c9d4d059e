//! The gateway side of the test bastion: starting and stopping it, stock `ssh` through it,
//! and talking to the approver as a gateway does.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::*;

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
