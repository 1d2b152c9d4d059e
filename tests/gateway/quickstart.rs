//! `portcullis quickstart`: every line it prints is short and works when pasted (the tunnel
//! too, checked through its forward), README's example lines are among them, and Ctrl-C stops
//! it cleanly.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::docs::{self, KillOnDrop};
use crate::support::{run, BIN, SOON};

/// A command as a user's shell runs it: this HOME (where the quickstart's profile goes),
/// `portcullis` on PATH, and nothing from the runner's environment that picks a profile.
fn in_home(program: &str, home: &Path) -> Command {
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut c = Command::new(program);
    c.current_dir(home)
        .env("HOME", home)
        .env("PATH", path)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("PORTCULLIS_PROFILE")
        .env_remove("SSH_AUTH_SOCK");
    c
}

#[test]
fn the_printed_lines_work_when_pasted() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let mut child = KillOnDrop(
        // As README says to run it: in a directory of the user's, with the default --dir.
        in_home(BIN, home)
            .arg("quickstart")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let child = &mut child.0;
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + SOON;
    let mut lines = Vec::new();
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("quickstart never said ready");
        if line == "ready" {
            break;
        }
        lines.push(line);
    }
    let commands: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("ssh ") || l.starts_with("portcullis "))
        .collect();
    assert!(commands.len() >= 8, "{lines:?}");
    for line in &commands {
        assert!(line.len() < 100, "too long to read: {line}");
        assert!(
            !line.contains(" -i "),
            "the ssh_config has the keys: {line}"
        );
    }
    // README's example lines are lines quickstart prints, so they run below too.
    let readme = docs::blocks(&docs::read_doc("README.md"));
    for (shown, _) in docs::commands(&docs::block(&readme, "readme-quickstart-lines").text) {
        assert!(
            commands
                .iter()
                .any(|printed| ports_as_placeholders(printed) == ports_as_placeholders(&shown)),
            "README shows {shown:?}, which quickstart does not print:\n{lines:#?}"
        );
    }
    // The thin clients need no flags: the quickstart's profile is the default one.
    assert!(
        commands.contains(&&"portcullis admin grants --active".to_string()),
        "{lines:?}"
    );
    for line in &commands {
        if line.contains(" -N ") {
            check_tunnel(line, home);
            continue;
        }
        let out = run(in_home("sh", home).arg("-c").arg(line.as_str()));
        assert_eq!(
            out.code, 0,
            "{line}\nstdout: {}\nstderr: {}",
            out.stdout, out.stderr
        );
    }

    // Ctrl-C stops everything cleanly.
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let deadline = Instant::now() + SOON;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success(), "{st}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "quickstart did not stop on SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `line` with each port number (digits beside a `:`) written `PORT`, as README writes the
/// ports quickstart picks at run time (a free one where its preferred one is taken).
fn ports_as_placeholders(line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && chars[i].is_ascii_digit() {
            i += 1;
        }
        let beside_colon = (start > 0 && chars[start - 1] == ':') || chars.get(i) == Some(&':');
        if beside_colon {
            out.push_str("PORT");
        } else {
            out.extend(&chars[start..i]);
        }
    }
    out
}

/// `ssh … -N -L PORT:echo-db:…` stays up: start it, send bytes through the forward to the
/// demo's echo server, and see them come back.
fn check_tunnel(line: &str, home: &Path) {
    let local: u16 = line
        .split(" -L ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no -L PORT: in {line}"));
    let mut sh = in_home("sh", home);
    sh.arg("-c").arg(format!("exec {line}"));
    let _tunnel = docs::start_tunnel(sh, line, local);
    docs::echo_through(local, b"through the tunnel", line);
}
