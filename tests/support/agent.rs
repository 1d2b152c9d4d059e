//! A real `ssh-agent` for a test, and the stock `ssh` signing through it.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{run, Out};

/// `ssh-agent -a SOCK`, killed when dropped.
pub struct Agent {
    pub sock: PathBuf,
    pid: String,
    /// The FIDO provider keys are added with (`ssh-add -S`), if any.
    provider: Option<PathBuf>,
}

impl Agent {
    pub fn start(dir: &Path) -> Agent {
        Agent::launch(dir, None)
    }

    /// An agent that signs with FIDO keys through `provider` (test only: see
    /// `support::fido`). ssh-agent loads only the providers its `-P` allowlist names; this one
    /// names exactly this one.
    pub fn with_provider(dir: &Path, provider: &Path) -> Agent {
        Agent::launch(dir, Some(provider))
    }

    fn launch(dir: &Path, provider: Option<&Path>) -> Agent {
        let sock = dir.join("kinds-agent.sock");
        let mut c = Command::new("ssh-agent");
        c.arg("-a").arg(&sock);
        if let Some(p) = provider {
            c.arg("-P").arg(p);
        }
        let out = run(&mut c);
        assert_eq!(out.code, 0, "ssh-agent: {}", out.stderr);
        let pid = out
            .stdout
            .split("SSH_AGENT_PID=")
            .nth(1)
            .and_then(|s| s.split(';').next())
            .unwrap()
            .to_string();
        Agent {
            sock,
            pid,
            provider: provider.map(Path::to_path_buf),
        }
    }

    /// Hold exactly this key.
    pub fn only(&self, key: &Path) {
        let del = run(Command::new("ssh-add")
            .env("SSH_AUTH_SOCK", &self.sock)
            .arg("-D"));
        assert_eq!(del.code, 0, "ssh-add -D: {}", del.stderr);
        let mut c = Command::new("ssh-add");
        c.env("SSH_AUTH_SOCK", &self.sock);
        if let Some(p) = &self.provider {
            c.arg("-S").arg(p);
        }
        let add = run(c.arg(key));
        assert_eq!(add.code, 0, "ssh-add: {}", add.stderr);
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(&self.pid).status();
    }
}

/// `ssh … whoami` signing through the agent: only the public half is on disk where ssh looks.
pub fn ssh_via_agent(port: &str, login: &str, agent: &Agent, key: &Path, dir: &Path) -> Out {
    let public_only = dir.join("agent-only.pub");
    std::fs::copy(key.with_extension("pub"), &public_only).unwrap();
    let mut c = Command::new("ssh");
    c.args(["-n", "-F", "/dev/null", "-p", port, "-i"])
        .arg(&public_only)
        .arg("-o")
        .arg(format!("IdentityAgent={}", agent.sock.display()))
        .args([
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
        .arg(format!("{login}@127.0.0.1"))
        .arg("whoami");
    run(&mut c)
}
