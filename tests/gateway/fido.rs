//! FIDO keys (#13 item 1), made with `ssh-keygen -t ed25519-sk` and `-t ecdsa-sk` on a software
//! token (support::fido; test only) and used by the stock OpenSSH tools: they log in through the
//! gateway and to the approver from key files and from ssh-agent, a certificate for one logs
//! its principal in through a trusted CA, and a key made with `-O no-touch-required` is refused
//! (its signatures carry no user-presence flag), as OpenSSH's sshd refuses it, with a log line
//! that says so.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::common::{self, GwEnv};
use crate::support::agent::{ssh_via_agent, Agent};
use crate::support::{fido, run, ssh_with_keys, Env, Out, BIN};

/// The kinds a stock client makes, as `ssh-keygen -t KIND`, with the certificate type
/// `ssh-keygen -s` gives a key of that kind.
const KINDS: &[(&str, &str)] = &[
    ("ed25519-sk", "sk-ssh-ed25519-cert-v01@openssh.com"),
    ("ecdsa-sk", "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com"),
];

fn fingerprint(key: &Path) -> String {
    let out = run(Command::new("ssh-keygen")
        .arg("-lf")
        .arg(key.with_extension("pub")));
    out.stdout.split_whitespace().nth(1).unwrap().to_string()
}

fn public(key: &Path) -> String {
    let text = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    format!("\"{}\"", text.trim())
}

struct Keys {
    /// fay's keys, one of each kind, touch required (the default).
    fay: Vec<PathBuf>,
    /// nora's keys, one of each kind, made with `-O no-touch-required`.
    nora: Vec<PathBuf>,
    /// cora's keys, one of each kind, listed nowhere: she logs in with certificates of CA corp.
    cora: Vec<PathBuf>,
    ca: PathBuf,
}

/// Approver and gateway with users fay and nora (dev) holding the FIDO keys above, and cora
/// (dev, no keys) whom CA `corp` (an ed25519 key of its own) vouches for.
fn start() -> (GwEnv, Keys) {
    let mut made = None;
    let g = common::start_with(|env| {
        let dir = env.path();
        let make = |user: &str, options: &[&str]| -> Vec<PathBuf> {
            KINDS
                .iter()
                .map(|(kind, _)| {
                    let path = dir.join(format!("{user}_{kind}"));
                    fido::keygen(&path, kind, options, &format!("{user} {kind}"));
                    path
                })
                .collect()
        };
        let keys = Keys {
            fay: make("fay", &[]),
            nora: make("nora", &["no-touch-required"]),
            cora: make("cora", &[]),
            ca: dir.join("corp_ca"),
        };
        let st = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "corp", "-f"])
            .arg(&keys.ca)
            .status()
            .unwrap();
        assert!(st.success());
        let list = |keys: &[PathBuf]| {
            keys.iter()
                .map(|k| public(k))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let config = format!(
            "\n[[users]]\nname = \"fay\"\nkeys = [{}]\ngroups = [\"dev\"]\n\
             \n[[users]]\nname = \"nora\"\nkeys = [{}]\ngroups = [\"dev\"]\n\
             \n[[users]]\nname = \"cora\"\ngroups = [\"dev\"]\n\
             \n[[user_cas]]\nname = \"corp\"\nkey = {}\nmax_validity = \"1h\"\n",
            list(&keys.fay),
            list(&keys.nora),
            public(&keys.ca),
        );
        made = Some(keys);
        config
    });
    (g, made.unwrap())
}

fn approver_port(env: &Env) -> String {
    env.addr.rsplit(':').next().unwrap().to_string()
}

/// The stock `ssh` with this FIDO key file, signing through the software token.
fn ssh_sk(port: &str, login: &str, key: &Path, args: &[&str]) -> Out {
    let provider = format!("SecurityKeyProvider={}", fido::provider().display());
    ssh_with_keys(port, login, &[key], &["-o", &provider], args)
}

/// `whoami` answers with the key that logged in: it must be the one used.
fn assert_logged_in_with(out: &Out, user: &str, key: &Path, how: &str) {
    assert_eq!(out.code, 0, "{how}: {}", out.stderr);
    let fp = fingerprint(key);
    assert!(
        out.stdout.contains(&format!("{user} (key ")),
        "{how}: {}",
        out.stdout
    );
    assert!(out.stdout.contains(&fp), "{how}: not {fp}: {}", out.stdout);
}

