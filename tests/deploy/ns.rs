//! A private network and mount namespace standing in for a host (or a compose network): its
//! own loopback, so the shipped default ports (2222, 2223) and a target on 5432 are used as
//! written without meeting anything else on this machine, and its own `/etc/hosts`, so the
//! compose service names (`approver`, `postgres`, …) resolve.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{run, Out, SOON};

/// Set (to `IP:PORT`) in the environment of this test binary run again as an echo target.
pub const ECHO_ENV: &str = "PORTCULLIS_TEST_DEPLOY_ECHO";

pub fn serve_echo_if_asked() {
    let Ok(addr) = std::env::var(ECHO_ENV) else {
        return;
    };
    let listener = std::net::TcpListener::bind(&addr).unwrap();
    println!("listening");
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        std::thread::spawn(move || {
            let mut buf = [0u8; 16384];
            while let Ok(n) = conn.read(&mut buf) {
                if n == 0 || conn.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
    }
}

/// Whether this test can run: it needs root. Says why when it cannot.
pub fn root_or_skip(test: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    eprintln!(
        "SKIPPED {test}: needs root (to create users, switch to them with setpriv and make a \
         network namespace); .ci/run runs the tests as root"
    );
    false
}

pub struct Netns {
    holder: Child,
    procs: Vec<(String, Child)>,
    logs: PathBuf,
}

impl Netns {
    /// A namespace whose `/etc/hosts` maps `names` to its loopback; logs go under `dir`.
    pub fn new(dir: &Path, names: &[&str]) -> Netns {
        let hosts = dir.join("hosts");
        std::fs::write(
            &hosts,
            format!("127.0.0.1 localhost {}\n::1 localhost\n", names.join(" ")),
        )
        .unwrap();
        std::fs::set_permissions(&hosts, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut holder = Command::new("unshare")
            .args(["--mount", "--net", "--propagation", "private", "sh", "-c"])
            .arg("ip link set lo up && mount --bind \"$0\" /etc/hosts && echo ready && exec sleep 3600")
            .arg(&hosts)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("unshare (util-linux)");
        let mut line = String::new();
        BufReader::new(holder.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            "ready",
            "the namespace did not come up (is iproute2 installed?)"
        );
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        Netns {
            holder,
            procs: Vec::new(),
            logs,
        }
    }

    /// `program` run inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.holder.id().to_string(), "-m", "-n", "--"])
            .arg(program);
        c
    }

    pub fn run(&self, program: &str, args: &[&str]) -> Out {
        run(self.command(program).args(args))
    }

    /// Start a long-running process in the namespace, its stderr in `logs/NAME.log`; it is
    /// killed when the namespace goes.
    pub fn spawn(&mut self, name: &str, mut c: Command) {
        let log = std::fs::File::create(self.log_path(name)).unwrap();
        let child = c
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.procs.push((name.to_string(), child));
    }

    pub fn log_path(&self, name: &str) -> PathBuf {
        self.logs.join(format!("{name}.log"))
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.log_path(name)).unwrap_or_default()
    }

    /// The echo target on `addr` inside the namespace.
    pub fn start_echo(&mut self, addr: &str) {
        let mut c = self.command(std::env::current_exe().unwrap());
        c.args([
            "--exact",
            "echo_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(ECHO_ENV, addr);
        self.spawn("echo", c);
        let port = addr.rsplit(':').next().unwrap().to_string();
        self.wait_listening("echo", &port);
    }

    /// Wait until something listens on `port` in the namespace, or `name` has exited.
    pub fn wait_listening(&mut self, name: &str, port: &str) {
        let deadline = Instant::now() + SOON;
        loop {
            let out = self.run("ss", &["-Hltn", &format!("sport = :{port}")]);
            if out.code == 0 && !out.stdout.trim().is_empty() {
                return;
            }
            if let Some((_, c)) = self.procs.iter_mut().find(|(n, _)| n == name) {
                if let Some(st) = c.try_wait().unwrap() {
                    panic!("{name} exited with {st}:\n{}", self.log(name));
                }
            }
            assert!(
                Instant::now() < deadline,
                "{name} never listened on {port}:\n{}",
                self.log(name)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait until `f` holds, or panic with `what` and the logs.
    pub fn eventually(&self, what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + SOON;
        while !f() {
            if Instant::now() > deadline {
                let logs: String = self
                    .procs
                    .iter()
                    .map(|(n, _)| format!("--- {n}\n{}\n", self.log(n)))
                    .collect();
                panic!("timed out waiting for {what}\n{logs}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for (_, c) in &mut self.procs {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// `stat -c '%U:%G %a' PATH`: owner, group and mode, as an operator would check them.
pub fn stat(path: &Path) -> String {
    let out = run(Command::new("stat").args(["-c", "%U:%G %a"]).arg(path));
    out.ok();
    out.stdout.trim().to_string()
}

/// As [`stat`], with numeric ids (the compose demo's uids have no passwd entry here).
pub fn stat_ids(path: &Path) -> String {
    let out = run(Command::new("stat").args(["-c", "%u:%g %a"]).arg(path));
    out.ok();
    out.stdout.trim().to_string()
}

/// The stock ssh client's options for a gateway whose host key is `host_key_pub`.
pub fn ssh_args(
    dir: &Path,
    key: &Path,
    port: &str,
    host: &str,
    host_key_pub: &Path,
) -> Vec<String> {
    let kh = dir.join("known_hosts_client");
    let host_key = std::fs::read_to_string(host_key_pub).unwrap();
    std::fs::write(&kh, format!("[{host}]:{port} {}", host_key.trim())).unwrap();
    vec![
        "-F".into(),
        "/dev/null".into(),
        "-p".into(),
        port.into(),
        "-i".into(),
        key.display().to_string(),
        "-o".into(),
        "IdentitiesOnly=yes".into(),
        "-o".into(),
        "BatchMode=yes".into(),
        "-o".into(),
        "StrictHostKeyChecking=yes".into(),
        "-o".into(),
        format!("UserKnownHostsFile={}", kh.display()),
        "-o".into(),
        "LogLevel=ERROR".into(),
    ]
}

/// Send `bytes` through `ssh ARGS -W DEST` and return what came back (the echo).
pub fn echo_through(ns: &Netns, args: &[String], login: &str, dest: &str, bytes: &[u8]) -> Out {
    let mut child = ns
        .command("ssh")
        .args(args)
        .args(["-W", dest, login])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(bytes).unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut got = vec![0u8; bytes.len()];
    let read = stdout.read_exact(&mut got);
    drop(stdin);
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    Out {
        code: if read.is_ok() && got == bytes { 0 } else { 1 },
        stdout: String::from_utf8_lossy(&got).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
