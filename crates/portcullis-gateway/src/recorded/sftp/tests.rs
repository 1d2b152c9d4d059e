//! The SFTP reader against whole conversations in pieces, garbage, lies and its bounds.

use super::*;
use portcullis_core::model::FileEvent;
use proptest::prelude::*;

fn now() -> Timestamp {
    Timestamp(7)
}

fn string(s: &[u8]) -> Vec<u8> {
    [(s.len() as u32).to_be_bytes().to_vec(), s.to_vec()].concat()
}

fn packet(kind: u8, id: Option<u32>, body: &[u8]) -> Vec<u8> {
    let mut p = vec![kind];
    if let Some(id) = id {
        p.extend_from_slice(&id.to_be_bytes());
    }
    p.extend_from_slice(body);
    [(p.len() as u32).to_be_bytes().to_vec(), p].concat()
}

fn open(id: u32, path: &str, pflags: u32) -> Vec<u8> {
    let body = [
        string(path.as_bytes()),
        pflags.to_be_bytes().to_vec(),
        vec![0; 4],
    ]
    .concat();
    packet(OPEN, Some(id), &body)
}

fn handle(id: u32, h: &[u8]) -> Vec<u8> {
    packet(HANDLE, Some(id), &string(h))
}

fn status(id: u32, code: u32) -> Vec<u8> {
    let body = [code.to_be_bytes().to_vec(), string(b""), string(b"")].concat();
    packet(STATUS, Some(id), &body)
}

fn write(id: u32, h: &[u8], data: &[u8]) -> Vec<u8> {
    let body = [string(h), 0u64.to_be_bytes().to_vec(), string(data)].concat();
    packet(WRITE, Some(id), &body)
}

fn read(id: u32, h: &[u8]) -> Vec<u8> {
    let body = [
        string(h),
        0u64.to_be_bytes().to_vec(),
        32768u32.to_be_bytes().to_vec(),
    ]
    .concat();
    packet(READ, Some(id), &body)
}

fn data(id: u32, d: &[u8]) -> Vec<u8> {
    packet(DATA, Some(id), &string(d))
}

fn paths(kind: u8, id: u32, ps: &[&str]) -> Vec<u8> {
    let body: Vec<u8> = ps.iter().flat_map(|p| string(p.as_bytes())).collect();
    packet(kind, Some(id), &body)
}

fn extended(id: u32, name: &str, ps: &[&str]) -> Vec<u8> {
    let body: Vec<u8> = std::iter::once(string(name.as_bytes()))
        .chain(ps.iter().map(|p| string(p.as_bytes())))
        .flatten()
        .collect();
    packet(EXTENDED, Some(id), &body)
}

fn version(v: u32) -> Vec<u8> {
    packet(VERSION, None, &v.to_be_bytes())
}

fn init() -> Vec<u8> {
    packet(INIT, None, &3u32.to_be_bytes())
}

/// A conversation: (from the client?, bytes) in order.
fn session() -> Vec<(bool, Vec<u8>)> {
    vec![
        (true, init()),
        (false, version(3)),
        (true, open(1, "/up/a.txt", 0x02 | 0x08 | 0x10)),
        (false, handle(1, b"h1")),
        (true, write(2, b"h1", b"hello")),
        (true, write(3, b"h1", b" world")),
        (false, status(2, 0)),
        (false, status(3, 0)),
        (true, packet(CLOSE, Some(4), &string(b"h1"))),
        (false, status(4, 0)),
        (true, open(5, "/up/a.txt", 0x01)),
        (false, handle(5, b"h2")),
        (true, read(6, b"h2")),
        (false, data(6, b"hello world")),
        (true, read(7, b"h2")),
        (false, status(7, 1)),
        (true, packet(CLOSE, Some(8), &string(b"h2"))),
        (false, status(8, 0)),
        (true, paths(RENAME, 9, &["/up/a.txt", "/up/b.txt"])),
        (false, status(9, 0)),
        (
            true,
            extended(10, "posix-rename@openssh.com", &["/up/b.txt", "/up/c.txt"]),
        ),
        (false, status(10, 0)),
        (true, paths(MKDIR, 11, &["/up/d"])),
        (false, status(11, 0)),
        (true, paths(RMDIR, 12, &["/up/d"])),
        (false, status(12, 0)),
        (true, paths(REMOVE, 13, &["/etc/shadow"])),
        (false, status(13, 3)),
        (true, open(14, "/nope", 0x01)),
        (false, status(14, 2)),
        (true, paths(SYMLINK, 15, &["/up/c.txt", "/up/l"])),
        (false, status(15, 0)),
        (
            true,
            extended(16, "hardlink@openssh.com", &["/up/c.txt", "/up/h"]),
        ),
        (false, status(16, 0)),
        (true, paths(SETSTAT, 17, &["/up/c.txt"])),
        (false, status(17, 0)),
        // A listing: nothing to record, and its handle is not a file.
        (true, paths(11, 18, &["/up"])),
        (false, handle(18, b"dir")),
    ]
}

