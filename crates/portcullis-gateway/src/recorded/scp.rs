//! A passive reader of the legacy scp protocol, what `scp -O` speaks (OpenSSH's `scp` before
//! 9.0 did by default; since, it uses SFTP, read by `sftp.rs`). The client runs `scp -t PATH`
//! on the target to upload and `scp -f PATH` to download; the sending side (the client for an
//! upload, the target for a download) sends a control line per file (`C0644 SIZE NAME`) or
//! directory (`D0755 0 NAME` … `E`), each file's bytes after its line, and a zero byte after
//! them. Each file and directory becomes an event with its name (under the directories it is
//! in), size and mode; the command line with the path on the target is in the session's
//! `session.started` event.
//!
//! It reads only the sending side, holds one control line ([`MAX_LINE`]) and the names of the
//! directories it is in ([`MAX_DEPTH`]); a line too long, too deep a tree or a byte that
//! cannot start a line stops the parsing with one `scp.parse_abandoned` event.

use portcullis_core::audit_event::FileOp;
use portcullis_core::Timestamp;

use super::files::{text, FileLog, MAX_PATH};

/// The longest control line followed: a mode, a size and a file name.
const MAX_LINE: usize = 4096;
/// Directories deep.
const MAX_DEPTH: usize = 64;

/// One session's legacy scp stream.
#[derive(Debug)]
pub(crate) struct ScpTap {
    /// `upload` (to the target: the client sends) or `download`.
    direction: &'static str,
    state: State,
    line: Vec<u8>,
    dirs: Vec<String>,
    log: FileLog,
    abandoned: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A control line (or the zero after a file's bytes).
    Line,
    /// A file's bytes, this many still to come.
    Data(u64),
}

impl ScpTap {
    /// The reader for an exec of `command`, if it is the target's end of a legacy scp.
    pub fn for_command(command: &str) -> Option<ScpTap> {
        let words = shell_words::split(command).ok()?;
        let (program, args) = words.split_first()?;
        if program.rsplit('/').next() != Some("scp") {
            return None;
        }
        let flags: String = args
            .iter()
            .take_while(|w| w.starts_with('-') && *w != "--")
            .flat_map(|w| w.chars().skip(1))
            .collect();
        let direction = match (flags.contains('t'), flags.contains('f')) {
            (true, false) => "upload",
            (false, true) => "download",
            _ => return None,
        };
        Some(ScpTap {
            direction,
            state: State::Line,
            line: Vec::new(),
            dirs: Vec::new(),
            log: FileLog::default(),
            abandoned: false,
        })
    }

    pub fn client_sent(&mut self, data: &[u8], now: &dyn Fn() -> Timestamp) {
        if self.direction == "upload" {
            self.feed(data, now);
        }
    }

    pub fn target_sent(&mut self, data: &[u8], now: &dyn Fn() -> Timestamp) {
        if self.direction == "download" {
            self.feed(data, now);
        }
    }

    pub fn log(&mut self) -> &mut FileLog {
        &mut self.log
    }

    fn feed(&mut self, mut data: &[u8], now: &dyn Fn() -> Timestamp) {
        while !self.abandoned && !data.is_empty() {
            match self.state {
                State::Data(left) => {
                    let n = data.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    data = &data[n..];
                    self.state = State::Data(left - n as u64);
                    if left == n as u64 {
                        self.state = State::Line;
                    }
                }
                State::Line => {
                    // The zero after a file's bytes (or an acknowledgement) between lines.
                    if self.line.is_empty() && data[0] == 0 {
                        data = &data[1..];
                        continue;
                    }
                    let end = data.iter().position(|&b| b == b'\n');
                    let take = end.map_or(data.len(), |i| i + 1);
                    if self.line.len() + take > MAX_LINE {
                        self.abandon(now(), format!("a control line over {MAX_LINE} bytes"));
                        return;
                    }
                    self.line.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if end.is_some() {
                        let line = std::mem::take(&mut self.line);
                        if let Err(why) = self.control(&line[..line.len() - 1], now) {
                            self.abandon(now(), why);
                        }
                    }
                }
            }
        }
    }

