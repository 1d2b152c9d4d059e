//! docs/users.md's `~/.ssh/config`, and the lines that use it, run as the page prints them
//! (#18 item 3): the blocks marked `<!-- tested: … -->` are read from the Markdown, the page's
//! host, ports, key and login are replaced by this test's, and every line must succeed against
//! the real gateway, a real sshd as `web-1` and an echo server as `pg-prod`.

use std::path::Path;
use std::process::Command;

use super::common;
use crate::support::docs::{self, fenced_after, swap};
use crate::support::targets::{free_port, shared_dir, Echo, Sshd};
use crate::support::{run, BIN};

#[test]
fn the_documented_ssh_config_and_lines_work() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/users.md"))
            .unwrap();
    let config = fenced_after(&doc, "users-ssh-config");
    let lines = fenced_after(&doc, "users-ssh-lines");

    // pg-prod answers on an echo server; web-1 is a real sshd that takes the gateway's key
    // (recorded sessions) and alice's (end to end).
    let pg = Echo::start();
    let sshd_dir = tempfile::tempdir().unwrap();
    let mut web1 = None;
    let g = common::start_with(|env| {
        let cfg = std::fs::read_to_string(&env.config).unwrap();
        let cfg = swap(
            &cfg,
            "address = \"127.0.0.1:15432\"",
            &format!("address = \"127.0.0.1:{}\"", pg.port),
        );
        std::fs::write(&env.config, cfg).unwrap();
        let keys = [
            env.path().join("gateway/client_key.pub"),
            env.key("alice").with_extension("pub"),
        ]
        .map(|p| std::fs::read_to_string(p).unwrap());
        let s = Sshd::start(sshd_dir.path(), &keys.join("\n"));
        let target = format!(
            "\n[[targets]]\nname = \"web-1\"\nkind = \"ssh\"\naddress = \"127.0.0.1:{}\"\nlogin = \"{}\"\n\
             host_key = \"{}\"\nlabels = {{ env = \"staging\" }}\n",
            s.port, s.login, s.host_key
        );
        web1 = Some(s);
        target
    });
    let env = &g.env;
    let web1 = web1.unwrap();

    // The grants the lines need: web-1 is self-service for alice's group, pg-prod takes two
    // approvals from the dba group.
    common::grant(env, "alice", "web-1", "1h");
    let req = env.ssh(
        "alice",
        &[
            "request", "pg-prod", "--for", "1h", "--reason", "INC-1", "--json",
        ],
    );
    let id = crate::support::request_id(&req).to_string();
    env.admin("bob", &["approve", &id]).ok();
    env.admin("carol", &["approve", &id]).ok();

    // The page's config with this test's gateway, key, web-1 and ports; host keys pinned.
    let work = shared_dir();
    let local = free_port();
    let mut text = config;
    for (from, to) in [
        ("bastion.example.com", "127.0.0.1".to_string()),
        ("Port 2222\n", format!("Port {}\n", env.gw_port())),
        ("Port 22\n", format!("Port {}\n", web1.port)),
        ("~/.ssh/id_ed25519", env.key("alice").display().to_string()),
        ("User deploy\n", format!("User {}\n", web1.login)),
        (
            "LocalForward 15432 pg-prod:5432",
            format!("LocalForward {local} pg-prod:{}", pg.port),
        ),
    ] {
        text = swap(&text, from, &to);
    }
    let known_hosts = work.path().join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!(
            "[127.0.0.1]:{} {}\n[web-1]:{} {}\n",
            env.gw_port(),
            env.gateway_host_key,
            web1.port,
            web1.host_key
        ),
    )
    .unwrap();
    text.push_str(&format!(
        "\n# The test's own: nothing from the runner's ~/.ssh, and no prompt.\nHost *\n    \
         UserKnownHostsFile {}\n    StrictHostKeyChecking yes\n    BatchMode yes\n    LogLevel ERROR\n",
        known_hosts.display()
    ));
    let config_path = work.path().join("ssh_config");
    std::fs::write(&config_path, &text).unwrap();
    std::fs::write(work.path().join("report.csv"), "a,b\n1,2\n").unwrap();
    let dest = work.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    let _ = Command::new("chmod").arg("777").arg(&dest).status();

    let mut ran = 0;
    for line in lines.lines().filter(|l| !l.trim().is_empty()) {
        let line = line.replace("web-1-rec:/tmp/", &format!("web-1-rec:{}/", dest.display()));
        // `ssh …` is `ssh -F CONFIG …`: the page's blocks stand for the reader's ~/.ssh/config.
        let (program, rest) = line.split_once(' ').unwrap();
        let line = format!("{program} -F {} {rest}", config_path.display());
        if line.contains("tunnel") {
            check_tunnel(&line, work.path(), local);
        } else {
            let out = run(Command::new("sh")
                .arg("-c")
                .arg(&line)
                .current_dir(work.path()));
            assert_eq!(
                out.code,
                0,
                "{line}\nstdout: {}\nstderr: {}\ngateway log tail: {}",
                out.stdout,
                out.stderr,
                tail(&env.gw_log())
            );
        }
        ran += 1;
    }
    assert!(ran >= 6, "{lines}");
    assert_eq!(
        std::fs::read_to_string(dest.join("report.csv")).unwrap(),
        "a,b\n1,2\n",
        "scp did not deliver the file"
    );
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// The tunnel host stays up: start it, and send bytes through its forward to pg-prod.
fn check_tunnel(line: &str, dir: &Path, local: u16) {
    let mut sh = Command::new("sh");
    sh.arg("-c").arg(format!("exec {line}")).current_dir(dir);
    let _tunnel = docs::start_tunnel(sh, line, local);
    docs::echo_through(local, b"SELECT 1", line);
}

/// `keys known-hosts` prints the lines `ssh` looks up, with the keys `keys` prints.
#[test]
fn keys_known_hosts_prints_lines_ssh_finds() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    run(Command::new(BIN)
        .env("HOME", h)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("PORTCULLIS_PROFILE")
        .args(["init", "--dir"])
        .arg(h.join("pc")))
    .ok();
    let config = h.join("pc/portcullis.toml");
    let keys = run(Command::new(BIN).args(["keys", "--config"]).arg(&config));
    keys.ok();
    let key = |label: &str| {
        keys.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{label} ")))
            .unwrap()
            .to_string()
    };
    let out = run(Command::new(BIN)
        .args(["keys", "known-hosts", "--config"])
        .arg(&config)
        .args(["--host", "bastion.example.com"]));
    out.ok();
    assert_eq!(
        out.stdout,
        format!(
            "[bastion.example.com]:2222 {}\n[bastion.example.com]:2223 {}\n",
            key("gateway-host"),
            key("approver-host")
        )
    );
    let file = h.join("known_hosts");
    std::fs::write(&file, &out.stdout).unwrap();
    for host in ["[bastion.example.com]:2222", "[bastion.example.com]:2223"] {
        let found = run(Command::new("ssh-keygen")
            .args(["-F", host, "-f"])
            .arg(&file));
        assert_eq!(found.code, 0, "ssh-keygen -F {host}: {}", found.stderr);
    }
    // Without --host, the listen address; every interface names no host.
    let bare = run(Command::new(BIN)
        .args(["keys", "known-hosts", "--config"])
        .arg(&config));
    assert!(
        bare.stdout.starts_with("[127.0.0.1]:2222 "),
        "{}",
        bare.stdout
    );
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("127.0.0.1:2222", "0.0.0.0:2222")).unwrap();
    run(Command::new(BIN)
        .args(["keys", "known-hosts", "--config"])
        .arg(&config))
    .fails_with("pass --host NAME");
}