fn expected() -> Vec<(FileOp, &'static str)> {
    let s = |x: &str| x.to_string();
    vec![
        (
            FileOp::Open {
                path: s("/up/a.txt"),
                flags: s("write,create,truncate"),
            },
            "ok",
        ),
        (
            FileOp::Close {
                path: s("/up/a.txt"),
                bytes_read: 0,
                bytes_written: 11,
            },
            "ok",
        ),
        (
            FileOp::Open {
                path: s("/up/a.txt"),
                flags: s("read"),
            },
            "ok",
        ),
        (
            FileOp::Close {
                path: s("/up/a.txt"),
                bytes_read: 11,
                bytes_written: 0,
            },
            "ok",
        ),
        (
            FileOp::Rename {
                from: s("/up/a.txt"),
                to: s("/up/b.txt"),
            },
            "ok",
        ),
        (
            FileOp::Rename {
                from: s("/up/b.txt"),
                to: s("/up/c.txt"),
            },
            "ok",
        ),
        (FileOp::Mkdir { path: s("/up/d") }, "ok"),
        (FileOp::Rmdir { path: s("/up/d") }, "ok"),
        (
            FileOp::Remove {
                path: s("/etc/shadow"),
            },
            "permission denied",
        ),
        (
            FileOp::Open {
                path: s("/nope"),
                flags: s("read"),
            },
            "no such file",
        ),
        (
            FileOp::Symlink {
                link: s("/up/l"),
                points_to: s("/up/c.txt"),
            },
            "ok",
        ),
        (
            FileOp::Hardlink {
                link: s("/up/h"),
                points_to: s("/up/c.txt"),
            },
            "ok",
        ),
        (
            FileOp::Setstat {
                path: s("/up/c.txt"),
            },
            "ok",
        ),
    ]
}

fn events(tap: &mut SftpTap) -> Vec<(FileOp, String)> {
    tap.log()
        .take()
        .into_iter()
        .flatten()
        .map(|FileEvent { op, outcome, .. }| (op, outcome.unwrap_or_default()))
        .collect()
}

fn run(tap: &mut SftpTap, conversation: &[(bool, Vec<u8>)], piece: usize) {
    for (by_client, bytes) in conversation {
        for chunk in bytes.chunks(piece.max(1)) {
            if *by_client {
                tap.client_sent(chunk, &now);
            } else {
                tap.target_sent(chunk, &now);
            }
        }
    }
}

#[test]
fn a_whole_session_reads_as_its_file_operations_in_pieces_of_any_size() {
    let want: Vec<(FileOp, String)> = expected()
        .into_iter()
        .map(|(op, o)| (op, o.to_string()))
        .collect();
    for piece in [1, 2, 3, 5, 7, 64, 4096] {
        let mut tap = SftpTap::default();
        run(&mut tap, &session(), piece);
        assert_eq!(events(&mut tap), want, "pieces of {piece}");
        assert!(tap.tables.pending.is_empty(), "{:?}", tap.tables.pending);
        assert!(tap.tables.handles.is_empty());
    }
    // The client's packets back to back in one piece, and no answer yet: nothing is
    // recorded before the target answers.
    let mut tap = SftpTap::default();
    let all: Vec<u8> = session()
        .iter()
        .filter(|(c, _)| *c)
        .flat_map(|(_, b)| b.clone())
        .collect();
    tap.client_sent(&all, &now);
    assert!(events(&mut tap).is_empty(), "no answer, no event");
    assert!(tap.tables.pending.len() > 10);
}

#[test]
fn a_file_open_at_the_end_is_reported_closed_as_it_stands() {
    let mut tap = SftpTap::default();
    run(
        &mut tap,
        &[
            (true, open(1, "/big", 0x02 | 0x08)),
            (false, handle(1, b"h")),
            (true, write(2, b"h", &[0; 1000])),
            (false, status(2, 0)),
            (true, write(3, b"h", &[0; 1000])),
            (false, status(3, 4)),
        ],
        9,
    );
    tap.finish(now());
    let got = events(&mut tap);
    assert_eq!(
        got.last().unwrap(),
        &(
            FileOp::Close {
                path: "/big".into(),
                bytes_read: 0,
                bytes_written: 1000,
            },
            "session ended".to_string()
        )
    );
}

