//! The systemd layout, run the way `deploy/portcullis-*.service` describe it: two system users
//! made by the steps `init` prints, a state directory each (0700, its user's), one config
//! without secrets that both read, each daemon started as its unit's user, and the
//! internet-facing gateway unable to read the approver's grant-signing key. Then one real
//! request and forward through the gateway with the stock `ssh`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::ns::{self, Netns};
use crate::support::{keygen, run, BIN};

/// One `Key=value` of a unit file (the last, as systemd takes it for single-valued keys).
fn unit_value(unit: &str, key: &str) -> String {
    unit.lines()
        .rev()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("the unit has no {key}="))
        .trim()
        .to_string()
}

fn unit(name: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
    std::fs::read_to_string(root.join(name)).unwrap()
}

/// System users made for one test, deleted (with their groups) at the end.
struct Users(Vec<String>);

impl Drop for Users {
    fn drop(&mut self) {
        for u in &self.0 {
            let _ = Command::new("userdel")
                .arg(u)
                .stderr(Stdio::null())
                .status();
            let _ = Command::new("groupdel")
                .arg(u)
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The paths the units use, moved under `root` (a scratch /).
fn rooted(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

#[test]
fn the_units_layout_runs_with_two_users_and_the_gateway_cannot_read_the_signing_key() {
    if !ns::root_or_skip(
        "the_units_layout_runs_with_two_users_and_the_gateway_cannot_read_the_signing_key",
    ) {
        return;
    }
    let approver_unit = unit("portcullis-approver.service");
    let gateway_unit = unit("portcullis-gateway.service");

    // What the units say: separate users and state directories, one config.
    let (a_user, g_user) = (
        unit_value(&approver_unit, "User"),
        unit_value(&gateway_unit, "User"),
    );
    assert_ne!(
        a_user, g_user,
        "the approver and the gateway must run as different users"
    );
    let (a_state, g_state) = (
        unit_value(&approver_unit, "StateDirectory"),
        unit_value(&gateway_unit, "StateDirectory"),
    );
    assert!(
        !a_state.contains(' ') && !g_state.contains(' ') && a_state != g_state,
        "one state directory each, neither inside the other: {a_state:?} / {g_state:?}"
    );
    assert!(
        !a_state.starts_with(&format!("{g_state}/"))
            && !g_state.starts_with(&format!("{a_state}/")),
        "{a_state:?} / {g_state:?}"
    );
    for u in [&approver_unit, &gateway_unit] {
        assert_eq!(unit_value(u, "StateDirectoryMode"), "0700");
        assert_eq!(unit_value(u, "ProtectSystem"), "strict");
    }
    let config_of = |u: &str| {
        let exec = unit_value(u, "ExecStart");
        exec.split_once("--config ").unwrap().1.trim().to_string()
    };
    let config = config_of(&approver_unit);
    assert_eq!(config, config_of(&gateway_unit));
    let config_dir = Path::new(&config)
        .parent()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();

    // A scratch root with the /etc and /var/lib a host has (0755, root's).
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    for d in ["etc", "var", "var/lib"] {
        std::fs::create_dir(root.join(d)).unwrap();
        std::fs::set_permissions(root.join(d), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let data_root = root.join("var/lib");
    let config_path = rooted(root, &config);
    keygen(root, "ops");

    // Users of our own (unique, removed afterwards) in place of the units' names.
    let tag = std::process::id() % 100_000;
    let (a_name, g_name) = (format!("pca{tag}"), format!("pcg{tag}"));
    let users = Users(vec![a_name.clone(), g_name.clone()]);

    // `init` as the docs say, then the steps it prints, literally.
    let out = run(Command::new(BIN)
        .args(["init", "--dir"])
        .arg(rooted(root, &config_dir))
        .arg("--data-root")
        .arg(&data_root)
        .args(["--user", "ops", "--key"])
        .arg(root.join("ops_key.pub"))
        .args(["--approver-user", &a_name, "--gateway-user", &g_name]));
    out.ok();
    let steps: Vec<&str> = out
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("Next, as root"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(str::trim)
        .collect();
    assert!(
        steps.iter().any(|s| s.contains("useradd")) && steps.iter().any(|s| s.contains("chown")),
        "init printed no useradd/chown steps:\n{}",
        out.stdout
    );
    for step in &steps {
        run(Command::new("sh").args(["-c", step])).ok();
    }
    // The same steps again do no harm (a re-run, or systemd having made the directories).
    for step in &steps {
        run(Command::new("sh").args(["-c", step])).ok();
    }

    let a_dir = data_root.join(&a_state);
    let g_dir = data_root.join(&g_state);
    let text = std::fs::read_to_string(&config_path).unwrap();
    assert!(
        text.contains(&format!("data_dir = \"{}\"", a_dir.display())),
        "{text}"
    );
    assert!(
        text.contains(&format!("data_dir = \"{}\"", g_dir.display())),
        "{text}"
    );
    // The admin's private key is with the admin, in no daemon's directory.
    for d in [&a_dir, &g_dir, &rooted(root, &config_dir)] {
        for e in std::fs::read_dir(d).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                !name.contains("ops") && !name.contains("user_"),
                "{name} in {}",
                d.display()
            );
        }
    }

    let mut ns = Netns::new(root, &[]);
    // The config's demo target, served inside the namespace.
    ns.start_echo("127.0.0.1:5432");
    let as_user = |ns: &Netns, user: &str, program: &str| {
        let mut c = ns.command("setpriv");
        c.args(["--reuid", user, "--regid", user, "--init-groups", "--"])
            .arg(program);
        c
    };
    let exec = |unit: &str| -> Vec<String> {
        let exec = unit_value(unit, "ExecStart");
        let mut words: Vec<String> = exec.split_whitespace().map(String::from).collect();
        assert_eq!(words[0], "/usr/local/bin/portcullis");
        words.remove(0);
        let last = words.len() - 1;
        words[last] = config_path.display().to_string();
        words
    };
    // ExecStartPre: `check`, as the unit's user.
    for (unit, user) in [(&approver_unit, &a_name), (&gateway_unit, &g_name)] {
        let pre = unit_value(unit, "ExecStartPre");
        assert!(pre.contains(" check --config "), "{pre}");
        run(as_user(&ns, user, BIN)
            .args(["check", "--config"])
            .arg(&config_path))
        .ok();
    }
    let mut c = as_user(&ns, &a_name, BIN);
    c.args(exec(&approver_unit)).env("PORTCULLIS_LOG", "debug");
    ns.spawn("approver", c);
    ns.wait_listening("approver", "2223");
    let mut c = as_user(&ns, &g_name, BIN);
    c.args(exec(&gateway_unit)).env("PORTCULLIS_LOG", "debug");
    ns.spawn("gateway", c);
    ns.wait_listening("gateway", "2222");

    // Who owns what, as `stat` shows it.
    let a_own = format!("{a_name}:{a_name}");
    let g_own = format!("{g_name}:{g_name}");
    assert_eq!(ns::stat(&config_path), "root:root 644");
    assert_eq!(ns::stat(config_path.parent().unwrap()), "root:root 755");
    for (path, want) in [
        (a_dir.clone(), format!("{a_own} 700")),
        (a_dir.join("grant_signing_key"), format!("{a_own} 600")),
        (a_dir.join("host_key"), format!("{a_own} 600")),
        (a_dir.join("store"), format!("{a_own} 700")),
        (g_dir.clone(), format!("{g_own} 700")),
        (g_dir.join("host_key"), format!("{g_own} 600")),
        (g_dir.join("client_key"), format!("{g_own} 600")),
        (g_dir.join("replica"), format!("{g_own} 700")),
    ] {
        assert_eq!(ns::stat(&path), want, "{}", path.display());
    }

    // The gateway's user cannot read the signing key, nor list the approver's directory; the
    // approver's user cannot read the gateway's client key.
    let cat = run(as_user(&ns, &g_name, "cat").arg(a_dir.join("grant_signing_key")));
    cat.fails_with("Permission denied");
    run(as_user(&ns, &g_name, "ls").arg(&a_dir)).fails_with("Permission denied");
    run(as_user(&ns, &a_name, "cat").arg(g_dir.join("client_key"))).fails_with("Permission denied");

    // A gateway started as the approver's user could read the key: it refuses to start.
    run(as_user(&ns, &a_name, BIN).args(exec(&gateway_unit))).fails_with("grant-signing key");

    // One real request and forward through the gateway, with the stock ssh client.
    let args = ns::ssh_args(
        root,
        &root.join("ops_key"),
        "2222",
        "127.0.0.1",
        &g_dir.join("host_key.pub"),
    );
    let ssh = |words: &[&str]| {
        run(ns
            .command("ssh")
            .args(&args)
            .arg("-n")
            .arg("ops@127.0.0.1")
            .args(words))
    };
    ns.eventually("the gateway to have the catalog", || {
        ssh(&["whoami"]).code == 0
    });
    let req = ssh(&[
        "request",
        "demo-db",
        "--for",
        "10m",
        "--reason",
        "deploy test",
    ]);
    req.ok();
    ns.eventually("a forward through the gateway", || {
        ns::echo_through(
            &ns,
            &args,
            "ops@127.0.0.1",
            "demo-db:5432",
            b"through the bastion",
        )
        .code
            == 0
    });
    drop(ns);
    drop(users);
}
