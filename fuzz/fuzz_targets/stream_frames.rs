//! The watch stream as a gateway reads it: bytes arrive in arbitrary chunks, `FrameReader`
//! splits 4-byte big-endian length-prefixed frames, `Frame::from_record` decodes each and the
//! `Follower` verifies signatures and revision order. Input: 8 bytes of the revision the
//! replica resumes from (read from its own disk), 1 byte of chunk size, then the wire bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_core::codec::{self, CodecError, FrameReader, MAX_RECORD_BYTES};
use portcullis_core::stream::{Follower, Frame, Verified};
use portcullis_fuzz::{record_round_trip, verifying_key};

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let mut since = [0u8; 8];
    since.copy_from_slice(&data[..8]);
    let since = u64::from_be_bytes(since);
    let chunk = usize::from(data[8] % 64) + 1;
    let wire = &data[9..];

    let mut reader = FrameReader::new();
    let mut follower = Follower::new(verifying_key(), since);
    let mut pushed = 0usize;
    let mut consumed = 0usize;
    'feed: for piece in wire.chunks(chunk) {
        reader.push(piece);
        pushed += piece.len();
        loop {
            match reader.next_frame() {
                Ok(Some(record)) => {
                    // The frame is exactly the announced length, taken from where the last
                    // one ended.
                    let len = u32::from_be_bytes([
                        wire[consumed],
                        wire[consumed + 1],
                        wire[consumed + 2],
                        wire[consumed + 3],
                    ]) as usize;
                    assert_eq!(record.len(), len);
                    assert_eq!(&wire[consumed + 4..consumed + 4 + len], record.as_slice());
                    consumed += 4 + len;
                    assert_eq!(reader.pending(), pushed - consumed);

                    if let Some(frame) = record_round_trip::<Frame>(&record) {
                        assert_eq!(frame.to_wire(), codec::frame(&codec::encode(&frame)));
                    }
                    let before = follower.last_rev();
                    match follower.accept(&record) {
                        Ok(Verified::Heartbeat { .. }) | Err(_) => {
                            assert_eq!(
                                follower.last_rev(),
                                before,
                                "a non-change moved the follower"
                            );
                        }
                        Ok(v) => {
                            assert_eq!(v.rev(), follower.last_rev());
                            assert_eq!(Some(v.rev()), before.checked_add(1), "a gap was accepted");
                        }
                    }
                }
                Ok(None) => {
                    assert!(reader.pending() == pushed - consumed);
                    break;
                }
                Err(CodecError::TooLarge { len }) => {
                    // The link drops the connection here; nothing of it was buffered as a frame.
                    assert!(len > MAX_RECORD_BYTES);
                    break 'feed;
                }
                Err(e) => panic!("FrameReader failed with an unexpected error: {e}"),
            }
        }
    }
});
