//! OpenSSH user certificates (#13 items 2 and 3), made with `ssh-keygen -s` and used by the
//! stock `ssh`: a valid one logs its principal in at the gateway and at the approver, and the
//! session's start names its key id, serial and CA; each way a certificate can be wrong is
//! refused with a log line that says which, while the client learns only "Permission denied".

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use super::common::{self, GwEnv, Tunnel};
use crate::support::russh_client::{self, AnyHostKey};
use crate::support::{run, Env, Out, BIN};

/// `ssh-keygen -q -t ed25519 -f PATH`.
fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "k", "-f"])
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
}

/// `ssh-keygen -s CA -I ID [ARGS…] KEY.pub`: the certificate lands at `KEY-cert.pub`, where
/// ssh picks it up beside the key.
fn sign(ca: &Path, key: &Path, id: &str, args: &[&str]) {
    let mut c = Command::new("ssh-keygen");
    c.arg("-q").arg("-s").arg(ca).args(["-I", id]).args(args);
    c.arg(key.with_extension("pub"));
    let out = run(&mut c);
    assert_eq!(out.code, 0, "ssh-keygen -s {args:?}: {}", out.stderr);
}

fn fingerprint(key: &Path) -> String {
    let out = run(Command::new("ssh-keygen")
        .arg("-lf")
        .arg(key.with_extension("pub")));
    out.stdout.split_whitespace().nth(1).unwrap().to_string()
}

/// Approver and gateway trusting CA `corp` (at most 1h, serial 17 and key id `revoked-id`
/// revoked); user `cora` (dev) has no key of her own; `rogue` is a CA nobody trusts.
fn start() -> (GwEnv, PathBuf, PathBuf) {
    let g = common::start_with(|env| {
        keygen(&env.path().join("corp_ca"));
        keygen(&env.path().join("rogue_ca"));
        keygen(&env.key("cora"));
        let ca = std::fs::read_to_string(env.path().join("corp_ca.pub")).unwrap();
        format!(
            "\n[[users]]\nname = \"cora\"\ngroups = [\"dev\"]\n\n[[user_cas]]\nname = \"corp\"\nkey = \"{}\"\n\
             revoked_serials = [17]\nrevoked_key_ids = [\"revoked-id\"]\nmax_validity = \"1h\"\n",
            ca.trim()
        )
    });
    let ca = g.env.path().join("corp_ca");
    let rogue = g.env.path().join("rogue_ca");
    (g, ca, rogue)
}

/// Log in with `KEY` and `KEY-cert.pub` through russh's client, which presents any
/// certificate it is given.
fn login_with_certificate(addr: &str, user: &str, key: &Path) -> bool {
    let secret = Arc::new(russh::keys::load_secret_key(key, None).unwrap());
    let text = std::fs::read_to_string(format!("{}-cert.pub", key.display())).unwrap();
    let cert = russh::keys::Certificate::from_openssh(text.trim()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut h = russh_client::connect(addr).await;
        h.authenticate_openssh_cert(user, secret, cert)
            .await
            .unwrap()
            .success()
    })
}

/// `whoami` on a connection held open: its exit status and standard error.
fn whoami(
    rt: &tokio::runtime::Runtime,
    h: &mut russh::client::Handle<AnyHostKey>,
) -> (Option<u32>, String) {
    rt.block_on(async {
        let mut ch = h.channel_open_session().await.unwrap();
        ch.exec(true, "whoami").await.unwrap();
        let (mut status, mut err) = (None, Vec::new());
        while let Some(msg) = ch.wait().await {
            match msg {
                russh::ChannelMsg::ExtendedData { data, .. } => err.extend_from_slice(&data),
                russh::ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                _ => {}
            }
        }
        (status, String::from_utf8_lossy(&err).into_owned())
    })
}

fn approver_ssh(env: &Env, user: &str, args: &[&str]) -> Out {
    env.ssh(user, args)
}

/// The gateway's log line for the refusal of `cora`'s certificate, with this reason.
fn refused_line(env: &Env, fp: &str, reason: &str) -> bool {
    env.gw_log().lines().any(|l| {
        l.contains("login refused for \"cora\"")
            && l.contains(&format!("certificate for ssh-ed25519 {fp}"))
            && l.contains(reason)
            && l.contains("127.0.0.1:")
    })
}

