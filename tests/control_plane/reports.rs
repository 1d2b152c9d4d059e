//! A gateway's session reports as the approver takes them, driven by a test client that
//! authenticates as the gateway: a recording is kept only whole and as announced, and what a
//! refused one wrote does not stay behind.

use portcullis_core::codec;
use portcullis_core::model::SessionReport;
use portcullis_ssh::{ConnectOptions, Connection, HostKeyPolicy, Identity};

use crate::support::{Env, SOON};

/// SHA-256 of `abc`.
const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

fn recorded(size: u64) -> Vec<u8> {
    codec::frame(&codec::encode(&SessionReport::Recorded {
        session: "gw-1-t-1".into(),
        sha256: ABC.into(),
        size,
        format: "data".into(),
    }))
}

/// Send `report --seq 1` with `input` as gw-1; its exit status and standard error.
fn report(env: &Env, input: Vec<u8>) -> (Option<u32>, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let conn = Connection::connect(&ConnectOptions {
            addr: env.addr.clone(),
            user: "gw-1".into(),
            identity: Identity::KeyFile(env.path().join("gateway/client_key")),
            host_key: HostKeyPolicy::Pinned(
                portcullis_core::keys::parse_public_key(&env.host_key).unwrap(),
            ),
            connect_timeout: SOON,
        })
        .await
        .unwrap();
        let (status, _, err) = conn
            .run_with_input("report --seq 1 --instance t", input.as_slice())
            .await
            .unwrap();
        (
            status.exit_status,
            String::from_utf8_lossy(&err).into_owned(),
        )
    })
}

/// The names in the approver's recordings folder.
fn stored(env: &Env) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(env.path().join("approver/recordings"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_recording_is_kept_only_whole_and_as_announced() {
    let env = Env::start();

    // More than announced: refused as soon as it runs past, nothing kept.
    let (code, err) = report(&env, [recorded(3), b"abcdef".to_vec()].concat());
    assert_ne!(code, Some(0));
    assert!(err.contains("runs past the 3 bytes announced"), "{err}");
    assert!(stored(&env).is_empty(), "{:?}", stored(&env));

    // The announced size, other bytes: refused, nothing kept.
    let (code, err) = report(&env, [recorded(3), b"abd".to_vec()].concat());
    assert_ne!(code, Some(0));
    assert!(err.contains("arrived damaged"), "{err}");
    assert!(stored(&env).is_empty(), "{:?}", stored(&env));

    // Whole and as announced: kept, and the report recorded.
    let (code, err) = report(&env, [recorded(3), b"abc".to_vec()].concat());
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(stored(&env), vec!["gw-1-t-1.data".to_string()]);
    assert_eq!(
        std::fs::read(env.path().join("approver/recordings/gw-1-t-1.data")).unwrap(),
        b"abc"
    );
}
