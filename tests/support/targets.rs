//! Real targets for the gateway tests: a TCP echo server that counts its connections, an
//! OpenSSH `sshd`, and a PostgreSQL server, each on a free loopback port in a temp dir.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::SOON;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Echoes every byte back; counts accepted connections.
pub struct Echo {
    pub port: u16,
    pub accepted: Arc<AtomicUsize>,
}

impl Echo {
    pub fn start() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    loop {
                        match conn.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if conn.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                });
            }
        });
        Echo { port, accepted }
    }

    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// An echo server in a process of its own, for benchmarks: the in-process [`Echo`] runs a
/// thread per connection inside the measuring process, and when a burst of sessions is cut,
/// those threads' exits (stack unmaps, TLB shoot-downs across the process's CPUs) are charged
/// to the client doing the measuring. A target lives on another host in practice; here it at
/// least lives in another process: the bench's own executable, started again with
/// [`ECHO_CHILD`] set, which makes [`serve_echo_if_asked`] (first thing in the bench's `main`)
/// serve instead of benchmarking.
pub struct EchoProcess {
    pub port: u16,
    child: Child,
}

/// Set in the environment of the re-executed bench that is to serve as its echo target.
pub const ECHO_CHILD: &str = "PORTCULLIS_BENCH_ECHO_CHILD";

