//! The thin clients' profile (#18 item 2): `init` and `login` write one, and then
//! `portcullis admin|request|audit` work with no flags; flags and `PORTCULLIS_*` still win; the
//! pinned host key is enforced, and only for the approver it was pinned for.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use crate::support::{keygen, run, targets::free_port, Env, BIN, SOON};

/// `portcullis` with `home` as its HOME and nothing from the test runner's environment that
/// would choose a profile or a connection setting for it.
fn client(home: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.env("HOME", home)
        .env("USER", "nobody-in-particular")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("SSH_AUTH_SOCK");
    for var in [
        "PORTCULLIS_APPROVER",
        "PORTCULLIS_USER",
        "PORTCULLIS_IDENTITY",
        "PORTCULLIS_APPROVER_HOST_KEY",
        "PORTCULLIS_KNOWN_HOSTS",
        "PORTCULLIS_PROFILE",
    ] {
        c.env_remove(var);
    }
    c
}

fn default_profile(home: &Path) -> PathBuf {
    home.join(".config/portcullis/profile.toml")
}

/// The words of a printed command line (the tests' paths have no spaces or quotes).
fn words(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_string).collect()
}

struct Approver(Child);

impl Drop for Approver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn after_init_the_printed_admin_line_works_bare() {
    let home = tempfile::tempdir().unwrap();
    let out = run(client(home.path())
        .args(["init", "--user", "ops", "--dir"])
        .arg(home.path().join("pc")));
    out.ok();
    let printed = |prefix: &str| {
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("init printed no {prefix:?} line:\n{}", out.stdout))
            .trim()
            .to_string()
    };
    let start = printed("start the approver:");
    let try_line = printed("then try:");
    assert_eq!(try_line, "portcullis admin status", "{}", out.stdout);
    let profile = default_profile(home.path());
    let mode = std::fs::metadata(&profile).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );

    // init's approver listens on 2223, which another test (or a quickstart) may hold: move
    // it, in the config and in the profile alike, to a free port. Nothing else is touched.
    let port = free_port().to_string();
    for file in [home.path().join("pc/portcullis.toml"), profile.clone()] {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.contains("127.0.0.1:2223"), "{}", file.display());
        std::fs::write(
            &file,
            text.replace("127.0.0.1:2223", &format!("127.0.0.1:{port}")),
        )
        .unwrap();
    }
    let start = words(&start);
    assert_eq!(start[0], "portcullis");
    let _approver = Approver(
        client(home.path())
            .args(&start[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + SOON;
    while std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_err() {
        assert!(Instant::now() < deadline, "the approver did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let line = words(&try_line);
    let status = run(client(home.path()).args(&line[1..]));
    status.ok();
    assert!(status.stdout.contains("ops"), "{}", status.stdout);
    // The pin came from the profile: nothing was learned into known_hosts.
    assert!(!status.stderr.contains("learned"), "{}", status.stderr);
}

#[test]
fn login_then_admin_audit_and_request_work_bare_and_flags_win() {
    let env = Env::start();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();

    // First contact: the host key is learned, and then pinned in the profile.
    let out = run(client(h)
        .args(["login", "--approver", &env.addr, "-l", "ada", "-i"])
        .arg(env.key("ada")));
    out.ok();
    assert!(
        out.stdout.contains("as ada (groups: admins)"),
        "{}",
        out.stdout
    );
    assert!(out.stderr.contains("learned host key"), "{}", out.stderr);
    let text = std::fs::read_to_string(default_profile(h)).unwrap();
    assert!(text.contains(&env.host_key), "{text}");
    assert!(
        text.contains(&format!("approver = \"{}\"", env.addr)),
        "{text}"
    );

    // `portcullis admin [OPTIONS] --json whoami` as this HOME, options before the command.
    let whoami = |c: &mut Command, options: &[&std::ffi::OsStr]| {
        run(c.arg("admin").args(options).args(["--json", "whoami"]))
    };
    assert_eq!(whoami(&mut client(h), &[]).json()["user"], "ada");
    run(client(h).args(["audit", "log", "--since", "1h"])).ok();
    run(client(h).args(["admin", "grants"])).ok();

    // Another user on the same approver: what login is not told stays as it was.
    run(client(h)
        .args(["login", "-l", "alice", "-i"])
        .arg(env.key("alice")))
    .ok();
    let req = run(client(h).args(["request", "--json", "pg-staging", "--for", "1h"]));
    req.ok();
    assert_eq!(req.json()["request"]["state"], "approved", "{}", req.stdout);
    assert_eq!(whoami(&mut client(h), &[]).json()["user"], "alice");

    // A flag beats the profile, and so does the environment.
    let bob_key = env.key("bob");
    let flagged = whoami(
        &mut client(h),
        &[
            "-l".as_ref(),
            "bob".as_ref(),
            "-i".as_ref(),
            bob_key.as_os_str(),
        ],
    );
    assert_eq!(flagged.json()["user"], "bob");
    let from_env = whoami(
        client(h)
            .env("PORTCULLIS_USER", "carol")
            .env("PORTCULLIS_IDENTITY", env.key("carol")),
        &[],
    );
    assert_eq!(from_env.json()["user"], "carol");

    // Another profile, by flag or by variable.
    let other = h.join("auditor.toml");
    run(client(h)
        .args(["login", "--profile"])
        .arg(&other)
        .args(["--approver", &env.addr, "-l", "audrey", "-i"])
        .arg(env.key("audrey")))
    .ok();
    run(client(h)
        .args(["audit", "--profile"])
        .arg(&other)
        .args(["log"]))
    .ok();
    assert_eq!(
        whoami(client(h).env("PORTCULLIS_PROFILE", &other), &[]).json()["user"],
        "audrey"
    );
    // The default profile is still alice's.
    assert_eq!(whoami(&mut client(h), &[]).json()["user"], "alice");
}

#[test]
fn the_profiles_pin_is_enforced_and_only_for_its_approver() {
    let env = Env::start();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    run(client(h)
        .args(["login", "--approver", &env.addr, "-l", "alice", "-i"])
        .arg(env.key("alice")))
    .ok();
    let profile = default_profile(h);
    let good = std::fs::read_to_string(&profile).unwrap();

    // A login that is told another key than the approver's writes nothing.
    let imposter = keygen(h, "imposter");
    run(client(h).args(["login", "--approver-host-key", &imposter]))
        .fails_with("does not match the pinned key");
    assert_eq!(std::fs::read_to_string(&profile).unwrap(), good);

    // A profile whose pin is not the approver's key: refused, as ssh refuses a changed key.
    std::fs::write(&profile, good.replace(&env.host_key, &imposter)).unwrap();
    run(client(h).args(["admin", "whoami"])).fails_with("does not match the pinned key");
    std::fs::write(&profile, &good).unwrap();

    // Pointed at another approver, the client does not hold it to this one's pin: it checks
    // that one against known_hosts (learned on first use).
    let other = Env::start();
    let out = run(client(h)
        .args(["admin", "--approver", &other.addr, "-i"])
        .arg(other.key("alice"))
        .args(["--json", "whoami"]));
    out.ok();
    assert_eq!(out.json()["user"], "alice");
    assert!(out.stderr.contains("learned host key"), "{}", out.stderr);

    // Others could point the client elsewhere through a profile they can write: refused.
    std::fs::set_permissions(
        &profile,
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .unwrap();
    run(client(h).args(["admin", "whoami"])).fails_with("chmod 600");
}

#[test]
fn init_keeps_a_profile_for_another_approver_and_says_so() {
    let env = Env::start();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    run(client(h)
        .args(["login", "--approver", &env.addr, "-l", "alice", "-i"])
        .arg(env.key("alice")))
    .ok();
    let before = std::fs::read_to_string(default_profile(h)).unwrap();
    let out = run(client(h)
        .args(["init", "--user", "ops", "--dir"])
        .arg(h.join("pc")));
    out.ok();
    assert!(out.stdout.contains("kept profile"), "{}", out.stdout);
    assert!(out.stdout.contains(&env.addr), "{}", out.stdout);
    assert_eq!(std::fs::read_to_string(default_profile(h)).unwrap(), before);
    // The new approver's profile is beside its config, and the line to try names it.
    let local = h.join("pc/profile.toml");
    assert!(local.exists());
    assert!(
        out.stdout.contains(&format!(
            "then try:            portcullis admin --profile {} status",
            local.display()
        )),
        "{}",
        out.stdout
    );
}

#[test]
fn without_a_profile_a_failed_login_says_how_to_save_one() {
    let env = Env::start();
    let home = tempfile::tempdir().unwrap();
    run(client(home.path())
        .args(["admin", "--approver", &env.addr, "-l", "dave"])
        .args(["--approver-host-key", &env.host_key, "whoami"]))
    .fails_with("portcullis login --approver");
}
