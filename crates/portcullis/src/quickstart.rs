//! `portcullis quickstart`: a whole bastion on loopback in one command, for a first look.
//! It writes a config with fresh keys into DIR, serves a demo TCP "database" (an echo
//! server) and, where an `sshd` is installed, a shell target; runs the approver and the gateway
//! in this process; prints the exact lines to try; and stops everything on Ctrl-C.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;

use anyhow::Context as _;
use portcullis_ssh::keyfile;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::setup;

fn port_or_free(preferred: u16) -> anyhow::Result<u16> {
    if StdListener::bind(("127.0.0.1", preferred)).is_ok() {
        return Ok(preferred);
    }
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn public(path: &Path) -> anyhow::Result<String> {
    let (key, _) = keyfile::load_or_create(path)?;
    let mut p = key.public_key().clone();
    p.set_comment("");
    Ok(p.to_openssh()?)
}

/// The demo "database": echoes every byte back.
async fn echo_server(listener: tokio::net::TcpListener) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            while let Ok(n) = sock.read(&mut buf).await {
                if n == 0 || sock.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        });
    }
}

/// An sshd for the shell target, trusting the gateway's client key, if one is installed.
fn start_sshd(
    dir: &Path,
    gateway_client: &str,
) -> anyhow::Result<Option<(tokio::process::Child, u16, String, String)>> {
    let Some(sshd) = ["/usr/sbin/sshd", "/usr/local/sbin/sshd"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        return Ok(None);
    };
    let sdir = dir.join("sshd");
    keyfile::create_private_dir(&sdir)?;
    let _ = std::fs::create_dir_all("/run/sshd");
    let host_key = sdir.join("host_key");
    if !host_key.exists() {
        let st = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&host_key)
            .status();
        if !st.is_ok_and(|s| s.success()) {
            return Ok(None);
        }
    }
    let auth = sdir.join("authorized_keys");
    std::fs::write(&auth, format!("{gateway_client}\n"))?;
    let port = port_or_free(2022)?;
    let config = sdir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\nAuthorizedKeysFile {}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\nLogLevel ERROR\n",
            host_key.display(),
            sdir.join("sshd.pid").display(),
            auth.display()
        ),
    )?;
    let child = tokio::process::Command::new(sshd)
        .args(["-D", "-e", "-f"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let Ok(child) = child else { return Ok(None) };
    let login = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let host = std::fs::read_to_string(host_key.with_extension("pub"))?
        .trim()
        .to_string();
    Ok(Some((child, port, login, host)))
}

pub async fn run(dir: &Path) -> anyhow::Result<ExitCode> {
    // A directory of its own: one that someone else prepared (and could have put keys or an
    // sshd config in) is refused.
    keyfile::create_private_dir(dir)?;
    keyfile::check_private(dir, keyfile::Kind::Dir)
        .context("quickstart keeps its keys here: give it a directory of its own (--dir)")?;
    let dir: PathBuf = dir
        .canonicalize()
        .with_context(|| format!("cannot use {}", dir.display()))?;
    let approver_dir = dir.join("approver");
    let gateway_dir = dir.join("gateway");
    let keys = setup::ensure_keys(Some(&approver_dir), Some(&gateway_dir))?;
    let demo_key = dir.join("demo_ed25519");
    let boss_key = dir.join("approver_ed25519");
    let demo_pub = public(&demo_key)?;
    let boss_pub = public(&boss_key)?;
    let gw_client = keys.gateway_client.clone().unwrap_or_default();

    let approver_port = port_or_free(2223)?;
    let gateway_port = port_or_free(2222)?;
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let echo_port = echo.local_addr()?.port();
    tokio::spawn(echo_server(echo));
    let sshd = start_sshd(&dir, &gw_client)?;

    let mut config = format!(
        r#"# Written by `portcullis quickstart`: a demo on loopback. See deploy/portcullis.toml for a real one.
[approver]
listen = "127.0.0.1:{approver_port}"
data_dir = "{approver_dir}"
request_ttl = "1h"

[gateway]
name = "gw-1"
listen = "127.0.0.1:{gateway_port}"
data_dir = "{gateway_dir}"
approver = "127.0.0.1:{approver_port}"
approver_host_key = "{approver_host}"
grant_signing_key = "{grant_signing}"
expiry_warning = "1m"

[[gateways]]
name = "gw-1"
key = "{gw_client}"

[[users]]
name = "demo"
keys = ["{demo_pub}"]
groups = ["dev"]

[[users]]
name = "approver"
keys = ["{boss_pub}"]
groups = ["admins", "leads"]

# The demo "database": an echo server that this quickstart runs.
[[targets]]
name = "echo-db"
kind = "tcp"
address = "127.0.0.1:{echo_port}"
labels = {{ env = "demo" }}

[[policies]]
name = "demo-self-service"
match = {{ env = "demo" }}
auto_approve = {{ groups = ["dev"] }}
max_duration = "1h"
default_duration = "15m"
"#,
        approver_dir = approver_dir.display(),
        gateway_dir = gateway_dir.display(),
        approver_host = keys.approver_host.clone().unwrap_or_default(),
        grant_signing = keys.grant_signing.clone().unwrap_or_default(),
    );
    if let Some((_, port, login, host)) = &sshd {
        config.push_str(&format!(
            r#"
# A shell on this machine, through this quickstart's own sshd: sessions are recorded.
[[targets]]
name = "shell"
kind = "ssh"
address = "127.0.0.1:{port}"
login = "{login}"
host_key = "{host}"
labels = {{ env = "guarded" }}

# Guarded targets need one approval from a lead.
[[policies]]
name = "demo-guarded"
match = {{ env = "guarded" }}
approvers = ["leads"]
approvals = 1
max_duration = "1h"
default_duration = "15m"
require_reason = true
"#
        ));
    }
    portcullis_core::config::parse(&config)
        .map_err(|e| anyhow::anyhow!("quickstart config is invalid (a bug): {e}"))?;
    let config_path = dir.join("portcullis.toml");
    std::fs::write(&config_path, &config)?;
    let gw_host = keys.gateway_host.clone().unwrap_or_default();
    let known_hosts = dir.join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!(
            "[127.0.0.1]:{gateway_port} {gw_host}\n[127.0.0.1]:{approver_port} {}\n",
            keys.approver_host.clone().unwrap_or_default()
        ),
    )?;

    // The approver and the gateway, in this process.
    let approver =
        portcullis_approver::Approver::open(&config_path, Arc::new(portcullis_core::SystemClock))?;
    approver.record_start().await?;
    let approver_task = tokio::spawn(portcullis_approver::serve(approver));
    wait_listening(approver_port).await?;
    let gateway_task = tokio::spawn({
        let path = config_path.clone();
        async move { portcullis_gateway::run(&path, Arc::new(portcullis_core::SystemClock)).await }
    });
    wait_listening(gateway_port).await?;

    let opts = format!(
        "-i {} -o IdentitiesOnly=yes -o UserKnownHostsFile={}",
        demo_key.display(),
        known_hosts.display()
    );
    let boss = format!(
        "-i {} -o IdentitiesOnly=yes -o UserKnownHostsFile={}",
        boss_key.display(),
        known_hosts.display()
    );
    let admin = format!(
        "--approver 127.0.0.1:{approver_port} -l approver -i {} --known-hosts {}",
        boss_key.display(),
        known_hosts.display()
    );
    println!(
        "== running: approver on 127.0.0.1:{approver_port}, gateway on 127.0.0.1:{gateway_port}"
    );
    println!("== config and keys: {}", dir.display());
    println!();
    println!("Try these, one at a time (Ctrl-C here stops everything):");
    println!();
    println!("ssh {opts} -p {gateway_port} demo@127.0.0.1 status");
    println!("ssh {opts} -p {gateway_port} demo@127.0.0.1 request echo-db --for 10m");
    println!("ssh {opts} -p {gateway_port} -N -L 15432:echo-db:{echo_port} demo@127.0.0.1");
    println!("ssh {opts} -p {gateway_port} -W echo-db:{echo_port} demo@127.0.0.1 < /etc/hostname");
    if sshd.is_some() {
        println!("ssh {opts} -p {gateway_port} demo@127.0.0.1 request shell --for 10m --reason first-look");
        println!("ssh {boss} -p {approver_port} approver@127.0.0.1 requests --pending");
        println!("ssh {boss} -p {approver_port} approver@127.0.0.1 approve 2 --note looks fine");
        println!("ssh {opts} -p {gateway_port} demo:shell@127.0.0.1 'echo hello from a recorded session'");
        println!("ssh {opts} -p {gateway_port} demo:shell@127.0.0.1");
    } else {
        println!("# (no sshd on this machine: install openssh-server for a recorded shell target)");
    }
    println!("portcullis admin {admin} grants --active");
    println!("portcullis audit {admin} sessions");
    println!("portcullis audit {admin} verify");
    println!();
    println!("(`portcullis` is the binary you ran: target/release/portcullis after cargo build --release.)");
    println!("ready");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();

    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        r = approver_task => { anyhow::bail!("the approver stopped: {:?}", r); }
        r = gateway_task => { anyhow::bail!("the gateway stopped: {:?}", r); }
    }
    if let Some((mut child, ..)) = sshd {
        let _ = child.kill().await;
    }
    eprintln!(
        "portcullis quickstart: stopped; config and data stay in {}",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

async fn wait_listening(port: u16) -> anyhow::Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    anyhow::bail!("nothing listens on {addr}")
}
