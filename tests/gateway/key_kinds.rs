//! Every kind of key a stock OpenSSH client makes (#13 item 1): RSA-3072, ECDSA-256/384 and
//! ed25519 log in through the gateway and to the approver, from key files and from ssh-agent,
//! with the stock `ssh` and with the thin client; a client that signs only with SHA-1
//! (`ssh-rsa`) is refused, with a log line that says so. FIDO keys log in end to end in
//! fido.rs, through a software token.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use russh::keys::PrivateKeyWithHashAlg;

use super::common;
use crate::support::agent::{ssh_via_agent, Agent};
use crate::support::russh_client;
use crate::support::{run, ssh_with_keys, Env, Out, BIN};

/// The kinds tested, as `ssh-keygen -t TYPE -b BITS`.
const KINDS: &[(&str, &str, &str)] = &[
    ("rsa3072", "rsa", "3072"),
    ("ecdsa256", "ecdsa", "256"),
    ("ecdsa384", "ecdsa", "384"),
    ("ed25519", "ed25519", "256"),
];

fn keygen(dir: &Path, name: &str, kind: &str, bits: &str) -> PathBuf {
    let path = dir.join(format!("kim_{name}"));
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-b", bits, "-N", "", "-C", name, "-f"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(st.success());
    path
}

fn fingerprint(key: &Path) -> String {
    let out = run(Command::new("ssh-keygen")
        .arg("-lf")
        .arg(key.with_extension("pub")));
    out.stdout.split_whitespace().nth(1).unwrap().to_string()
}

/// The environment: user `kim` (group dev) holds one key of each kind.
fn start() -> (common::GwEnv, Vec<(String, PathBuf)>) {
    let mut made = Vec::new();
    let g = common::start_with(|env| {
        let mut keys = Vec::new();
        for (name, kind, bits) in KINDS {
            let path = keygen(env.path(), name, kind, bits);
            let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
            keys.push(format!("\"{}\"", public.trim()));
            made.push((name.to_string(), path));
        }
        format!(
            "\n[[users]]\nname = \"kim\"\nkeys = [{}]\ngroups = [\"dev\"]\n",
            keys.join(", ")
        )
    });
    (g, made)
}

fn approver_port(env: &Env) -> String {
    env.addr.rsplit(':').next().unwrap().to_string()
}

/// `whoami` answers with the key that logged in: it must be the one used.
fn assert_logged_in_with(out: &Out, key: &Path, how: &str) {
    assert_eq!(out.code, 0, "{how}: {}", out.stderr);
    let fp = fingerprint(key);
    assert!(out.stdout.contains("kim (key "), "{how}: {}", out.stdout);
    assert!(out.stdout.contains(&fp), "{how}: not {fp}: {}", out.stdout);
}

