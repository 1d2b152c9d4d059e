//! The control command line: `ssh -p 2223 alice@approver COMMAND …` arrives as one exec line,
//! split like a shell would and parsed by the clap grammar in `portcullis_core::command`.
//! A line that parses must render back (`to_line`) into one that parses to the same words:
//! the thin clients parse locally and send `to_line`, and the gateway relays `as … -- WORDS`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_core::command::{join_words, parse_line};

fuzz_target!(|data: &[u8]| {
    // SSH exec requests carry bytes; the server takes them as UTF-8 text.
    let line = String::from_utf8_lossy(data);
    match parse_line(&line) {
        Ok(parsed) => {
            let words = parsed.to_words();
            let sent = parsed.to_line();
            assert_eq!(sent, join_words(&words));
            match parse_line(&sent) {
                Ok(again) => assert_eq!(
                    again.to_words(),
                    words,
                    "{line:?} is sent as {sent:?}, which reads back differently"
                ),
                Err(e) => panic!("{line:?} is sent as {sent:?}, which does not parse: {e}"),
            }
        }
        Err(e) => {
            // What the caller is shown.
            let _ = e.kind();
            let _ = e.render().to_string();
        }
    }
});
