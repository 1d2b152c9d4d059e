//! What portcullis keeps on disk is its own: stores, spools, recordings and keys are created
//! 0600 in 0700 directories whatever the umask it was started with, and a key file others
//! could read (or that someone else owns, or that is a link) is refused at start.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use super::common::{self, grant, Tunnel};
use crate::support::BIN;

/// Every file and directory under `dir` that group or others can reach, with its mode.
fn exposed(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = path.symlink_metadata().unwrap();
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                found.push(format!("{:04o} {}", mode, path.display()));
            }
            if meta.is_dir() {
                todo.push(path);
            }
        }
    }
    found
}

#[test]
fn stores_spools_recordings_and_keys_are_private_whatever_the_umask() {
    // The test runner's umask (022 on most machines) is what the daemons inherit.
    let g = common::start("");
    let env = &g.env;
    grant(env, "alice", "echo", "10m");
    let mut t = Tunnel::open(env, "alice", &format!("echo:{}", g.echo.port));
    assert_eq!(t.echo(b"x"), b"x");
    t.close();
    for side in ["approver", "gateway"] {
        let exposed = exposed(&env.path().join(side));
        assert!(exposed.is_empty(), "{side}: {exposed:#?}");
    }
}

#[test]
fn a_key_others_can_read_is_refused_at_start() {
    let g = common::start("");
    let mut env = g.env;
    env.kill9_gateway();
    let key = env.path().join("gateway/host_key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(BIN)
        .args(["gateway", "--config"])
        .arg(env.path().join("gateway.toml"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("chmod 600"), "{err}");
}
