//! A gateway's session reports as the approver takes them, driven by a test client that
//! authenticates as the gateway: a recording is kept only whole and as announced, and what a
//! refused one wrote does not stay behind.

use crate::support::Env;
use portcullis_core::codec;
use portcullis_core::model::SessionReport;

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
    let (code, _, err) = report_as(
        env,
        "gw-1",
        &env.path().join("gateway/client_key"),
        1,
        input,
    );
    (code, err)
}

/// Send `report --seq SEQ` with `input` as gateway `name` (its key at `key`); its exit
/// status, standard output and standard error.
fn report_as(
    env: &Env,
    name: &str,
    key: &std::path::Path,
    seq: u64,
    input: Vec<u8>,
) -> (Option<u32>, String, String) {
    let r = env.as_gateway(
        name,
        key,
        &format!("report --seq {seq} --instance t"),
        &input,
    );
    (r.code, r.stdout, r.stderr)
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

fn framed(r: &SessionReport) -> Vec<u8> {
    codec::frame(&codec::encode(r))
}

fn started(session: &str, user: &str) -> SessionReport {
    SessionReport::Started {
        session: session.into(),
        user: user.into(),
        target: "echo".into(),
        grant: 1,
        client: "127.0.0.1:1".into(),
        fingerprint: "SHA256:x".into(),
        channel: "direct-tcpip".into(),
        at: portcullis_core::Timestamp(1),
    }
}

/// One gateway's key cannot start, record or overwrite another gateway's session: such a
/// report is acknowledged (the sender's spool moves on), audited, and changes nothing; and a
/// recording once kept is never replaced, not even by its own gateway.
#[test]
fn a_gateway_cannot_overwrite_another_gateways_session_or_recording() {
    let dir = tempfile::tempdir().unwrap();
    let gw2_key = crate::support::keygen(dir.path(), "gw2");
    let env = Env::start_with(
        "24h",
        &format!("\n[[gateways]]\nname = \"gw-2\"\nkey = \"{gw2_key}\"\n"),
    );
    let gw1 = env.path().join("gateway/client_key");
    let gw2 = dir.path().join("gw2_key");
    let session = |env: &Env| {
        env.admin("ada", &["--json", "sessions"]).json()["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == "gw-1-t-1")
            .cloned()
            .unwrap()
    };

    let (code, _, err) = report_as(&env, "gw-1", &gw1, 1, framed(&started("gw-1-t-1", "alice")));
    assert_eq!(code, Some(0), "{err}");
    // gw-2 restarts gw-1's session as bob's.
    let (code, out, err) = report_as(&env, "gw-2", &gw2, 1, framed(&started("gw-1-t-1", "bob")));
    assert_eq!(
        code,
        Some(0),
        "acknowledged, so gw-2's spool moves on: {err}"
    );
    assert!(out.contains("refused"), "{out}");
    let s = session(&env);
    assert_eq!(
        (s["gateway"].as_str(), s["user"].as_str()),
        (Some("gw-1"), Some("alice"))
    );

    // gw-1's recording is kept; gw-2's for the same session is not, and leaves nothing.
    let (code, _, err) = report_as(
        &env,
        "gw-1",
        &gw1,
        2,
        [recorded(3), b"abc".to_vec()].concat(),
    );
    assert_eq!(code, Some(0), "{err}");
    let xyz = SessionReport::Recorded {
        session: "gw-1-t-1".into(),
        // SHA-256 of `xyz`.
        sha256: "3608bca1e44ea6c4d268eb6db02260269892c0b42b86bbf1e77a6fa16c3c9282".into(),
        size: 3,
        format: "data".into(),
    };
    let (code, out, err) = report_as(
        &env,
        "gw-2",
        &gw2,
        2,
        [framed(&xyz), b"xyz".to_vec()].concat(),
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("refused"), "{out}");
    // The same recording again (a retry after a lost acknowledgement): taken, nothing changes.
    let (code, out, err) = report_as(
        &env,
        "gw-1",
        &gw1,
        3,
        [recorded(3), b"abc".to_vec()].concat(),
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(!out.contains("refused"), "{out}");
    // Not even gw-1 replaces a recording once kept.
    let (code, out, err) = report_as(
        &env,
        "gw-1",
        &gw1,
        4,
        [framed(&xyz), b"xyz".to_vec()].concat(),
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("never replaced"), "{out}");
    assert_eq!(stored(&env), vec!["gw-1-t-1.data".to_string()]);
    assert_eq!(
        std::fs::read(env.path().join("approver/recordings/gw-1-t-1.data")).unwrap(),
        b"abc"
    );
    assert!(env.has_event("command.refused", "actor", serde_json::json!("gw-2")));
}
