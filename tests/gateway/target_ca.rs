//! Targets that trust the gateway's CA instead of a standing key (#13 item 4): a real sshd
//! with `TrustedUserCAKeys` and no `authorized_keys` at all takes a recorded session whose
//! certificate the gateway made for it: principal = the target's login, key id = the
//! portcullis session, `valid_before` = the grant's end, `source-address` = the gateway.

use std::process::Command;

use super::common::{self, grant};
use crate::support::run;
use crate::support::targets::Sshd;

#[test]
fn a_recorded_session_logs_into_a_target_with_a_certificate_made_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut sshd = None;
    let g = common::start_with(|env| {
        // `portcullis keys` made it with the gateway's other keys: the `target-ca` line.
        let ca = std::fs::read_to_string(env.path().join("gateway/target_ca.pub")).unwrap();
        let s = Sshd::start_trusting_ca(dir.path(), ca.trim());
        let t = format!(
            "\n[[targets]]\nname = \"web-1\"\nkind = \"ssh\"\naddress = \"127.0.0.1:{}\"\nlogin = \"{}\"\nhost_key = \"{}\"\nlabels = {{ env = \"staging\" }}\nauth = \"certificate\"\n",
            s.port, s.login, s.host_key
        );
        sshd = Some(s);
        t
    });
    let sshd = sshd.unwrap();
    let env = &g.env;
    // The target-ca line is what `portcullis keys` prints.
    let keys = run(Command::new(crate::support::BIN)
        .args(["keys", "--config"])
        .arg(&env.config));
    keys.ok();
    let ca_line = std::fs::read_to_string(env.path().join("gateway/target_ca.pub")).unwrap();
    assert!(
        keys.stdout
            .contains(&format!("target-ca {}", ca_line.trim())),
        "{}",
        keys.stdout
    );

    grant(env, "alice", "web-1", "30m");
    let grants = env.ssh("alice", &["grants", "--active", "--json"]);
    grants.ok();
    let expires_ms = grants.json()["grants"]
        .as_array()
        .and_then(|a| a.iter().find(|g| g["target"] == "web-1"))
        .and_then(|g| g["expires_at_ms"].as_u64())
        .unwrap_or_else(|| panic!("no grant in {}", grants.stdout));

    // The session runs on the target, which shows the certificate it was given.
    let out = run(Command::new("ssh")
        .arg("-F")
        .arg(env.ssh_config("alice"))
        .args(["-n", "-p", &env.gw_port()])
        .arg("alice:web-1@127.0.0.1")
        .arg("echo on-target; cat \"$SSH_USER_AUTH\""));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.starts_with("on-target\n"), "{}", out.stdout);
    let cert_line = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("publickey "))
        .unwrap_or_else(|| panic!("no certificate in {}", out.stdout));
    let cert = russh::keys::Certificate::from_openssh(cert_line.trim()).unwrap();

    let session = env
        .audit_events()
        .into_iter()
        .find(|e| e["event"] == "session.started" && e["target"] == "web-1")
        .and_then(|e| e["session"].as_str().map(str::to_string))
        .unwrap();
    assert_eq!(cert.key_id(), session);
    assert_eq!(cert.valid_principals(), std::slice::from_ref(&sshd.login));
    // The grant's end, to the second (rounded up).
    assert_eq!(cert.valid_before(), expires_ms.div_ceil(1000));
    assert_eq!(
        cert.critical_options()
            .get("source-address")
            .map(String::as_str),
        Some("127.0.0.1/32")
    );
    assert_eq!(
        cert.signature_key(),
        russh::keys::PublicKey::from_openssh(ca_line.trim())
            .unwrap()
            .key_data()
    );
    // The target's own log names the portcullis session.
    let log = Sshd::log(dir.path());
    assert!(
        log.lines().any(|l| l.contains("Accepted publickey")
            && l.contains(&format!("ID {session} "))
            && l.contains("CA ED25519")),
        "{log}"
    );

    // The same target without a certificate (the gateway's standing key) is refused: nothing
    // in an authorized_keys file lets anyone in.
    let client_key = env.path().join("gateway/client_key");
    let out = run(Command::new("ssh")
        .args(["-n", "-F", "/dev/null", "-i"])
        .arg(&client_key)
        .args([
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-p",
            &sshd.port.to_string(),
        ])
        .arg(format!("{}@127.0.0.1", sshd.login))
        .arg("true"));
    assert_eq!(out.code, 255, "{}", out.stderr);
    assert!(out.stderr.contains("Permission denied"), "{}", out.stderr);
}
