//! Every example config we ship validates.

use crate::support::{run, BIN};

#[test]
fn shipped_configs_pass_check() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut checked = 0;
    for dir in ["deploy", "docs"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                run(std::process::Command::new(BIN)
                    .arg("check")
                    .arg("--config")
                    .arg(&p))
                .ok();
                checked += 1;
            }
        }
    }
    assert!(checked >= 1, "no example configs found");
}

#[test]
fn check_names_the_problem_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(
        &p,
        "[[users]]\nname = \"a\"\nkeys = [\"ssh-ed25519 nope\"]\nfavourite = 1\n",
    )
    .unwrap();
    run(std::process::Command::new(BIN)
        .arg("check")
        .arg("--config")
        .arg(&p))
    .fails_with("favourite");
    std::fs::write(
        &p,
        "[[users]]\nname = \"a\"\nkeys = [\"ssh-ed25519 nope\"]\n",
    )
    .unwrap();
    run(std::process::Command::new(BIN)
        .arg("check")
        .arg("--config")
        .arg(&p))
    .fails_with("users[0] (a).keys[0]: invalid public key");
}

#[test]
fn init_writes_a_config_that_checks_and_starts() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(std::process::Command::new(BIN)
        .args(["init", "--user", "ops", "--dir"])
        .arg(dir.path().join("pc"))
        .env("HOME", dir.path()));
    out.ok();
    let cfg = dir.path().join("pc/portcullis.toml");
    run(std::process::Command::new(BIN)
        .arg("check")
        .arg("--config")
        .arg(&cfg))
    .ok();
    // A second init refuses to overwrite.
    run(std::process::Command::new(BIN)
        .args(["init", "--dir"])
        .arg(dir.path().join("pc"))
        .env("HOME", dir.path()))
    .fails_with("refusing to overwrite");
    // The pins it wrote are the keys `keys` prints.
    let keys = run(std::process::Command::new(BIN)
        .arg("keys")
        .arg("--config")
        .arg(&cfg));
    keys.ok();
    let text = std::fs::read_to_string(&cfg).unwrap();
    for line in keys.stdout.lines() {
        let (label, key) = line.split_once(' ').unwrap();
        if label != "gateway-host" {
            assert!(text.contains(key), "{label} not pinned in the config");
        }
    }
}
