//! A session report as the approver receives it on `report --seq N`: standard input holds one
//! framed `[u32 length][version ++ bincode(SessionReport)]`, then the recording a `Recorded`
//! report announces, checked against the SHA-256 the report carries.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_core::codec::FrameReader;
use portcullis_core::model::SessionReport;
use portcullis_fuzz::record_round_trip;
use sha2::{Digest, Sha256};

fuzz_target!(|input: &[u8]| {
    // What `commands::report` does with the channel's bytes.
    let mut frames = FrameReader::new();
    frames.push(input);
    let Ok(Some(bytes)) = frames.next_frame() else {
        return;
    };
    let attachment = &input[4 + bytes.len()..];
    let Some(report) = record_round_trip::<SessionReport>(&bytes) else {
        return;
    };
    let session = report.session().unwrap_or_default().to_string();
    if let SessionReport::Recorded { sha256, .. } = &report {
        let found = hex::encode(Sha256::digest(attachment));
        let checked = portcullis_audit::verify_recording(&session, sha256, Some(attachment));
        assert_eq!(
            checked.is_ok(),
            &found == sha256,
            "verify_recording disagrees with the SHA-256 of the attachment"
        );
        if let Err(e) = checked {
            let _ = e.to_string();
        }
    }
});