#[test]
fn every_key_kind_logs_in_from_files_and_from_the_agent() {
    let (g, keys) = start();
    let env = &g.env;
    let agent = Agent::start(env.path());
    for (name, key) in &keys {
        for (place, port) in [("gateway", env.gw_port()), ("approver", approver_port(env))] {
            let out = ssh_with_keys(&port, "kim", &[key], &[], &["whoami"]);
            assert_logged_in_with(&out, key, &format!("{name} file to the {place}"));
            agent.only(key);
            let out = ssh_via_agent(&port, "kim", &agent, key, env.path());
            assert_logged_in_with(&out, key, &format!("{name} agent to the {place}"));
        }
        // The thin client: `-i FILE`, then ssh-agent (no -i; a home with no keys of its own).
        let thin = |cmd: &mut Command| {
            cmd.args(["admin", "--approver", &env.addr, "-l", "kim"])
                .args(["--approver-host-key", &env.host_key]);
        };
        let mut c = Command::new(BIN);
        thin(&mut c);
        c.arg("-i")
            .arg(key)
            .arg("whoami")
            .env_remove("SSH_AUTH_SOCK");
        assert_logged_in_with(&run(&mut c), key, &format!("{name} thin client -i"));
        let mut c = Command::new(BIN);
        thin(&mut c);
        c.arg("whoami")
            .env("SSH_AUTH_SOCK", &agent.sock)
            .env("HOME", env.path().join("no-home"));
        assert_logged_in_with(&run(&mut c), key, &format!("{name} thin client agent"));
    }
    // A forward through the gateway under a grant, with the RSA key: a login is more than
    // whoami.
    let rsa = &keys[0].1;
    let out = ssh_with_keys(
        &env.gw_port(),
        "kim",
        &[rsa],
        &[],
        &["request", "echo", "--for", "10m"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(env
        .gw_log()
        .contains(&format!("authenticated kim ({})", fingerprint(rsa))));
}

/// Sign with `ssh-rsa` (SHA-1) whatever the server lists, as no stock client does any more.
fn login_with_sha1(addr: &str, key: &Path) -> bool {
    let key = Arc::new(russh::keys::load_secret_key(key, None).unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut h = russh_client::connect(addr).await;
        let r = h
            .authenticate_publickey("kim", PrivateKeyWithHashAlg::new(key, None))
            .await
            .unwrap();
        r.success()
    })
}

#[test]
fn a_client_that_signs_only_with_sha1_is_refused() {
    let (g, keys) = start();
    let env = &g.env;
    let rsa = &keys[0].1;
    let fp = fingerprint(rsa);
    for (place, port) in [("gateway", env.gw_port()), ("approver", approver_port(env))] {
        // Stock ssh finds nothing in common with the server's list and gives up.
        let out = ssh_with_keys(
            &port,
            "kim",
            &[rsa],
            &["-o", "PubkeyAcceptedAlgorithms=ssh-rsa"],
            &["whoami"],
        );
        assert_eq!(out.code, 255, "{place}: {}", out.stderr);
        assert!(out.stderr.contains("Permission denied"), "{}", out.stderr);
        assert!(
            out.stderr.contains("no mutual signature algorithm"),
            "{}",
            out.stderr
        );
        // A client that signs with SHA-1 anyway is refused after its signature, and the
        // operator reads why (the client learns only that it failed).
        assert!(
            !login_with_sha1(&format!("127.0.0.1:{port}"), rsa),
            "{place}"
        );
        let log = || match place {
            "gateway" => env.gw_log(),
            _ => env.log(),
        };
        env.eventually("the refusal's log line", || {
            log().lines().any(|l| {
                l.contains("login refused for \"kim\"")
                    && l.contains(&format!("RSA-3072 {fp}"))
                    && l.contains("ssh-rsa (SHA-1) signatures are refused")
                    && l.contains("127.0.0.1:")
            })
        });
    }
}

/// `portcullis check` refuses a key portcullis could not verify, and says why; FIDO keys are
/// accepted and compared by key data like any other (fido.rs logs in with them).
#[test]
fn check_refuses_keys_it_cannot_verify() {
    let dir = tempfile::tempdir().unwrap();
    let small = keygen(dir.path(), "rsa1024", "rsa", "1024");
    let small = std::fs::read_to_string(small.with_extension("pub")).unwrap();
    let check = |keys: &str| {
        let p = dir.path().join("c.toml");
        std::fs::write(&p, format!("[[users]]\nname = \"kim\"\nkeys = [{keys}]\n")).unwrap();
        run(Command::new(BIN).arg("check").arg("--config").arg(&p))
    };
    check(&format!("\"{}\"", small.trim()))
        .fails_with("users[0] (kim).keys[0]: public key")
        .fails_with("RSA key of 1024 bits is too small (at least 2048");
    check("\"ssh-ed25519-cert-v01@openssh.com AAAA x\"").fails_with("is a certificate, not a key");
    // ssh-keygen -t ed25519-sk / ecdsa-sk public halves (the `ssh:` application).
    let sk = "\"sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIIqHTeOyl710m60++4POL7xdRR/gKTlHDtje+AZHBh9OAAAABHNzaDo= fido\", \
              \"sk-ecdsa-sha2-nistp256@openssh.com AAAAInNrLWVjZHNhLXNoYTItbmlzdHAyNTZAb3BlbnNzaC5jb20AAAAIbmlzdHAyNTYAAABBBMaz6D6405d21enKYjsGsoiDp2MpXTNgw9vXlExvevXcdFxLS89SfrrH22rXlN3N2+OAMOtyGebQ3S6rWspM4PIAAAAEc3NoOg== fido\"";
    check(sk).ok();
}