    /// One control line, without its newline.
    fn control(&mut self, line: &[u8], now: &dyn Fn() -> Timestamp) -> Result<(), String> {
        let Some((&kind, rest)) = line.split_first() else {
            return Err("an empty control line".into());
        };
        match kind {
            b'C' | b'D' => {
                let (mode, size, name) = file_line(rest).ok_or_else(|| {
                    format!("a control line that does not parse: {}", text(line, false))
                })?;
                let path = self.path(name);
                if kind == b'C' {
                    self.log.push(
                        now(),
                        FileOp::ScpFile {
                            direction: self.direction.into(),
                            path,
                            size,
                            mode,
                        },
                        None,
                    );
                    if size > 0 {
                        self.state = State::Data(size);
                    }
                } else {
                    if self.dirs.len() >= MAX_DEPTH {
                        return Err(format!("directories over {MAX_DEPTH} deep"));
                    }
                    self.log.push(
                        now(),
                        FileOp::ScpDir {
                            direction: self.direction.into(),
                            path,
                            mode,
                        },
                        None,
                    );
                    self.dirs.push(capped(&text(name, false)).to_string());
                }
            }
            b'E' => {
                self.dirs.pop();
            }
            // Times of the next file (`-p`), and warnings or errors from the sending side.
            b'T' | 1 | 2 => {}
            other => return Err(format!("a control line starting with byte {other}")),
        }
        Ok(())
    }

    /// `name` under the directories the stream is in, capped. Built only up to the cap: a
    /// deep tree of long names must not cost a copy of all of them for every line under it.
    fn path(&self, name: &[u8]) -> String {
        let name = text(name, false);
        let mut path = String::new();
        for part in self.dirs.iter().map(String::as_str).chain([name.as_str()]) {
            if path.len() > MAX_PATH {
                break;
            }
            if !path.is_empty() {
                path.push('/');
            }
            path.push_str(capped(part));
        }
        if path.len() > MAX_PATH {
            path.truncate(boundary(&path, MAX_PATH));
            path.push('…');
        }
        path
    }

