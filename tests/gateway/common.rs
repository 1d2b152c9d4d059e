//! Shared pieces of the gateway tests: an environment with echo targets, and a stdio tunnel.

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::time::{Duration, Instant};

use crate::support::targets::Echo;
use crate::support::{Env, SOON};

pub struct GwEnv {
    pub env: Env,
    pub echo: Echo,
    pub echo_b: Echo,
    pub stray: Echo,
}

/// Approver and gateway with two echo targets (auto-approved for dev in staging) and a
/// listener that is not a target at all.
pub fn start(extra: &str) -> GwEnv {
    start_with(|_| extra.to_string())
}

/// As [`start`], with config text made once the user keys exist (for targets that need them).
pub fn start_with(more: impl FnOnce(&Env) -> String) -> GwEnv {
    start_tuned(more, "")
}

/// As [`start_with`], with more lines for the `[gateway]` section.
pub fn start_tuned(more: impl FnOnce(&Env) -> String, gateway_extra: &str) -> GwEnv {
    start_full(more, gateway_extra, None)
}

/// As [`start_tuned`], optionally with the gateway's recordings on a small disk of its own.
pub fn start_full(
    more: impl FnOnce(&Env) -> String,
    gateway_extra: &str,
    recordings_kib: Option<u64>,
) -> GwEnv {
    let echo = Echo::start();
    let echo_b = Echo::start();
    let stray = Echo::start();
    let targets = crate::support::tcp_target("echo", echo.port)
        + &crate::support::tcp_target("echo-b", echo_b.port);
    let mut env = Env::prepare("24h", &targets);
    let extra = more(&env);
    let cfg = std::fs::read_to_string(&env.config).unwrap() + &extra;
    std::fs::write(&env.config, cfg).unwrap();
    env.gateway_extra = format!("expiry_warning = \"2s\"\n{gateway_extra}");
    env.gateway_recordings_kib = recordings_kib;
    env.start_approver();
    env.start_gateway();
    GwEnv {
        env,
        echo,
        echo_b,
        stray,
    }
}

/// `ssh -W host:port` through the gateway, with its stdin and stdout in our hands.
pub struct Tunnel {
    pub child: Child,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
}

impl Tunnel {
    pub fn open(env: &Env, user: &str, dest: &str) -> Tunnel {
        let mut child = env
            .gw_command(user, &["-W", dest])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        Tunnel {
            child,
            stdin,
            stdout,
        }
    }

    /// Send bytes and read the echo back.
    pub fn echo(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.try_echo(bytes).unwrap()
    }

    /// [`Tunnel::echo`], or `None` if the tunnel is gone (its channel refused, say).
    pub fn try_echo(&mut self, bytes: &[u8]) -> Option<Vec<u8>> {
        let stdin = self.stdin.as_mut()?;
        stdin.write_all(bytes).ok()?;
        stdin.flush().ok()?;
        let mut buf = vec![0u8; bytes.len()];
        self.stdout.read_exact(&mut buf).ok()?;
        Some(buf)
    }

    /// Wait for ssh to exit on its own (the gateway cut it); returns its exit code and stderr.
    pub fn wait_cut(self) -> (i32, String, Duration) {
        self.wait_cut_within(SOON)
    }

    /// [`Tunnel::wait_cut`], for a cut that may take up to `limit`.
    pub fn wait_cut_within(mut self, limit: Duration) -> (i32, String, Duration) {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                return (st.code().unwrap_or(-1), err, start.elapsed());
            }
            assert!(start.elapsed() < limit, "the tunnel was never cut");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Close our end and wait for a normal exit.
    pub fn close(mut self) -> i32 {
        drop(self.stdin.take());
        self.child.wait().unwrap().code().unwrap_or(-1)
    }
}

/// `ssh -N -o ExitOnForwardFailure=yes -L SPEC` through the gateway as `user`, not yet run.
pub fn local_forward(env: &Env, user: &str, spec: &str) -> std::process::Command {
    env.gw_command(user, &["-N", "-o", "ExitOnForwardFailure=yes", "-L", spec])
}

/// Request a grant for `target` for `dur` (auto-approved) and return its id.
pub fn grant(env: &Env, user: &str, target: &str, dur: &str) -> u64 {
    let out = env.ssh(user, &["request", target, "--for", dur, "--json"]);
    out.ok();
    out.json()["grant"]["id"].as_u64().unwrap()
}

/// The session events for `session` in the audit log.
pub fn session_events(env: &Env, session: &str) -> Vec<serde_json::Value> {
    env.audit_events()
        .into_iter()
        .filter(|e| e["session"] == session)
        .collect()
}
