//! Every example config we ship validates.

use crate::support::{run, Env, BIN};

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

/// A policy that can never grant what waits for its approvers is a warning: `check` names it
/// and still passes (the file loads; an approver group may be half-filled on purpose).
#[test]
fn check_warns_of_policies_that_cannot_grant_and_passes() {
    // The standard config (prod: two approvals from dba, which is bob and carol), plus a
    // policy only admins approve (ada is the only one) and one whose approver group is empty.
    let env = Env::prepare(
        "24h",
        r#"
[[groups]]
name = "sre"

[[policies]]
name = "ops"
targets = ["lonely"]
approvers = ["admins"]
max_duration = "1h"

[[policies]]
name = "oncall"
targets = ["lonely"]
approvers = ["sre"]
max_duration = "1h"
"#,
    );
    let check = |config: &std::path::Path| {
        run(std::process::Command::new(BIN)
            .arg("check")
            .arg("--config")
            .arg(config))
    };
    let out = check(&env.config);
    out.ok();
    assert!(out.stdout.contains(": ok ("), "{}", out.stdout);
    for warning in [
        "warning: policies[0] (prod): a request by bob that waits for its approvers can never be approved: it needs 2 approvals from members of dba other than bob, and there is only 1 (carol)",
        "warning: policies[0] (prod): a request by carol that waits",
        "warning: policies[3] (ops): a request by ada that waits for its approvers can never be approved: it needs 1 approval from members of admins other than ada, and there are none",
        "warning: policies[4] (oncall).approvers[0]: group \"sre\" has no members, so nobody approves through it",
        "warning: policies[4] (oncall).approvals: needs 1 approval from members of sre, and there are none: no request that waits for its approvers can ever be approved",
    ] {
        assert!(out.stderr.contains(warning), "no {warning:?} in\n{}", out.stderr);
    }
    assert_eq!(out.stderr.lines().count(), 5, "{}", out.stderr);
    // Without them, not a word.
    let text = std::fs::read_to_string(&env.config).unwrap();
    let (standard, _) = text.split_once("[[groups]]").unwrap();
    let fine = env.path().join("fine.toml");
    std::fs::write(&fine, standard.replace("approvals = 2", "approvals = 1")).unwrap();
    let out = check(&fine);
    out.ok();
    assert_eq!(out.stderr, "", "{}", out.stderr);
}

#[test]
fn init_writes_a_config_that_checks_and_starts() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(std::process::Command::new(BIN)
        .args(["init", "--user", "ops", "--dir"])
        .arg(dir.path().join("pc"))
        .env("HOME", dir.path())
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("PORTCULLIS_PROFILE"));
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
        .env("HOME", dir.path())
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("PORTCULLIS_PROFILE"))
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
        // The gateway's host key goes to users' known_hosts, its target CA to targets.
        if label != "gateway-host" && label != "target-ca" {
            assert!(text.contains(key), "{label} not pinned in the config");
        }
    }
}
