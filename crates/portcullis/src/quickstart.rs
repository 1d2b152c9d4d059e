//! `portcullis quickstart`: a whole bastion on loopback in one command, for a first look.
//! It writes a config with fresh keys into DIR, serves a demo TCP "database" (an echo
//! server) and, where an `sshd` is installed, a shell target; runs the approver and the gateway
//! in this process; writes what a client needs (an `ssh_config` with a host for each way in,
//! `known_hosts` with every key pinned, the thin clients' profile); prints short lines to try;
//! and stops everything on Ctrl-C.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;

use anyhow::Context as _;
use portcullis_ssh::keyfile;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::profile::{self, Installed, Profile};
use crate::setup::{self, sh_quote};

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

/// An sshd for the shell target, trusting these keys, if one is installed.
fn start_sshd(dir: &Path, authorized: &[&str]) -> anyhow::Result<Option<Sshd>> {
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
    let mut lines = authorized.join("\n");
    lines.push('\n');
    std::fs::write(&auth, lines)?;
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
    let host = std::fs::read_to_string(host_key.with_extension("pub"))?;
    // Without its comment (user@host): the config pins the key alone.
    let host_key = host
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    Ok(Some(Sshd {
        child,
        port,
        login,
        host_key,
    }))
}

/// What the demo runs on, once it is set up.
struct Demo {
    dir: PathBuf,
    approver_port: u16,
    gateway_port: u16,
    echo_port: u16,
    keys: setup::PublicKeys,
    demo_key: PathBuf,
    boss_key: PathBuf,
    sshd: Option<Sshd>,
}

/// The recorded-shell target: this quickstart's own sshd.
struct Sshd {
    child: tokio::process::Child,
    port: u16,
    login: String,
    host_key: String,
}

pub async fn run(dir_arg: &Path) -> anyhow::Result<ExitCode> {
    // A directory of its own: one that someone else prepared (and could have put keys or an
    // sshd config in) is refused.
    keyfile::create_private_dir(dir_arg)?;
    keyfile::check_private(dir_arg, keyfile::Kind::Dir)
        .context("quickstart keeps its keys here: give it a directory of its own (--dir)")?;
    let dir: PathBuf = dir_arg
        .canonicalize()
        .with_context(|| format!("cannot use {}", dir_arg.display()))?;
    let approver_dir = dir.join("approver");
    let gateway_dir = dir.join("gateway");
    let keys = setup::ensure_keys(Some(&approver_dir), Some(&gateway_dir))?;
    let demo_key = dir.join("demo_ed25519");
    let boss_key = dir.join("approver_ed25519");
    let demo_pub = public(&demo_key)?;
    let gw_client = keys.gateway_client.clone().unwrap_or_default();

    let approver_port = port_or_free(2223)?;
    let gateway_port = port_or_free(2222)?;
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let echo_port = echo.local_addr()?.port();
    tokio::spawn(echo_server(echo));
    // The gateway logs in to it for recorded sessions; the demo user, end to end (ssh -J).
    let sshd = start_sshd(&dir, &[&gw_client, &demo_pub])?;
    let mut demo = Demo {
        dir,
        approver_port,
        gateway_port,
        echo_port,
        keys,
        demo_key,
        boss_key,
        sshd,
    };
    let config_path = demo.dir.join("portcullis.toml");
    let config = render_config(&demo)?;
    std::fs::write(&config_path, &config)?;
    let profile_note = write_client_files(&demo)?;

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

    print_lines(&demo, dir_arg, &profile_note);
    use std::io::Write as _;
    let _ = std::io::stdout().flush();

    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        r = approver_task => { anyhow::bail!("the approver stopped: {:?}", r); }
        r = gateway_task => { anyhow::bail!("the gateway stopped: {:?}", r); }
    }
    if let Some(mut sshd) = demo.sshd.take() {
        let _ = sshd.child.kill().await;
    }
    eprintln!(
        "portcullis quickstart: stopped; config and data stay in {}",
        demo.dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn render_config(d: &Demo) -> anyhow::Result<String> {
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
        approver_port = d.approver_port,
        gateway_port = d.gateway_port,
        echo_port = d.echo_port,
        approver_dir = d.dir.join("approver").display(),
        gateway_dir = d.dir.join("gateway").display(),
        approver_host = d.keys.approver_host.clone().unwrap_or_default(),
        grant_signing = d.keys.grant_signing.clone().unwrap_or_default(),
        gw_client = d.keys.gateway_client.clone().unwrap_or_default(),
        demo_pub = public(&d.demo_key)?,
        boss_pub = public(&d.boss_key)?,
    );
    if let Some(sshd) = &d.sshd {
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
"#,
            port = sshd.port,
            login = sshd.login,
            host = sshd.host_key,
        ));
    }
    portcullis_core::config::parse(&config)
        .map_err(|e| anyhow::anyhow!("quickstart config is invalid (a bug): {e}"))?;
    Ok(config)
}