#[test]
fn a_huge_length_or_another_version_abandons_once_and_the_rest_is_ignored() {
    let mut tap = SftpTap::default();
    tap.client_sent(&open(1, "/a", 1), &now);
    tap.target_sent(&handle(1, b"h"), &now);
    tap.client_sent(&[0xff, 0xff, 0xff, 0xff, 3, 0, 0], &now);
    tap.client_sent(&paths(MKDIR, 2, &["/d"]), &now);
    tap.target_sent(&status(2, 0), &now);
    let got = events(&mut tap);
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(matches!(&got[1].0, FileOp::SftpAbandoned { why } if why.contains("4294967295")));
    assert_eq!(
        got[2].1, "parse abandoned",
        "the open file is closed as it stands"
    );
    assert!(tap.tables.pending.is_empty() && tap.tables.handles.is_empty());

    let mut tap = SftpTap::default();
    tap.target_sent(&version(6), &now);
    assert!(
        matches!(&events(&mut tap)[0].0, FileOp::SftpAbandoned { why } if why.contains("version 6"))
    );
    let mut tap = SftpTap::default();
    tap.client_sent(&[0, 0, 0, 0], &now);
    assert_eq!(events(&mut tap).len(), 1, "a packet of no bytes");
}

#[test]
fn pending_requests_and_open_files_are_bounded() {
    let mut tap = SftpTap::default();
    for id in 0..=MAX_PENDING as u32 {
        tap.client_sent(&paths(MKDIR, id, &["/d"]), &now);
    }
    assert!(tap.abandoned && tap.tables.pending.is_empty());
    assert_eq!(events(&mut tap).len(), 1);

    let mut tap = SftpTap::default();
    for id in 0..=MAX_HANDLES as u32 {
        tap.client_sent(&open(id, "/f", 1), &now);
        tap.target_sent(&handle(id, &id.to_be_bytes()), &now);
    }
    assert!(tap.abandoned);
    let got = events(&mut tap);
    // Every open, the abandonment, and each of them closed as it stood.
    assert_eq!(got.len(), 2 * MAX_HANDLES + 1);
}

/// Paths are kept up to 1 KiB of the stream, 3 KiB once made text when none of it is UTF-8:
/// the bytes of the paths waiting and open are bounded as well as their number, and given
/// back as answers come.
#[test]
fn the_bytes_of_paths_waiting_and_open_are_bounded() {
    // Two paths of the longest kept, not UTF-8: about 6 KiB a rename.
    let long = [0xffu8; 2 * super::super::files::MAX_PATH];
    let rename = |id: u32| {
        let body = [string(&long), string(&long)].concat();
        packet(RENAME, Some(id), &body)
    };
    let per_rename = 2 * text(&long, false).len();
    let fits = MAX_RETAINED / per_rename;
    assert!(fits < MAX_PENDING, "the bytes bind before the count");

    // Answered as they come: the budget is given back, and nothing is abandoned.
    let mut tap = SftpTap::default();
    for id in 0..(2 * fits) as u32 {
        tap.client_sent(&rename(id), &now);
        tap.target_sent(&status(id, 0), &now);
    }
    assert!(!tap.abandoned && tap.tables.retained == 0);
    assert_eq!(events(&mut tap).len(), 2 * fits);

    // Left waiting: the request past the budget abandons, with its event.
    let mut tap = SftpTap::default();
    for id in 0..=fits as u32 {
        tap.client_sent(&rename(id), &now);
    }
    assert!(tap.abandoned && tap.tables.pending.is_empty());
    let got = events(&mut tap);
    assert_eq!(got.len(), 1);
    assert!(
        matches!(&got[0].0, FileOp::SftpAbandoned { why } if why.contains("bytes")),
        "{got:?}"
    );

    // Files left open with long paths: the same.
    let open_long = |id: u32| {
        let body = [string(&long), 1u32.to_be_bytes().to_vec(), vec![0; 4]].concat();
        packet(OPEN, Some(id), &body)
    };
    let mut tap = SftpTap::default();
    let mut id = 0u32;
    while !tap.abandoned {
        assert!((id as usize) < MAX_HANDLES, "never abandoned");
        tap.client_sent(&open_long(id), &now);
        tap.target_sent(&handle(id, &id.to_be_bytes()), &now);
        assert!(tap.tables.retained <= MAX_RETAINED);
        id += 1;
    }
    assert!(tap.tables.handles.is_empty() && tap.tables.retained == 0);
}