    fn abandon(&mut self, at: Timestamp, why: String) {
        self.abandoned = true;
        // Debug-quoted: `why` quotes bytes of the stream.
        tracing::warn!("scp stream no longer followed: {why:?}");
        self.log.push(at, FileOp::ScpAbandoned { why }, None);
        self.line = Vec::new();
        self.dirs = Vec::new();
    }
}

/// `MODE SIZE NAME` of a `C` or `D` line: the mode as sent (four octal digits), the size, the
/// name (which may hold spaces).
fn file_line(rest: &[u8]) -> Option<(String, u64, &[u8])> {
    let mut parts = rest.splitn(3, |&b| b == b' ');
    let mode = parts.next()?;
    let size = parts.next()?;
    let name = parts.next()?;
    if mode.is_empty() || mode.len() > 5 || !mode.iter().all(|b| (b'0'..=b'7').contains(b)) {
        return None;
    }
    let size = std::str::from_utf8(size).ok()?.parse::<u64>().ok()?;
    Some((String::from_utf8_lossy(mode).into_owned(), size, name))
}

/// `part` cut to at most [`MAX_PATH`] bytes at a character boundary.
fn capped(part: &str) -> &str {
    &part[..boundary(part, MAX_PATH)]
}

/// The largest character boundary of `s` at or below `at`.
fn boundary(s: &str, at: usize) -> usize {
    let mut end = at.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn now() -> Timestamp {
        Timestamp(3)
    }

    fn ops(tap: &mut ScpTap) -> Vec<FileOp> {
        tap.log()
            .take()
            .into_iter()
            .flatten()
            .map(|e| e.op)
            .collect()
    }

    #[test]
    fn only_the_target_end_of_a_legacy_scp_is_read() {
        let up = ScpTap::for_command("scp -v -p -t -- /tmp/x y").unwrap();
        assert_eq!(up.direction, "upload");
        assert_eq!(
            ScpTap::for_command("/usr/bin/scp -rf /tmp")
                .unwrap()
                .direction,
            "download"
        );
        for other in [
            "scp",
            "scp -r /a /b",
            "ls -t",
            "scpx -t /a",
            "scp -tf /a",
            "'unclosed",
        ] {
            assert!(ScpTap::for_command(other).is_none(), "{other}");
        }
    }

    /// What the sending side of `scp -O -r -p` sends: times, a directory, two files (one
    /// empty, one with a space in its name), the end of the directory, a file at the top.
    fn stream() -> Vec<u8> {
        let mut s = Vec::new();
        s.extend_from_slice(b"T1700000000 0 1700000000 0\n");
        s.extend_from_slice(b"D0755 0 dir\n");
        s.extend_from_slice(b"C0644 0 empty\n\0");
        s.extend_from_slice(b"C0600 11 two words\nhello\nworld\0");
        s.extend_from_slice(b"E\n");
        s.extend_from_slice(b"C0644 3 top.bin\n\n\nC\0");
        s
    }

    fn expected() -> Vec<FileOp> {
        let file = |path: &str, size, mode: &str| FileOp::ScpFile {
            direction: "upload".into(),
            path: path.into(),
            size,
            mode: mode.into(),
        };
        vec![
            FileOp::ScpDir {
                direction: "upload".into(),
                path: "dir".into(),
                mode: "0755".into(),
            },
            file("dir/empty", 0, "0644"),
            file("dir/two words", 11, "0600"),
            file("top.bin", 3, "0644"),
        ]
    }

    #[test]
    fn files_and_directories_in_pieces_of_any_size() {
        for piece in [1, 2, 3, 10, 1000] {
            let mut tap = ScpTap::for_command("scp -r -p -t /tmp").unwrap();
            for chunk in stream().chunks(piece) {
                tap.client_sent(chunk, &now);
                // The target's acknowledgements are not read.
                tap.target_sent(b"\0", &now);
            }
            assert_eq!(ops(&mut tap), expected(), "pieces of {piece}");
            assert!(!tap.abandoned);
        }
    }

    #[test]
    fn a_download_reads_the_target() {
        let mut tap = ScpTap::for_command("scp -f /etc/hosts").unwrap();
        tap.client_sent(b"C0644 1 not-this\nx\0", &now);
        tap.target_sent(b"C0644 5 hosts\nabcde\0", &now);
        assert_eq!(
            ops(&mut tap),
            [FileOp::ScpFile {
                direction: "download".into(),
                path: "hosts".into(),
                size: 5,
                mode: "0644".into(),
            }]
        );
    }

    #[test]
    fn garbage_a_long_line_or_a_deep_tree_abandons_once() {
        let mut tap = ScpTap::for_command("scp -t /tmp").unwrap();
        tap.client_sent(b"Xnot scp\nC0644 1 a\nx", &now);
        let got = ops(&mut tap);
        assert_eq!(got.len(), 1);
        assert!(matches!(&got[0], FileOp::ScpAbandoned { why } if why.contains("byte 88")));

        let mut tap = ScpTap::for_command("scp -t /tmp").unwrap();
        tap.client_sent(&vec![b'C'; MAX_LINE + 1], &now);
        assert!(tap.abandoned && tap.line.capacity() == 0);

        let mut tap = ScpTap::for_command("scp -t /tmp").unwrap();
        for _ in 0..=MAX_DEPTH {
            tap.client_sent(b"D0755 0 d\n", &now);
        }
        assert!(tap.abandoned);
        assert_eq!(ops(&mut tap).len(), MAX_DEPTH + 1);

        let mut tap = ScpTap::for_command("scp -t /tmp").unwrap();
        tap.client_sent(b"C0644 lots name\n", &now);
        assert!(tap.abandoned);
    }

    /// A deep tree of long names that grow when read (invalid UTF-8 becomes three bytes
    /// each): every path stays within the cap, and so does what is kept of the tree.
    #[test]
    fn a_deep_tree_of_long_names_keeps_paths_and_names_capped() {
        let mut tap = ScpTap::for_command("scp -t /tmp").unwrap();
        let name = vec![0xffu8; 4000];
        for _ in 0..MAX_DEPTH {
            let mut line = b"D0755 0 ".to_vec();
            line.extend_from_slice(&name);
            line.push(b'\n');
            tap.client_sent(&line, &now);
        }
        tap.client_sent(b"C0644 0 x\n", &now);
        assert!(!tap.abandoned);
        assert!(tap.dirs.iter().all(|d| d.len() <= MAX_PATH));
        for op in ops(&mut tap) {
            let path = match op {
                FileOp::ScpFile { path, .. } | FileOp::ScpDir { path, .. } => path,
                other => panic!("{other:?}"),
            };
            assert!(path.len() <= MAX_PATH + '…'.len_utf8(), "{}", path.len());
        }
    }

    proptest! {
        #[test]
        fn garbage_never_panics(chunks in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..200), 0..30)) {
            let mut tap = ScpTap::for_command("scp -t /tmp").unwrap();
            for c in &chunks {
                tap.client_sent(c, &now);
            }
            prop_assert!(tap.line.len() <= MAX_LINE);
            prop_assert!(tap.dirs.len() <= MAX_DEPTH);
            let _ = ops(&mut tap);
        }
    }
}
