//! `portcullis quickstart`: every `ssh` line it prints works when pasted (long-running forwards
//! aside), and Ctrl-C stops it cleanly.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{run, BIN, SOON};

#[test]
fn the_printed_lines_work_when_pasted() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = KillOnDrop(
        Command::new(BIN)
            .args(["quickstart", "--dir"])
            .arg(dir.path().join("qs"))
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
    assert!(commands.len() >= 5, "{lines:?}");
    let mut ran = 0;
    for line in commands
        .iter()
        .filter(|l| l.starts_with("ssh ") && !l.contains(" -N "))
    {
        let out = run(Command::new("sh").arg("-c").arg(line.as_str()));
        assert_eq!(
            out.code, 0,
            "{line}\nstdout: {}\nstderr: {}",
            out.stdout, out.stderr
        );
        ran += 1;
    }
    assert!(ran >= 3);
    // The `portcullis` lines are the same binary's thin clients.
    for line in commands.iter().filter(|l| l.starts_with("portcullis ")) {
        let args = shell_words(line);
        let out = run(Command::new(BIN).args(&args[1..]));
        assert_eq!(out.code, 0, "{line}\nstderr: {}", out.stderr);
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

/// A failing assertion must not leave a quickstart holding ports 2222 and 2223.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn shell_words(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_string).collect()
}
