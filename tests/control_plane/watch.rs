//! The gateway stream: a test client that authenticates as a gateway, checks every signature
//! against the pinned key, and resumes after a break with no change lost or repeated.

use portcullis_core::codec::FrameReader;
use portcullis_core::stream::{Follower, Verified};
use portcullis_ssh::{ClientConnection, ConnectOptions, HostKeyPolicy, Identity};
use russh::ChannelMsg;

use crate::support::{Env, SOON};

fn options(env: &Env, user: &str, key: std::path::PathBuf) -> ConnectOptions {
    ConnectOptions {
        addr: env.addr.clone(),
        user: user.into(),
        identity: Identity::KeyFile(key),
        host_key: HostKeyPolicy::Pinned(
            portcullis_core::keys::parse_public_key(&env.host_key).unwrap(),
        ),
        connect_timeout: SOON,
    }
}

fn signing_key(env: &Env) -> ed25519_dalek::VerifyingKey {
    let keys = crate::support::run(
        std::process::Command::new(crate::support::BIN)
            .args(["keys", "--config"])
            .arg(&env.config),
    );
    let line = keys
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("grant-signing "))
        .unwrap()
        .to_string();
    portcullis_core::keys::parse_signing_key(&line).unwrap()
}

/// Read verified changes until `want` grants have been seen (heartbeats skipped).
async fn follow(env: &Env, follower: &mut Follower, want_grants: usize) -> Vec<Verified> {
    let conn =
        ClientConnection::connect(&options(env, "gw-1", env.path().join("gateway/client_key")))
            .await
            .unwrap();
    let mut channel = conn
        .exec(&format!("watch --since {}", follower.last_rev()))
        .await
        .unwrap();
    let mut reader = FrameReader::new();
    let mut got = Vec::new();
    let mut grants = 0;
    while grants < want_grants {
        let msg = tokio::time::timeout(SOON, channel.wait())
            .await
            .expect("stream went quiet")
            .expect("stream closed");
        if let ChannelMsg::Data { data } = msg {
            reader.push(&data);
            while let Some(record) = reader.next_frame().unwrap() {
                let v = follower.accept(&record).unwrap();
                if matches!(v, Verified::Grant { .. }) {
                    grants += 1;
                }
                if !matches!(v, Verified::Heartbeat { .. }) {
                    got.push(v);
                }
            }
        }
    }
    conn.close().await;
    got
}

#[test]
fn stream_is_signed_ordered_and_resumable() {
    let env = Env::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let key = signing_key(&env);

    for _ in 0..2 {
        env.ssh("alice", &["request", "pg-staging", "--for", "10m"])
            .ok();
    }
    let mut follower = Follower::new(key, 0);
    let first = rt.block_on(follow(&env, &mut follower, 2));
    assert!(
        matches!(&first[0], Verified::Catalog { catalog, .. } if catalog.users.contains_key("alice")),
        "the catalog comes first"
    );
    let seen = follower.last_rev();

    // While disconnected: a new grant and a revocation.
    env.ssh("alice", &["request", "pg-staging", "--for", "10m"])
        .ok();
    env.ssh("ada", &["revoke", "1"]).ok();
    let more = rt.block_on(follow(&env, &mut follower, 2));
    let revs: Vec<u64> = more.iter().map(Verified::rev).collect();
    assert_eq!(
        revs,
        vec![seen + 1, seen + 2],
        "resumed exactly after {seen}"
    );
    match &more[1] {
        Verified::Grant { grant, .. } => {
            assert_eq!(grant.id, 1);
            assert!(grant.revoked.is_some(), "the revocation is streamed");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_foreign_signing_key_rejects_the_stream() {
    let env = Env::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    env.ssh("alice", &["request", "pg-staging", "--for", "10m"])
        .ok();
    let wrong = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
    let conn = rt
        .block_on(ClientConnection::connect(&options(
            &env,
            "gw-1",
            env.path().join("gateway/client_key"),
        )))
        .unwrap();
    let mut channel = rt.block_on(conn.exec("watch --since 0")).unwrap();
    let mut reader = FrameReader::new();
    let mut follower = Follower::new(wrong, 0);
    let record = rt.block_on(async {
        loop {
            if let Some(ChannelMsg::Data { data }) =
                tokio::time::timeout(SOON, channel.wait()).await.unwrap()
            {
                reader.push(&data);
                if let Some(r) = reader.next_frame().unwrap() {
                    return r;
                }
            }
        }
    });
    assert!(follower.accept(&record).is_err());
}

#[test]
fn users_cannot_watch_and_gateways_cannot_command() {
    let env = Env::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let conn = rt
        .block_on(ClientConnection::connect(&options(
            &env,
            "gw-1",
            env.path().join("gateway/client_key"),
        )))
        .unwrap();
    let mut out = Vec::new();
    let mut err = Vec::new();
    let r = rt.block_on(conn.run("status", &mut out, &mut err)).unwrap();
    assert_eq!(r.exit_status, Some(1));
    assert!(String::from_utf8_lossy(&err).contains("may only `watch`"));
    // A revision from the future is refused with a reason.
    let mut out = Vec::new();
    let mut err = Vec::new();
    let r = rt
        .block_on(conn.run("watch --since 999999", &mut out, &mut err))
        .unwrap();
    assert_eq!(r.exit_status, Some(1));
    assert!(String::from_utf8_lossy(&err).contains("ahead of this approver"));
}
