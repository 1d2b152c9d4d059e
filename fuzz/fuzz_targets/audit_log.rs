//! The audit log walk: `audit verify` decodes every stored record on its own and walks the
//! chain (sequence, link, hash, signature, acknowledged head), and `recording_hashes` collects
//! the hashes recordings are checked against. The input is a sequence of stored records, each
//! framed with a 4-byte big-endian length; its first byte chooses the acknowledged head.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_audit::{recording_hashes, verify, AuditRecord, Broken, End};
use portcullis_core::audit_event::EventKind;
use portcullis_core::codec::{self, CodecError, FrameReader};
use portcullis_fuzz::verifying_key;

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let head = (head != 0xff).then_some(u64::from(head));
    let mut frames = FrameReader::new();
    frames.push(rest);
    let mut stored: Vec<(u64, Result<AuditRecord, CodecError>)> = Vec::new();
    while let Ok(Some(bytes)) = frames.next_frame() {
        let position = stored.len() as u64 + 1;
        stored.push((position, codec::decode::<AuditRecord>(&bytes)));
    }

    let hashes = recording_hashes(stored.clone());
    let ended_with_hash = stored
        .iter()
        .filter(|(_, r)| {
            matches!(
                r,
                Ok(AuditRecord {
                    event: portcullis_core::audit_event::AuditEvent {
                        kind: EventKind::SessionEnded {
                            recording_sha256: Some(_),
                            ..
                        },
                        ..
                    },
                    ..
                })
            )
        })
        .count();
    assert_eq!(
        hashes.len(),
        ended_with_hash,
        "recording_hashes lost or invented one"
    );

    // The unsigned counter only: signed heads are covered by the unit tests.
    let end = End {
        signed: None,
        counter: head,
    };
    match verify(&verifying_key(), stored.clone(), &end) {
        Ok(v) => {
            // A log that verifies: every record decoded, in place, linked, and signed.
            assert_eq!(v.records, stored.len() as u64);
            let mut prev = portcullis_audit::GENESIS;
            for (position, r) in &stored {
                let Ok(r) = r else {
                    panic!("verify accepted an undecodable record at {position}");
                };
                assert_eq!(r.seq, *position, "verify accepted a record out of place");
                assert_eq!(r.prev, prev, "verify accepted a broken link");
                prev = r.hash;
            }
            assert_eq!(v.head, prev);
            if let Some(h) = head {
                assert!(h <= v.records, "verify missed a truncated log");
            }
        }
        Err(broken) => {
            let _ = broken.to_string();
            let first = broken.first_bad();
            if let Broken::Truncated { last, head } = broken {
                assert!(last < head && first == last + 1);
            } else {
                assert!(first >= 1 || matches!(broken, Broken::Sequence { .. }));
            }
        }
    }
});
