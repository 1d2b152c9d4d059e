//! The asciicast reader of `audit replay` (`portcullis_audit::replay_events`): any text, any
//! speed, any idle limit. Every pause stays within the limits, and no line yields more than one
//! event.

#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use portcullis_audit::{replay_events, REPLAY_MAX_PAUSE};

fuzz_target!(|data: &[u8]| {
    if data.len() < 10 {
        return;
    }
    let speed = f64::from_le_bytes([
        data[0], data[1], data[2], data[3], data[4], data[5], data[6], data[7],
    ]);
    let idle = (data[8] & 1 == 1).then(|| Duration::from_millis(u64::from(data[9]) * 10));
    let cast = String::from_utf8_lossy(&data[10..]);
    let lines = cast.lines().count();
    let mut events = 0;
    for (pause, _text) in replay_events(&cast, speed, idle) {
        events += 1;
        assert!(pause <= REPLAY_MAX_PAUSE, "{pause:?}");
        if let Some(cap) = idle {
            assert!(pause <= cap, "{pause:?} over the idle limit {cap:?}");
        }
    }
    assert!(
        events <= lines.saturating_sub(1),
        "{events} events from {lines} lines"
    );
});