#[test]
fn a_valid_certificate_logs_its_principal_in_and_the_session_names_it() {
    let (g, ca, _) = start();
    let env = &g.env;
    let key = env.key("cora");
    sign(
        &ca,
        &key,
        "cora@laptop",
        &["-n", "cora,ops", "-V", "-5m:+30m", "-z", "42"],
    );
    // At the approver and through the gateway (a relayed command), as cora.
    let out = approver_ssh(env, "cora", &["whoami"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.starts_with("cora (key "), "{}", out.stdout);
    assert!(out.stdout.contains(&fingerprint(&key)), "{}", out.stdout);
    // The thin client presents `KEY-cert.pub` beside `-i KEY`, as ssh does.
    let out = env.admin("cora", &["whoami"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.starts_with("cora (key "), "{}", out.stdout);
    let out = env.gw_ssh("cora", &["request", "echo", "--for", "10m"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(env.gw_log().contains(&format!(
        "authenticated cora ({}, certificate of CA corp serial 42 key id \"cora@laptop\")",
        fingerprint(&key)
    )));
    // A forward: its start in the audit log names the certificate.
    let mut t = Tunnel::open(env, "cora", &format!("127.0.0.1:{}", g.echo.port));
    assert_eq!(t.echo(b"hello\n"), b"hello\n");
    env.eventually("session.started with the certificate", || {
        env.audit_events().iter().any(|e| {
            e["event"] == "session.started"
                && e["user"] == "cora"
                && e["key_id"] == "cora@laptop"
                && e["serial"] == 42
                && e["ca"] == "corp"
                && e["fingerprint"] == fingerprint(&key).as_str()
        })
    });
    t.close();
    // `audit verify` still passes over the new event kind.
    let out = env.admin("audrey", &["audit", "verify"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
}

#[test]
fn certificates_that_do_not_fit_are_refused_with_the_reason() {
    let (g, ca, rogue) = start();
    let env = &g.env;
    let key = env.key("cora");
    let fp = fingerprint(&key);
    let cases: &[(&str, &Path, &[&str], &str)] = &[
        (
            "too long",
            &ca,
            &["-n", "cora", "-V", "-1m:+2h"],
            "(CA corp allows at most 1h)",
        ),
        (
            "wrong principal",
            &ca,
            &["-n", "bob", "-V", "-1m:+10m"],
            "principal mismatch: certificate is for [\"bob\"], not \"cora\"",
        ),
        (
            "no principals",
            &ca,
            &["-V", "-1m:+10m"],
            "certificate names no principal",
        ),
        (
            "critical option",
            &ca,
            &[
                "-n",
                "cora",
                "-V",
                "-1m:+10m",
                "-O",
                "force-command=/bin/true",
            ],
            "critical option \"force-command\" is not supported",
        ),
        (
            "verify-required",
            &ca,
            &["-n", "cora", "-V", "-1m:+10m", "-O", "verify-required"],
            "critical option \"verify-required\" is not supported",
        ),
        (
            "source address",
            &ca,
            &[
                "-n",
                "cora",
                "-V",
                "-1m:+10m",
                "-O",
                "source-address=10.9.9.0/24",
            ],
            "source-address \"10.9.9.0/24\" does not match 127.0.0.1",
        ),
        (
            "revoked serial",
            &ca,
            &["-n", "cora", "-V", "-1m:+10m", "-z", "17"],
            "revoked: serial 17 is revoked (CA corp)",
        ),
        (
            "untrusted CA",
            &rogue,
            &["-n", "cora", "-V", "-1m:+10m"],
            "certificate signed by an untrusted CA",
        ),
    ];
    for (what, signer, args, reason) in cases {
        sign(signer, &key, "cora@laptop", args);
        let out = env.gw_ssh("cora", &["whoami"]);
        assert_eq!(out.code, 255, "{what}: {}", out.stderr);
        assert!(
            out.stderr.contains("Permission denied"),
            "{what}: {}",
            out.stderr
        );
        assert!(
            !out.stderr.contains("corp"),
            "{what}: the client learns nothing: {}",
            out.stderr
        );
        env.eventually(&format!("the gateway's line for {what}"), || {
            refused_line(env, &fp, reason)
        });
    }
    // A host certificate: the stock client will not present one ("not a user certificate"),
    // so a russh client does.
    sign(
        &ca,
        &key,
        "cora@laptop",
        &["-h", "-n", "cora", "-V", "-1m:+10m"],
    );
    assert!(!login_with_certificate(&env.gw_addr, "cora", &key));
    env.eventually("the host certificate's line", || {
        refused_line(env, &fp, "a host certificate, not a user certificate")
    });
    // The key id revoked; at the approver too, which logs the same way.
    sign(&ca, &key, "revoked-id", &["-n", "cora", "-V", "-1m:+10m"]);
    let out = env.gw_ssh("cora", &["whoami"]);
    assert_eq!(out.code, 255, "{}", out.stderr);
    env.eventually("the revoked key id's line", || {
        refused_line(
            env,
            &fp,
            "revoked: key id \"revoked-id\" is revoked (CA corp)",
        )
    });
    let out = approver_ssh(env, "cora", &["whoami"]);
    assert_eq!(out.code, 255, "{}", out.stderr);
    env.eventually("the approver's line", || {
        env.log().lines().any(|l| {
            l.contains("login refused for \"cora\"")
                && l.contains("key id \"revoked-id\" is revoked")
        })
    });
    assert!(
        !env.gw_log().contains("authenticated cora"),
        "{}",
        env.gw_log()
    );
}

/// Outside its validity window a certificate is refused with a line that says so, at the
/// gateway and at the approver. Published russh turned such certificates away before
/// portcullis saw them, and the line named only the plain key ssh tried next ("unknown key"):
/// our russh patch leaves the window to `certificate::check`.
#[test]
fn expired_and_not_yet_valid_certificates_are_refused_with_their_reason() {
    let (g, ca, _) = start();
    let env = &g.env;
    let key = env.key("cora");
    let fp = fingerprint(&key);
    for (what, validity, reason) in [
        ("expired", "-2h:-1h", "expired certificate (valid before "),
        (
            "not yet valid",
            "+1h:+2h",
            "certificate not yet valid (valid after ",
        ),
    ] {
        sign(&ca, &key, "cora@laptop", &["-n", "cora", "-V", validity]);
        let out = env.gw_ssh("cora", &["whoami"]);
        assert_eq!(out.code, 255, "{what}: {}", out.stderr);
        assert!(out.stderr.contains("Permission denied"), "{}", out.stderr);
        assert!(!out.stderr.contains("certificate"), "{}", out.stderr);
        env.eventually(&format!("the {what} certificate's line"), || {
            refused_line(env, &fp, reason)
        });
        let out = approver_ssh(env, "cora", &["whoami"]);
        assert_eq!(out.code, 255, "{what}: {}", out.stderr);
        env.eventually(&format!("the approver's line for the {what} one"), || {
            env.log().lines().any(|l| {
                l.contains("login refused for \"cora\"")
                    && l.contains(&format!("certificate for ssh-ed25519 {fp}"))
                    && l.contains(reason)
            })
        });
    }
    assert!(!env.gw_log().contains("authenticated cora"));
    assert!(!env.log().contains("authenticated as User(\"cora\")"));
}

#[test]
fn a_certificate_without_port_forwarding_cannot_forward() {
    let (g, ca, _) = start();
    let env = &g.env;
    let key = env.key("cora");
    sign(
        &ca,
        &key,
        "cora@laptop",
        &["-n", "cora", "-V", "-1m:+30m", "-O", "no-port-forwarding"],
    );
    let out = env.gw_ssh("cora", &["request", "echo", "--for", "10m"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut c = env.gw_command("cora", &["-W", &format!("127.0.0.1:{}", g.echo.port)]);
    let out = run(&mut c);
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("administratively prohibited") || out.stderr.contains("open failed"),
        "{}",
        out.stderr
    );
    env.eventually("the refusal's line", || {
        env.gw_log()
            .contains("cora: forward refused: the certificate lacks permit-port-forwarding")
    });
}

/// A connection to the approver kept open (a ControlMaster, say) does not outlive its
/// certificate: revoked by serial and reloaded, the next command on it is refused.
#[test]
fn a_certificate_revoked_on_reload_ends_what_its_open_approver_connection_may_do() {
    let (g, ca, _) = start();
    let env = &g.env;
    let key = env.key("cora");
    sign(
        &ca,
        &key,
        "cora@laptop",
        &["-n", "cora", "-V", "-5m:+30m", "-z", "99"],
    );
    let secret = Arc::new(russh::keys::load_secret_key(&key, None).unwrap());
    let text = std::fs::read_to_string(format!("{}-cert.pub", key.display())).unwrap();
    let cert = russh::keys::Certificate::from_openssh(text.trim()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut h = rt.block_on(russh_client::connect(&env.addr));
    assert!(rt
        .block_on(h.authenticate_openssh_cert("cora", secret, cert))
        .unwrap()
        .success());
    let whoami = |h: &mut russh::client::Handle<AnyHostKey>| whoami(&rt, h);
    assert_eq!(whoami(&mut h).0, Some(0));

    let cfg = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace("revoked_serials = [17]", "revoked_serials = [17, 99]");
    std::fs::write(&env.config, cfg).unwrap();
    env.admin("ada", &["reload"]).ok();
    let (status, err) = whoami(&mut h);
    assert_ne!(status, Some(0), "{err}");
    assert!(err.contains("no longer accepted"), "{err}");
}

/// A key in a CA's `revoked_keys` is compromised whoever lists it: alice's own key, listed
/// under her `keys`, is refused once corp revokes it, at both daemons, and her connection to
/// the approver kept open across the reload runs no further command. `check` warns that her
/// entry still lists it.
#[test]
fn a_plain_key_in_revoked_keys_is_refused_and_ends_its_open_approver_connection() {
    let (g, _, _) = start();
    let env = &g.env;
    let key = env.key("alice");
    let secret = russh::keys::load_secret_key(&key, None).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut h = rt.block_on(russh_client::connect(&env.addr));
    let with = russh::keys::PrivateKeyWithHashAlg::new(Arc::new(secret), None);
    assert!(rt
        .block_on(h.authenticate_publickey("alice", with))
        .unwrap()
        .success());
    let whoami = |h: &mut russh::client::Handle<AnyHostKey>| whoami(&rt, h);
    assert_eq!(whoami(&mut h).0, Some(0));

    let fp = fingerprint(&key);
    let cfg = std::fs::read_to_string(&env.config).unwrap().replace(
        "revoked_serials = [17]",
        &format!("revoked_serials = [17]\nrevoked_keys = [\"{fp}\"]"),
    );
    std::fs::write(&env.config, cfg).unwrap();
    let check = run(Command::new(BIN)
        .arg("check")
        .arg("--config")
        .arg(&env.config));
    assert_eq!(check.code, 0, "a warning, not a problem: {}", check.stderr);
    assert!(
        check.stderr.contains(&format!(
            "warning: user alice lists key {fp}, which user CA corp revokes (revoked_keys)"
        )),
        "{}",
        check.stderr
    );
    env.admin("ada", &["reload"]).ok();

    let (status, err) = whoami(&mut h);
    assert_ne!(status, Some(0), "{err}");
    assert!(err.contains("is no longer alice's, or is revoked"), "{err}");
    assert_ne!(approver_ssh(env, "alice", &["whoami"]).code, 0);
    env.eventually("the catalog at the gateway", || {
        env.gw_ssh("alice", &["whoami"]).code != 0
    });
    env.eventually("the refusal in the gateway log", || {
        env.gw_log().lines().any(|l| {
            l.contains("login refused for \"alice\"")
                && l.contains(&fp)
                && l.contains("revoked key")
        })
    });
    // Others are not affected.
    assert_eq!(approver_ssh(env, "dave", &["whoami"]).code, 0);
}

/// A gateway's key revoked on reload (a stolen gateway key) ends what the gateway's open
/// connections may do at the approver: its watch stream stops at the reload, and it cannot
/// log in again. Before, the stream went on sending every change to the revoked key.
#[test]
fn a_gateway_key_revoked_on_reload_ends_its_watch_stream() {
    let (g, _, _) = start();
    let env = &g.env;
    // The gateway follows the stream: alice's grant reaches it.
    let out = env.gw_ssh("alice", &["request", "echo", "--for", "10m"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let gw_key = env.path().join("gateway/client_key");
    let fp = fingerprint(&gw_key);
    let cfg = std::fs::read_to_string(&env.config).unwrap().replace(
        "revoked_serials = [17]",
        &format!("revoked_serials = [17]\nrevoked_keys = [\"{fp}\"]"),
    );
    std::fs::write(&env.config, cfg).unwrap();
    env.admin("ada", &["reload"]).ok();
    env.eventually("the approver ending the stream", || {
        env.log().lines().any(|l| {
            l.contains("ending gateway gw-1's watch stream")
                && l.contains(&fp)
                && l.contains("no longer its, or is revoked")
        })
    });
    env.eventually("the gateway's new login refused", || {
        env.log().lines().any(|l| {
            l.contains("login refused for \"gw-1\"") && l.contains(&fp) && l.contains("revoked")
        })
    });
}

/// Stock ssh offers the plain key before its certificate. With a CA trusted, the plain key
/// nobody holds is refused at its offer (our russh patch 3 tells a certificate's offer from a
/// plain key's), so ssh never signs with it; before, every offer was accepted and the plain
/// key was refused only after its signature. The certificate logs in either way.
#[test]
fn a_plain_key_nobody_holds_is_refused_at_its_offer_though_a_ca_is_trusted() {
    let (g, ca, _) = start();
    let env = &g.env;
    let key = env.path().join("stranger_key");
    keygen(&key);
    sign(&ca, &key, "cora@laptop", &["-n", "cora", "-V", "-5m:+30m"]);
    let out = crate::support::ssh_with_keys(&env.gw_port(), "cora", &[&key], &[], &["whoami"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let accepted: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("Server accepts key:"))
        .collect();
    assert!(
        accepted.iter().any(|l| l.contains("ED25519-CERT")),
        "{}",
        out.stderr
    );
    assert!(
        accepted.iter().all(|l| l.contains("-CERT")),
        "the plain key's offer was accepted: {}",
        out.stderr
    );
}
