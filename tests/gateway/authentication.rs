//! Authentication at the gateway: an accepted offer is not a login, one user's key never logs
//! in as another, state resets when the user name changes mid-auth, attempts are capped, and
//! an unknown user is refused no faster than a known one.

use std::sync::Arc;
use std::time::Instant;

use russh::keys::{load_secret_key, PrivateKeyWithHashAlg};

use super::common::{self, grant};
use crate::support::russh_client;
use crate::support::{keygen, median, Env, Out};

/// Stock ssh to the gateway with exactly these identity files and `-v`.
fn ssh_with_keys(env: &Env, login: &str, keys: &[std::path::PathBuf], args: &[&str]) -> Out {
    let keys: Vec<&std::path::Path> = keys.iter().map(|k| k.as_path()).collect();
    crate::support::ssh_with_keys(&env.gw_port(), login, &keys, &[], args)
}

#[test]
fn an_accepted_offer_without_a_signature_is_not_a_login() {
    let g = common::start("");
    let env = &g.env;
    // Only the public half: ssh offers it, the gateway answers that it would accept it, and
    // ssh has nothing to sign with.
    // (ssh reads the offer from `FILE.pub`, and finds no private key in `FILE`.)
    let logins_before = env.gw_log().matches("authenticated alice").count();
    let pub_only = env.path().join("alice_offer_only");
    let public = env.key("alice").with_extension("pub");
    std::fs::copy(&public, &pub_only).unwrap();
    std::fs::copy(&public, pub_only.with_extension("pub")).unwrap();
    let out = ssh_with_keys(env, "alice", &[pub_only], &["whoami"]);
    assert_eq!(out.code, 255, "{}", out.stderr);
    assert!(
        out.stderr.contains("Server accepts key"),
        "the offer was not even accepted: {}",
        out.stderr
    );
    assert!(out.stderr.contains("Permission denied"), "{}", out.stderr);
    // (The only login is the readiness probe's, made before this one.)
    assert_eq!(
        env.gw_log().matches("authenticated alice").count(),
        logins_before,
        "{}",
        out.stderr
    );
}

#[test]
fn alices_key_never_logs_in_as_bob() {
    let g = common::start("");
    let env = &g.env;
    for login in ["bob", "bob:echo", "carol"] {
        let out = ssh_with_keys(env, login, &[env.key("alice")], &["whoami"]);
        assert_eq!(out.code, 255, "{login}: {}", out.stderr);
        assert!(out.stderr.contains("Permission denied"), "{}", out.stderr);
    }
    assert!(
        !env.gw_log().contains("authenticated bob"),
        "{}",
        env.gw_log()
    );
}

#[test]
fn auth_attempts_are_capped() {
    let g = common::start("");
    let env = &g.env;
    let strangers: Vec<_> = (0..10)
        .map(|i| {
            keygen(env.path(), &format!("stranger{i}"));
            env.path().join(format!("stranger{i}_key"))
        })
        .collect();
    let out = ssh_with_keys(env, "alice", &strangers, &["whoami"]);
    assert_eq!(out.code, 255, "{}", out.stderr);
    let offered = out.stderr.matches("Offering public key").count();
    eprintln!("{offered} keys offered before the gateway hung up");
    // OpenSSH's own count: max 6 (MaxAuthTries), then the server hangs up on the client.
    assert!(
        offered <= 6,
        "{offered} keys were tried on one connection: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("Too many authentication")
            || out.stderr.contains("Received disconnect"),
        "{}",
        out.stderr
    );
}

#[test]
fn auth_state_resets_when_the_user_name_changes() {
    let g = common::start("");
    let env = &g.env;
    grant(env, "alice", "echo", "1h");
    let alice_key = Arc::new(load_secret_key(env.key("alice"), None).unwrap());
    let addr = env.gw_addr.clone();
    let echo_port = g.echo.port;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut h = russh_client::connect(&addr).await;
        let with = |k: &Arc<russh::keys::PrivateKey>| PrivateKeyWithHashAlg::new(k.clone(), None);
        // bob with alice's key: refused; then bob:echo; then alice, who succeeds as herself.
        for login in ["bob", "bob:echo"] {
            let r = h
                .authenticate_publickey(login, with(&alice_key))
                .await
                .unwrap();
            assert!(!r.success(), "{login} logged in with alice's key");
        }
        let r = h
            .authenticate_publickey("alice", with(&alice_key))
            .await
            .unwrap();
        assert!(r.success());
        // The connection is alice's: her grant lets the forward through.
        let ch = h
            .channel_open_direct_tcpip("echo", echo_port.into(), "127.0.0.1", 1)
            .await
            .unwrap();
        let mut stream = ch.into_stream();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream.write_all(b"as alice").await.unwrap();
        let mut buf = [0u8; 8];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"as alice");
    });
    env.eventually("the session under alice's name", || {
        env.audit_events()
            .iter()
            .any(|e| e["event"] == "session.started" && e["user"] == "alice")
    });
    assert!(!env
        .audit_events()
        .iter()
        .any(|e| e["event"] == "session.started" && e["user"] == "bob"));
    assert!(!env.gw_log().contains("authenticated bob"));
}

#[test]
fn an_unknown_user_is_refused_no_faster_than_a_known_one() {
    let g = common::start("");
    let env = &g.env;
    keygen(env.path(), "mallory");
    let mallory = Arc::new(load_secret_key(env.path().join("mallory_key"), None).unwrap());
    let addr = env.gw_addr.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Timed in process, one signed attempt at a time on an established connection: a known
    // user with a key that is not theirs, and a user that does not exist, alternately.
    let (known, unknown) = rt.block_on(async move {
        let (mut known, mut unknown) = (Vec::new(), Vec::new());
        for _ in 0..2 {
            let mut h = russh_client::connect(&addr).await;
            let key = || PrivateKeyWithHashAlg::new(mallory.clone(), None);
            // The first attempt of a connection is answered without the delay (OpenSSH's
            // "none" probe): spend it.
            let r = h.authenticate_publickey("alice", key()).await.unwrap();
            assert!(!r.success());
            for _ in 0..2 {
                for (login, times) in [("alice", &mut known), ("nosuchuser", &mut unknown)] {
                    let start = Instant::now();
                    let r = h.authenticate_publickey(login, key()).await.unwrap();
                    assert!(!r.success());
                    times.push(start.elapsed().as_secs_f64());
                }
            }
        }
        (median(known), median(unknown))
    });
    eprintln!(
        "refusal: known user, wrong key {:.1} ms; unknown user {:.1} ms",
        known * 1e3,
        unknown * 1e3
    );
    // Every rejection waits out the same floor from the moment the attempt arrives, so
    // neither answer comes back early: what differs is scheduling noise, not a lookup that
    // stopped short.
    let floor = portcullis_ssh::server::AUTH_REFUSAL_FLOOR.as_secs_f64();
    assert!(known >= floor && unknown >= floor, "{known} {unknown}");
    // Generous for a loaded machine, and still far below the 300 ms an early answer saved
    // when the floor was that long.
    assert!((known - unknown).abs() < 0.02, "{known} {unknown}");
}
