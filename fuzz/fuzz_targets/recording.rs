//! Recordings as the audit side reads them: `raw_to_cast` renders the raw stream of a channel
//! without a pty (`portcullis-data v1`, then `[stream u8][ms u32][len u32][bytes]` records) as
//! asciicast v2, and `verify_recording` checks any recording's bytes against the SHA-256 its
//! end event carries. The first input byte says whether to prepend the magic line (so the
//! fuzzer spends its time on the records, and still sees inputs without it).

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_audit::{raw_to_cast, verify_recording, RecordingBroken};
use sha2::{Digest, Sha256};

const MAGIC: &[u8] = b"portcullis-data v1\n";

/// An independent reading of the raw format: the records, or `None` when the stream is cut.
fn reference(raw: &[u8]) -> Option<Vec<(u8, u32, &[u8])>> {
    let mut rest = raw.strip_prefix(MAGIC)?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        if rest.len() < 9 {
            return None;
        }
        let ms = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]);
        let len = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]) as usize;
        if rest.len() - 9 < len {
            return None;
        }
        out.push((rest[0], ms, &rest[9..9 + len]));
        rest = &rest[9 + len..];
    }
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    let mut raw = Vec::with_capacity(body.len() + MAGIC.len());
    if flags & 1 == 0 {
        raw.extend_from_slice(MAGIC);
    }
    raw.extend_from_slice(body);

    let title = "gw-1-fuzz";
    match (raw_to_cast(&raw, title), reference(&raw)) {
        (Ok(cast), Some(records)) => {
            let mut lines = cast.lines();
            let header: serde_json::Value = match lines.next().map(serde_json::from_str) {
                Some(Ok(h)) => h,
                other => panic!("the cast header is not JSON: {other:?}"),
            };
            assert_eq!(header["version"], 2);
            assert_eq!(header["title"], title);
            let events: Vec<&str> = lines.collect();
            assert_eq!(events.len(), records.len(), "one event per record");
            for (line, (stream, ms, bytes)) in events.iter().zip(records) {
                let ev: serde_json::Value = match serde_json::from_str(line) {
                    Ok(v) => v,
                    Err(e) => panic!("event line {line:?} is not JSON: {e}"),
                };
                let t = ev[0].as_f64().unwrap_or(f64::NAN);
                assert!(
                    (t * 1000.0 - f64::from(ms)).abs() < 1.0,
                    "time {t} for {ms} ms"
                );
                assert_eq!(ev[1], if stream == 0 { "i" } else { "o" });
                assert_eq!(ev[2], String::from_utf8_lossy(bytes).as_ref());
            }
        }
        (Err(e), None) => assert!(!e.is_empty()),
        (got, want) => panic!("raw_to_cast and the format disagree: {got:?} vs {want:?}"),
    }

    // Any recording's bytes (a cast or a raw stream) against the hash an end event carries.
    let sha = hex::encode(Sha256::digest(&raw));
    assert_eq!(verify_recording("s", &sha, Some(&raw)), Ok(()));
    let mut other = sha.clone().into_bytes();
    other[0] = if other[0] == b'0' { b'1' } else { b'0' };
    let other = String::from_utf8_lossy(&other).into_owned();
    assert!(matches!(
        verify_recording("s", &other, Some(&raw)),
        Err(RecordingBroken::Altered { .. })
    ));
    if let Some(cut) = raw.len().checked_sub(1) {
        assert!(verify_recording("s", &sha, Some(&raw[..cut])).is_err());
    }
});
