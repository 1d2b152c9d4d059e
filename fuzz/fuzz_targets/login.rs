//! The gateway login name: `alice` for forwarding and control commands, `alice:web-1` for a
//! recorded session on web-1 (`portcullis_gateway::split_login`). The user part is what is
//! looked up in the catalog and must never contain the separator; the target part, when
//! there is one, is non-empty; and nothing of the login is lost or invented.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_gateway::split_login;

fuzz_target!(|data: &[u8]| {
    // russh hands the login over as a &str.
    let Ok(login) = std::str::from_utf8(data) else {
        return;
    };
    let (user, target) = split_login(login);
    assert!(!user.contains(':'), "user part {user:?} keeps a colon");
    match target {
        Some(t) => {
            assert!(!t.is_empty());
            assert_eq!(format!("{user}:{t}"), login);
        }
        None => assert!(
            login == user || login == format!("{user}:"),
            "{login:?} lost a part"
        ),
    }
});