#[test]
fn fido_keys_log_in_from_files_and_from_the_agent() {
    let (g, keys) = start();
    let env = &g.env;
    let agent = Agent::with_provider(env.path(), &fido::provider());
    for (key, (kind, _)) in keys.fay.iter().zip(KINDS) {
        for (place, port) in [("gateway", env.gw_port()), ("approver", approver_port(env))] {
            let out = ssh_sk(&port, "fay", key, &["whoami"]);
            assert_logged_in_with(&out, "fay", key, &format!("{kind} file to the {place}"));
            // ssh signed through the token, asking it for the touch the key requires.
            assert!(
                out.stderr
                    .lines()
                    .any(|l| l.contains("sshsk_sign: provider") && l.contains("flags 0x01")),
                "{kind}: {}",
                out.stderr
            );
            agent.only(key);
            let out = ssh_via_agent(&port, "fay", &agent, key, env.path());
            assert_logged_in_with(&out, "fay", key, &format!("{kind} agent to the {place}"));
        }
        // The thin client signs through the agent as well (it cannot load a token itself).
        let out = run(Command::new(BIN)
            .args(["admin", "--approver", &env.addr, "-l", "fay"])
            .args(["--approver-host-key", &env.host_key, "whoami"])
            .env("SSH_AUTH_SOCK", &agent.sock)
            .env("HOME", env.path().join("no-home")));
        assert_logged_in_with(&out, "fay", key, &format!("{kind} thin client agent"));
        // Given the key file with -i, it hands the file to a private ssh-agent of its own,
        // which reaches the token through the provider the user names (as ssh-add would).
        let out = run(Command::new(BIN)
            .args(["admin", "--approver", &env.addr, "-l", "fay"])
            .args(["--approver-host-key", &env.host_key, "-i"])
            .arg(key)
            .arg("whoami")
            .env_remove("SSH_AUTH_SOCK")
            .env("SSH_SK_PROVIDER", fido::provider()));
        assert_logged_in_with(&out, "fay", key, &format!("{kind} thin client -i"));
        // More than whoami: a grant asked for through the gateway, logged with the key.
        let out = ssh_sk(
            &env.gw_port(),
            "fay",
            key,
            &["request", "echo", "--for", "10m"],
        );
        assert_eq!(out.code, 0, "{kind}: {}", out.stderr);
        let line = format!("authenticated fay ({})", fingerprint(key));
        env.eventually(&format!("{kind}: {line}"), || env.gw_log().contains(&line));
    }
}

#[test]
fn a_certificate_for_a_fido_key_logs_its_principal_in() {
    let (g, keys) = start();
    let env = &g.env;
    for (serial, (key, (kind, cert_type))) in keys.cora.iter().zip(KINDS).enumerate() {
        let serial = (serial + 7).to_string();
        // `ssh-keygen -s`: the certificate lands at KEY-cert.pub, where ssh picks it up.
        let out = run(Command::new("ssh-keygen")
            .arg("-q")
            .arg("-s")
            .arg(&keys.ca)
            .args(["-I", "cora@token", "-n", "cora", "-V", "-5m:+30m", "-z"])
            .arg(&serial)
            .arg(key.with_extension("pub")));
        assert_eq!(out.code, 0, "{kind}: {}", out.stderr);
        let cert = PathBuf::from(format!("{}-cert.pub", key.display()));
        let text = std::fs::read_to_string(&cert).unwrap();
        assert!(text.starts_with(cert_type), "{kind}: {text}");
        for (place, port) in [("gateway", env.gw_port()), ("approver", approver_port(env))] {
            let out = ssh_sk(&port, "cora", key, &["whoami"]);
            assert_logged_in_with(&out, "cora", key, &format!("{kind} certificate, {place}"));
        }
        let out = ssh_sk(
            &env.gw_port(),
            "cora",
            key,
            &["request", "echo", "--for", "10m"],
        );
        assert_eq!(out.code, 0, "{kind}: {}", out.stderr);
        let line = format!(
            "authenticated cora ({}, certificate of CA corp serial {serial} key id \"cora@token\")",
            fingerprint(key)
        );
        env.eventually(&format!("{kind}: {line}"), || env.gw_log().contains(&line));
    }
}

/// OpenSSH's sshd refuses a FIDO signature made without a touch unless authorized_keys says
/// `no-touch-required`; portcullis has no such option, so it always refuses one. The client
/// learns only that it failed; the operator's log says why.
#[test]
fn a_fido_key_made_without_touch_is_refused() {
    let (g, keys) = start();
    let env = &g.env;
    for (key, (kind, _)) in keys.nora.iter().zip(KINDS) {
        let fp = fingerprint(key);
        for (place, port) in [("gateway", env.gw_port()), ("approver", approver_port(env))] {
            let out = ssh_sk(&port, "nora", key, &["whoami"]);
            assert_eq!(out.code, 255, "{kind} at the {place}: {}", out.stderr);
            assert!(
                out.stderr.contains("Permission denied"),
                "{kind} at the {place}: {}",
                out.stderr
            );
            let log = || match place {
                "gateway" => env.gw_log(),
                _ => env.log(),
            };
            env.eventually(&format!("the {place}'s refusal of {kind}"), || {
                log().lines().any(|l| {
                    l.contains("login refused for \"nora\"")
                        && l.contains(&fp)
                        && l.contains("user presence")
                        && l.contains("127.0.0.1:")
                })
            });
        }
        // A certificate for the same key does not make up for the missing touch.
        let out = run(Command::new("ssh-keygen")
            .arg("-q")
            .arg("-s")
            .arg(&keys.ca)
            .args(["-I", "nora@token", "-n", "nora", "-V", "-5m:+30m"])
            .arg(key.with_extension("pub")));
        assert_eq!(out.code, 0, "{kind}: {}", out.stderr);
        for (place, port) in [("gateway", env.gw_port()), ("approver", approver_port(env))] {
            let out = ssh_sk(&port, "nora", key, &["whoami"]);
            assert_eq!(
                out.code, 255,
                "{kind} certificate at the {place}: {}",
                out.stderr
            );
            let log = || match place {
                "gateway" => env.gw_log(),
                _ => env.log(),
            };
            env.eventually(
                &format!("the {place}'s refusal of {kind}'s certificate"),
                || {
                    log().lines().any(|l| {
                        l.contains("login refused for \"nora\"")
                            && l.contains("(certificate for ")
                            && l.contains(&fp)
                            && l.contains("user presence")
                    })
                },
            );
        }
    }
    assert!(!env.gw_log().contains("authenticated nora"));
}