#[test]
fn long_paths_are_kept_cut_and_the_data_of_writes_is_not_kept() {
    let mut tap = SftpTap::default();
    let long = "x".repeat(20_000);
    tap.client_sent(&paths(RENAME, 1, &[&long, "/b"]), &now);
    tap.target_sent(&status(1, 0), &now);
    let got = events(&mut tap);
    match &got[0].0 {
        FileOp::Rename { from, to } => {
            assert!(
                from.ends_with('…') && from.len() < 2 * 1024,
                "{}",
                from.len()
            );
            assert!(
                to.ends_with('…'),
                "the second path was past what is kept: {to}"
            );
        }
        other => panic!("{other:?}"),
    }
    tap.client_sent(&open(2, "/f", 2), &now);
    tap.target_sent(&handle(2, b"h"), &now);
    let before = tap.to_target.head.capacity();
    tap.client_sent(&write(3, b"h", &vec![7; 200_000]), &now);
    assert!(tap.to_target.head.capacity() <= before.max(HEAD));
    tap.target_sent(&status(3, 0), &now);
    assert_eq!(tap.tables.handles[b"h".as_slice()].written, 200_000);
}

#[test]
fn a_write_claiming_more_data_than_its_packet_counts_what_the_packet_holds() {
    let mut tap = SftpTap::default();
    tap.client_sent(&open(1, "/f", 2), &now);
    tap.target_sent(&handle(1, b"h"), &now);
    let mut lying = write(2, b"h", b"abc");
    let at = lying.len() - 7;
    lying[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    tap.client_sent(&lying, &now);
    tap.target_sent(&status(2, 0), &now);
    assert_eq!(tap.tables.handles[b"h".as_slice()].written, 3);
}

proptest! {
    /// Garbage in either direction, in any pieces, never panics, and never holds more
    /// than the bounds allow.
    #[test]
    fn garbage_never_panics_and_stays_bounded(
        chunks in proptest::collection::vec(
            (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..300)), 0..40)
    ) {
        let mut tap = SftpTap::default();
        for (by_client, bytes) in &chunks {
            if *by_client {
                tap.client_sent(bytes, &now);
            } else {
                tap.target_sent(bytes, &now);
            }
        }
        tap.finish(now());
        prop_assert!(tap.tables.pending.len() <= MAX_PENDING);
        prop_assert!(tap.tables.handles.is_empty());
        prop_assert!(tap.to_target.head.len() <= HEAD && tap.to_client.head.len() <= HEAD);
        let _ = events(&mut tap);
    }

    /// A real conversation cut short anywhere, read in pieces of any size, never panics.
    #[test]
    fn a_session_cut_anywhere_never_panics(cut in 0usize..2000, piece in 1usize..50) {
        let mut bytes: Vec<(bool, Vec<u8>)> = session();
        let mut seen = 0;
        for (_, b) in bytes.iter_mut() {
            if seen + b.len() > cut {
                b.truncate(cut.saturating_sub(seen));
                break;
            }
            seen += b.len();
        }
        let mut tap = SftpTap::default();
        run(&mut tap, &bytes, piece);
        tap.finish(now());
        let _ = events(&mut tap);
    }
}

/// A request id used again before its answer: which answer is whose cannot be told, so the
/// reader says so once instead of letting the first operation go unrecorded.
#[test]
fn a_request_id_used_again_before_its_answer_abandons_once() {
    let mut tap = SftpTap::default();
    tap.client_sent(&paths(REMOVE, 5, &["/important"]), &now);
    tap.client_sent(&paths(MKDIR, 5, &["/tmp/x"]), &now);
    tap.target_sent(&status(5, 0), &now);
    tap.target_sent(&status(5, 0), &now);
    assert!(tap.abandoned);
    let got = events(&mut tap);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        matches!(&got[0].0, FileOp::SftpAbandoned { why } if why.contains("used again")),
        "{got:?}"
    );
}

/// chmod, chown or truncate through an open file (FSETSTAT) is a setstat of that file's path,
/// as SETSTAT by path is.
#[test]
fn a_setstat_through_an_open_file_names_its_path() {
    let mut tap = SftpTap::default();
    tap.client_sent(&open(1, "/etc/app.conf", 2), &now);
    tap.target_sent(&handle(1, b"h1"), &now);
    let attrs = [
        string(b"h1"),
        4u32.to_be_bytes().to_vec(),
        0o600u32.to_be_bytes().to_vec(),
    ]
    .concat();
    tap.client_sent(&packet(FSETSTAT, Some(2), &attrs), &now);
    tap.target_sent(&status(2, 0), &now);
    let got = events(&mut tap);
    assert!(
        got.iter()
            .any(|e| matches!(&e.0, FileOp::Setstat { path } if path == "/etc/app.conf")),
        "{got:?}"
    );
}
