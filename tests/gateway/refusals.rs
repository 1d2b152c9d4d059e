//! Refusals that teach, and that happen before any connection to a target is made.

use std::process::Command;

use super::common::{self, grant, Tunnel};
use crate::support::{run, BIN};

fn refused(g: &common::GwEnv, user: &str, dest: &str) -> String {
    let t = Tunnel::open(&g.env, user, dest);
    let (code, err, _) = t.wait_cut();
    assert_ne!(code, 0, "{dest} was not refused");
    err
}

#[test]
fn no_grant_wrong_user_wrong_target_and_unconfigured_addresses() {
    let g = common::start("");
    let env = &g.env;
    let echo = format!("echo:{}", g.echo.port);

    let err = refused(&g, "alice", &echo);
    assert!(err.contains("no active grant for alice on echo"), "{err}");
    assert!(
        err.contains("request echo --for 1h"),
        "the refusal says what to run: {err}"
    );

    // Another user's grant does not count.
    grant(env, "dave", "echo", "10m");
    let err = refused(&g, "alice", &echo);
    assert!(err.contains("no active grant for alice on echo"), "{err}");

    // Nor does a grant for another target.
    grant(env, "alice", "echo-b", "10m");
    let err = refused(&g, "alice", &echo);
    assert!(err.contains("no active grant for alice on echo"), "{err}");
    let before = g.echo.connections();

    // An address that is not a configured target is refused before any connection.
    for dest in [
        format!("127.0.0.1:{}", g.stray.port),
        format!("localhost:{}", g.echo.port),
        "10.255.255.1:22".to_string(),
    ] {
        let err = refused(&g, "alice", &dest);
        assert!(err.contains("is not a configured target"), "{dest}: {err}");
    }
    assert_eq!(
        g.stray.connections(),
        0,
        "the stray listener saw a connection"
    );
    assert_eq!(
        g.echo.connections(),
        before,
        "echo saw a connection it should not have"
    );
    assert_eq!(g.echo_b.connections(), 0, "echo-b was never asked for");

    // The refusals left no session behind.
    let out = env.admin("ada", &["--json", "sessions"]);
    assert_eq!(out.json()["sessions"].as_array().unwrap().len(), 0);
}

#[test]
fn a_gateway_that_never_reached_the_approver_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gw.toml");
    // A valid signing key and host key that nothing answers for.
    let keys = run(Command::new(BIN).arg("keys").arg("--config").arg({
        let c = dir.path().join("k.toml");
        std::fs::write(
            &c,
            format!("[approver]\ndata_dir = \"{}/a\"\n", dir.path().display()),
        )
        .unwrap();
        c
    }));
    let line = |l: &str| {
        keys.stdout
            .lines()
            .find_map(|x| x.strip_prefix(&format!("{l} ")))
            .unwrap()
            .to_string()
    };
    std::fs::write(
        &cfg,
        format!(
            "[gateway]\nname = \"gw-9\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{d}/gw\"\napprover = \"127.0.0.1:1\"\napprover_host_key = \"{h}\"\ngrant_signing_key = \"{s}\"\n",
            d = dir.path().display(),
            h = line("approver-host"),
            s = line("grant-signing")
        ),
    )
    .unwrap();
    let mut gw = Command::new(BIN)
        .args(["gateway", "--config"])
        .arg(&cfg)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr_file = dir.path().join("gw/gateway.addr");
    let deadline = std::time::Instant::now() + crate::support::SOON;
    while !addr_file.exists() {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let addr = std::fs::read_to_string(&addr_file).unwrap();
    let port = addr.trim().rsplit(':').next().unwrap().to_string();
    let key = crate::support::keygen(dir.path(), "someone");
    drop(key);
    let out = run(Command::new("ssh")
        .args(["-F", "/dev/null", "-p", &port, "-i"])
        .arg(dir.path().join("someone_key"))
        .args([
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "someone@127.0.0.1",
            "status",
        ]));
    let _ = gw.kill();
    let _ = gw.wait();
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("has not heard from the approver"),
        "{}",
        out.stderr
    );
}

/// A forward refused while the user's request for that target is pending says so, with the
/// whole `wait` line, where stock `ssh -L` shows it: `channel N: open failed: administratively
/// prohibited: portcullis: …`. Without a pending request the refusal still says to request.
#[test]
fn a_forward_refused_while_a_request_is_pending_says_which_to_wait_for() {
    use std::io::Read;
    let g = common::start("");
    let env = &g.env;
    // pg-prod needs two approvals: the request stays pending.
    let id = crate::support::request_id(&env.gw_ssh(
        "alice",
        &["request", "pg-prod", "--reason", "INC-9", "--json"],
    ));
    let expected = format!(
        "open failed: administratively prohibited: portcullis: no active grant for alice on pg-prod: request {id} is pending (0/2 approvals) - wait for it: ssh -p {} alice@127.0.0.1 wait {id}",
        env.gw_port()
    );

    let local = crate::support::targets::free_port();
    let mut ssh = Command::new("ssh")
        .arg("-F")
        .arg(env.ssh_config("alice"))
        .args(["-p", &env.gw_port(), "-N", "-L"])
        .arg(format!("{local}:pg-prod:15432"))
        .arg("alice@127.0.0.1")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Connect once ssh listens; the refused channel closes the connection.
    let deadline = std::time::Instant::now() + crate::support::SOON;
    let mut conn = loop {
        match std::net::TcpStream::connect(("127.0.0.1", local)) {
            Ok(c) => break c,
            Err(e) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "ssh -L never listened: {e}"
                );
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    };
    let _ = conn.read_to_end(&mut Vec::new());
    let _ = ssh.kill();
    let mut err = String::new();
    ssh.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let _ = ssh.wait();
    assert!(err.contains(&expected), "{err}");

    // The same through -W; and dave, who asked for nothing, is told to ask.
    let err = refused(&g, "alice", "pg-prod:15432");
    assert!(err.contains(&format!("request {id} is pending")), "{err}");
    let err = refused(&g, "dave", "pg-prod:15432");
    assert!(err.contains("request pg-prod --for 1h"), "{err}");
    assert!(!err.contains("is pending"), "{err}");
}