impl EchoProcess {
    pub fn start() -> EchoProcess {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(ECHO_CHILD, "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("echo target printed {line:?}, not its port"));
        EchoProcess { port, child }
    }
}

impl Drop for EchoProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// In a bench started by [`EchoProcess::start`]: serve echo on one thread until killed, and
/// never return. Otherwise return at once.
pub fn serve_echo_if_asked() {
    if std::env::var_os(ECHO_CHILD).is_none() {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{}", listener.local_addr().unwrap().port());
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16384];
                loop {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if conn.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    std::process::exit(0);
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn wait_port(port: u16, what: &str, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + SOON;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(st)) = child.try_wait() {
            panic!(
                "{what} exited with {st}: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not start: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The login the test sshd uses when the tests run as root: a user whose shell is `/bin/sh` and
/// who has no rc files. Root's own shell start-up (pyenv, here) is slow, and a session cut in
/// the middle of it can leave a lock behind that stalls every later login for a minute
/// (FIELD-NOTES: use a user whose shell is /bin/sh).
const SHELL_USER: &str = "pcxtarget";

fn shell_user() -> String {
    let exists = Command::new("id")
        .arg(SHELL_USER)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !exists {
        let _ = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--home-dir",
                "/",
                "--shell",
                "/bin/sh",
                SHELL_USER,
            ])
            .status();
    }
    // A locked account ("!") is refused by sshd without PAM; "*" only rules out passwords.
    let _ = Command::new("usermod")
        .args(["-p", "*", SHELL_USER])
        .status();
    SHELL_USER.to_string()
}

/// A directory a test sshd's login may write into.
pub fn shared_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let _ = Command::new("chmod").arg("777").arg(d.path()).status();
    d
}

/// A real OpenSSH server that lets `login` in with the keys in `authorized_keys`.
pub struct Sshd {
    pub port: u16,
    pub login: String,
    pub host_key: String,
    child: Child,
}

impl Sshd {
    pub fn start(dir: &Path, authorized_keys: &str) -> Sshd {
        Sshd::start_keyed(dir, authorized_keys, "ed25519")
    }

    /// As [`Sshd::start`], with a host key of another type (`ecdsa`, `rsa`): a server that
    /// offers only that.
    pub fn start_keyed(dir: &Path, authorized_keys: &str, host_key_type: &str) -> Sshd {
        Sshd::start_configured(dir, authorized_keys, host_key_type, "")
    }

    /// An sshd with no `authorized_keys` at all that lets in whoever holds a user certificate
    /// of `ca` (an OpenSSH public key line) for its login, logging each login (key id, serial,
    /// CA) and leaving the certificate used in the file `$SSH_USER_AUTH` names.
    pub fn start_trusting_ca(dir: &Path, ca: &str) -> Sshd {
        let trusted = dir.join("trusted_user_ca_keys");
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(&trusted, format!("{ca}\n")).unwrap();
        // sshd takes the first value of each keyword: these come before the defaults.
        let extra = format!(
            "TrustedUserCAKeys {}\nAuthorizedKeysFile none\nExposeAuthInfo yes\nLogLevel VERBOSE\n",
            trusted.display()
        );
        Sshd::start_configured(dir, "", "ed25519", &extra)
    }

    /// Where sshd writes its log (`-e`).
    pub fn log(dir: &Path) -> String {
        std::fs::read_to_string(dir.join("sshd/sshd.log")).unwrap_or_default()
    }

    fn start_configured(
        dir: &Path,
        authorized_keys: &str,
        host_key_type: &str,
        extra: &str,
    ) -> Sshd {
        let sshd = ["/usr/sbin/sshd", "/usr/local/sbin/sshd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("sshd is not installed (apt-get install openssh-server)");
        let dir = dir.join("sshd");
        std::fs::create_dir_all(&dir).unwrap();
        let _ = std::fs::create_dir_all("/run/sshd");
        let host_key = dir.join("host_key");
        let st = Command::new("ssh-keygen")
            .args(["-q", "-t", host_key_type, "-N", "", "-f"])
            .arg(&host_key)
            .status()
            .unwrap();
        assert!(st.success());
        let auth = dir.join("authorized_keys");
        std::fs::write(&auth, authorized_keys).unwrap();
        let port = free_port();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "{extra}Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nPidFile {pid}\nAuthorizedKeysFile {auth}\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n\
                 PermitRootLogin prohibit-password\nMaxStartups 100:30:200\nMaxSessions 100\nSubsystem sftp internal-sftp\n\
                 LogLevel ERROR\n",
                hk = host_key.display(),
                pid = dir.join("sshd.pid").display(),
                auth = auth.display(),
            ),
        )
        .unwrap();
        let log = dir.join("sshd.log");
        let mut child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        wait_port(port, "sshd", &mut child, &log);
        let login = if is_root() {
            shell_user()
        } else {
            String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
                .unwrap()
                .trim()
                .to_string()
        };
        Sshd {
            port,
            login,
            host_key: std::fs::read_to_string(host_key.with_extension("pub"))
                .unwrap()
                .trim()
                .to_string(),
            child,
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A PostgreSQL server from the machine's server binaries, trusting local connections.
pub struct Postgres {
    pub port: u16,
    data: PathBuf,
    pg_ctl: PathBuf,
    as_root: bool,
}

fn pg_bin(name: &str) -> PathBuf {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin").join(name))
                .collect()
        })
        .unwrap_or_default();
    candidates.sort();
    candidates
        .into_iter()
        .rev()
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

impl Postgres {
    pub fn start(dir: &Path) -> Postgres {
        let as_root = is_root();
        // postgres refuses to run as root: give it a directory the postgres user owns.
        let base = dir.join("pg");
        std::fs::create_dir_all(&base).unwrap();
        let data = base.join("data");
        let sock = base.join("sock");
        std::fs::create_dir_all(&sock).unwrap();
        if as_root {
            for p in [dir, base.as_path()] {
                let _ = Command::new("chmod").arg("755").arg(p).status();
            }
            let st = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&base)
                .status()
                .unwrap();
            assert!(st.success());
        }
        let run = |bin: &Path| {
            let mut c = if as_root {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(bin);
                c
            } else {
                Command::new(bin)
            };
            c.current_dir("/");
            c
        };
        let out = run(&pg_bin("initdb"))
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let pg_ctl = pg_bin("pg_ctl");
        let out = run(&pg_ctl)
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(base.join("log"))
            .arg("-o")
            .arg(format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                sock.display()
            ))
            .args(["-w", "start"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(base.join("log")).unwrap_or_default()
        );
        Postgres {
            port,
            data,
            pg_ctl,
            as_root,
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let mut c = if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&self.pg_ctl);
            c
        } else {
            Command::new(&self.pg_ctl)
        };
        let _ = c
            .current_dir("/")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

/// A throughput sink for forward benchmarks: reads an announced length (8 bytes, big-endian),
/// then that many bytes, then answers one byte, on which the sender's clock stops.
pub fn throughput_sink() -> u16 {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 256 * 1024];
                let mut len = [0u8; 8];
                if c.read_exact(&mut len).is_err() {
                    return;
                }
                let mut left = u64::from_be_bytes(len);
                while left > 0 {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => left = left.saturating_sub(n as u64),
                    }
                }
                let _ = c.write_all(b"k");
            });
        }
    });
    port
}

/// Push `bytes` through a forward listening on `port` to a [`throughput_sink`]: the seconds
/// from the first byte to the sink's answer.
pub fn timed_push(port: u16, bytes: u64) -> f64 {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut c = loop {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(c) => break c,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Err(e) => panic!("forward never listened: {e}"),
        }
    };
    let chunk = vec![0x5au8; 256 * 1024];
    let start = std::time::Instant::now();
    c.write_all(&bytes.to_be_bytes()).unwrap();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        c.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    let mut ok = [0u8; 1];
    c.read_exact(&mut ok).unwrap();
    start.elapsed().as_secs_f64()
}