/// What a user's machine needs to talk to the demo: `known_hosts` with every host key pinned,
/// an `ssh_config` with a host for each way in, and the thin clients' profile. Returns what
/// the profile's installation said, for the printed lines.
fn write_client_files(d: &Demo) -> anyhow::Result<Installed> {
    let line = |port, key: &Option<String>| {
        setup::known_hosts_line("127.0.0.1", port, key.as_deref().unwrap_or_default())
    };
    let mut known_hosts = format!(
        "{}\n{}\n",
        line(d.gateway_port, &d.keys.gateway_host),
        line(d.approver_port, &d.keys.approver_host)
    );
    if let Some(sshd) = &d.sshd {
        // `ssh -J` checks the target's key under the name it asked the gateway for.
        known_hosts.push_str(&setup::known_hosts_line("shell", sshd.port, &sshd.host_key));
        known_hosts.push('\n');
    }
    std::fs::write(d.dir.join("known_hosts"), known_hosts)?;
    std::fs::write(d.dir.join("ssh_config"), ssh_config(d))?;
    let client = Profile {
        approver: Some(format!("127.0.0.1:{}", d.approver_port)),
        user: Some("approver".into()),
        identity: Some(d.boss_key.clone()),
        approver_host_key: d.keys.approver_host.clone(),
    };
    profile::install(
        &d.dir.join("profile.toml"),
        &client,
        "`portcullis quickstart`",
    )
}

/// Every host the printed lines use, each with its own key, and the demo's known_hosts for
/// all of them (a `Host *` block reaches the `ProxyJump` hop too).
fn ssh_config(d: &Demo) -> String {
    let (dir, gw, ap) = (d.dir.display(), d.gateway_port, d.approver_port);
    let mut t = format!(
        "# Written by `portcullis quickstart`: ssh -F {dir}/ssh_config HOST …\n\
         # Include it from ~/.ssh/config to leave out the -F.\n\n\
         # The gateway, as the demo developer.\n\
         Host bastion\n    HostName 127.0.0.1\n    Port {gw}\n    User demo\n    IdentityFile {dir}/demo_ed25519\n\n\
         # The control port, as the demo's approver (a lead and an admin).\n\
         Host approver\n    HostName 127.0.0.1\n    Port {ap}\n    User approver\n    IdentityFile {dir}/approver_ed25519\n"
    );
    if let Some(sshd) = &d.sshd {
        t.push_str(&format!(
            "\n# A recorded shell on the target `shell`: the gateway logs in there itself.\n\
             Host shell-rec\n    HostName 127.0.0.1\n    Port {gw}\n    User demo:shell\n    IdentityFile {dir}/demo_ed25519\n\n\
             # The same target end to end through the gateway, with your own login there.\n\
             Host shell\n    HostName shell\n    Port {port}\n    User {login}\n    IdentityFile {dir}/demo_ed25519\n    ProxyJump bastion\n",
            port = sshd.port,
            login = sshd.login,
        ));
    }
    t.push_str(&format!(
        "\nHost *\n    IdentitiesOnly yes\n    UserKnownHostsFile {dir}/known_hosts\n    StrictHostKeyChecking yes\n"
    ));
    t
}

fn print_lines(d: &Demo, dir_arg: &Path, installed: &Installed) {
    // The directory as the user named it: short lines to paste in the same shell.
    let shown = dir_arg.display().to_string();
    let ssh = format!("ssh -F {}", sh_quote(&format!("{shown}/ssh_config")));
    let profile_flag = match installed {
        Installed::Default(_) => String::new(),
        _ => format!(" --profile {}", sh_quote(&format!("{shown}/profile.toml"))),
    };
    let (gw, ap, echo) = (d.gateway_port, d.approver_port, d.echo_port);
    println!("== running: approver on 127.0.0.1:{ap}, gateway on 127.0.0.1:{gw}");
    println!("== config and keys: {}", d.dir.display());
    println!("== ssh settings: {shown}/ssh_config (hosts bastion, approver, shell-rec, shell)");
    match installed {
        Installed::Default(path) => println!(
            "== profile for portcullis admin|request|audit: {}",
            path.display()
        ),
        Installed::KeptOther { path, why } => println!(
            "== kept your profile {} ({why}): the lines below name the demo's",
            path.display()
        ),
        Installed::NoPlace => println!("== no HOME: the lines below name the demo's profile"),
    }
    println!();
    println!("Try these, one at a time (Ctrl-C here stops everything):");
    println!();
    println!("{ssh} bastion status");
    println!("{ssh} bastion request echo-db --for 10m");
    let local = port_or_free(15432).unwrap_or(15432);
    println!("{ssh} -N -L {local}:echo-db:{echo} bastion");
    println!("{ssh} -W echo-db:{echo} bastion < /etc/hostname");
    if d.sshd.is_some() {
        println!("{ssh} bastion request shell --for 10m --reason first-look");
        println!("{ssh} approver requests --pending");
        println!("{ssh} approver approve 2 --note looks fine");
        println!("{ssh} shell-rec 'echo hello from a recorded session'");
        println!("{ssh} shell-rec");
        println!("{ssh} shell 'echo hello, end to end'");
    } else {
        println!("# (no sshd on this machine: install openssh-server for a recorded shell target)");
    }
    println!("portcullis admin{profile_flag} grants --active");
    println!("portcullis audit{profile_flag} sessions");
    println!("portcullis audit{profile_flag} verify");
    println!();
    println!("(`portcullis` is the binary you ran: target/release/portcullis after cargo build --release.)");
    println!("ready");
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
