//! What a command printed and how it exited, and running the stock `ssh` for it.

use std::path::Path;
use std::process::{Command, Output, Stdio};

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

/// The request id in `request` JSON output.
pub fn request_id(out: &Out) -> u64 {
    out.ok();
    out.json()["request"]["id"].as_u64().unwrap()
}
