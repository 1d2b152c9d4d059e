//! Session recordings in asciicast v2 (the asciinema format): a JSON header line, then one
//! `[seconds, "o"|"i"|"r", "data"]` line per event, written while the session runs and flushed
//! at least once a second. A recording that cannot be written ends its session (fail closed).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};

/// A recording's file: written through a buffer, pushed to disk at least once a second, and
/// synced and hashed when the session ends. Both kinds of recording write through one.
struct RecordingFile {
    path: PathBuf,
    out: BufWriter<File>,
    /// Written to since the last flush.
    dirty: bool,
}

impl RecordingFile {
    /// Create the file (and its folder), write `first_line`, and push it to disk at once so
    /// that a full disk is found before the session starts.
    fn create(dir: &Path, path: PathBuf, first_line: &[u8]) -> std::io::Result<RecordingFile> {
        std::fs::create_dir_all(dir)?;
        let mut out = BufWriter::new(File::create(&path)?);
        out.write_all(first_line)?;
        out.flush()?;
        Ok(RecordingFile {
            path,
            out,
            dirty: false,
        })
    }

    fn write(&mut self) -> &mut BufWriter<File> {
        self.dirty = true;
        &mut self.out
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.dirty {
            self.out.flush()?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Its size and SHA-256 in hex, once synced.
    fn finish(mut self) -> std::io::Result<(u64, String)> {
        self.out.flush()?;
        self.out.get_ref().sync_all()?;
        file_digest(&self.path)
    }
}

pub(crate) struct Recorder {
    file: RecordingFile,
    started: Instant,
    /// Bytes of a UTF-8 sequence split across two chunks, per stream.
    carry_out: Vec<u8>,
    carry_in: Vec<u8>,
    record_input: bool,
}

pub(crate) struct Header<'a> {
    pub width: u32,
    pub height: u32,
    pub timestamp: u64,
    pub term: &'a str,
    pub title: &'a str,
}

impl Recorder {
    pub fn create(
        dir: &Path,
        session: &str,
        header: Header<'_>,
        record_input: bool,
    ) -> std::io::Result<Recorder> {
        let h = serde_json::json!({
            "version": 2,
            "width": header.width.max(1),
            "height": header.height.max(1),
            "timestamp": header.timestamp,
            "env": { "TERM": header.term, "SHELL": "/bin/sh" },
            "title": header.title,
        });
        let file = RecordingFile::create(dir, path(dir, session), format!("{h}\n").as_bytes())?;
        Ok(Recorder {
            file,
            started: Instant::now(),
            carry_out: Vec::new(),
            carry_in: Vec::new(),
            record_input,
        })
    }

    fn event(&mut self, kind: &str, text: &str) -> std::io::Result<()> {
        let t = self.started.elapsed().as_secs_f64();
        let data = serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into());
        writeln!(self.file.write(), "[{t:.6}, \"{kind}\", {data}]")
    }

    pub fn output(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let text = take_utf8(&mut self.carry_out, bytes);
        if text.is_empty() {
            return Ok(());
        }
        self.event("o", &text)
    }

    pub fn input(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if !self.record_input {
            return Ok(());
        }
        let text = take_utf8(&mut self.carry_in, bytes);
        if text.is_empty() {
            return Ok(());
        }
        self.event("i", &text)
    }

    pub fn resize(&mut self, width: u32, height: u32) -> std::io::Result<()> {
        self.event("r", &format!("{width}x{height}"))
    }

    /// Push what is buffered to the file (called at least once a second).
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }

    /// Close the recording: its size, and its SHA-256 in hex.
    pub fn finish(self) -> std::io::Result<(u64, String)> {
        self.file.finish()
    }
}

/// The raw stream of a channel without a pty, kept where `record_data = true`: compact, not
/// JSON-escaped. After the line `portcullis-data v1`, one record per chunk:
/// `[stream: u8 (0 client→target, 1 stdout, 2 stderr)][ms since start: u32 BE][len: u32 BE][bytes]`.
pub(crate) struct RawRecorder {
    file: RecordingFile,
    started: Instant,
}

impl RawRecorder {
    pub fn create(dir: &Path, session: &str) -> std::io::Result<RawRecorder> {
        Ok(RawRecorder {
            file: RecordingFile::create(dir, data_path(dir, session), b"portcullis-data v1\n")?,
            started: Instant::now(),
        })
    }

    pub fn chunk(&mut self, stream: u8, bytes: &[u8]) -> std::io::Result<()> {
        let ms = self.started.elapsed().as_millis().min(u32::MAX as u128) as u32;
        let out = self.file.write();
        for piece in bytes.chunks(u32::MAX as usize) {
            out.write_all(&[stream])?;
            out.write_all(&ms.to_be_bytes())?;
            out.write_all(&(piece.len() as u32).to_be_bytes())?;
            out.write_all(piece)?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }

    pub fn finish(self) -> std::io::Result<(u64, String)> {
        self.file.finish()
    }
}

/// Whatever a session is recorded as: asciicast for a pty, the raw stream of a channel without
/// one where `record_data` asks for it, or nothing (command, timing and byte counts only).
pub(crate) enum Recording {
    None,
    Cast(Recorder),
    Raw(RawRecorder),
}

/// Where a chunk of output came from, for the raw stream (a cast does not tell them apart).
#[derive(Clone, Copy)]
pub(crate) enum Output {
    Stdout = 1,
    Stderr = 2,
}

impl Recording {
    pub fn input(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Recording::None => Ok(()),
            Recording::Cast(r) => r.input(bytes),
            Recording::Raw(r) => r.chunk(0, bytes),
        }
    }

    pub fn output(&mut self, from: Output, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Recording::None => Ok(()),
            Recording::Cast(r) => r.output(bytes),
            Recording::Raw(r) => r.chunk(from as u8, bytes),
        }
    }

    pub fn resize(&mut self, width: u32, height: u32) -> std::io::Result<()> {
        match self {
            Recording::Cast(r) => r.resize(width, height),
            _ => Ok(()),
        }
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Recording::None => Ok(()),
            Recording::Cast(r) => r.flush(),
            Recording::Raw(r) => r.flush(),
        }
    }

    /// Close the recording: its format (`cast` or `data`), size and SHA-256 in hex.
    pub fn finish(self) -> Option<(&'static str, std::io::Result<(u64, String)>)> {
        match self {
            Recording::None => None,
            Recording::Cast(r) => Some(("cast", r.finish())),
            Recording::Raw(r) => Some(("data", r.finish())),
        }
    }
}

/// Where a session's raw data stream is kept.
pub(crate) fn data_path(dir: &Path, session: &str) -> PathBuf {
    dir.join(format!("{session}.data"))
}

/// Size and SHA-256 (hex) of a file, read in pieces.
pub(crate) fn file_digest(path: &Path) -> std::io::Result<(u64, String)> {
    use std::io::Read as _;
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(h.finalize())))
}

/// Where a session's recording is kept.
pub(crate) fn path(dir: &Path, session: &str) -> PathBuf {
    dir.join(format!("{session}.cast"))
}

/// Decode as much of `carry ++ bytes` as is valid UTF-8, keeping an incomplete trailing
/// sequence for the next chunk; invalid bytes become U+FFFD.
fn take_utf8(carry: &mut Vec<u8>, bytes: &[u8]) -> String {
    carry.extend_from_slice(bytes);
    let mut end = carry.len();
    // An incomplete sequence is at most 3 bytes long and starts with a lead byte.
    for back in 1..=3.min(carry.len()) {
        let b = carry[carry.len() - back];
        if b & 0xC0 == 0xC0 {
            let need = if b >= 0xF0 {
                4
            } else if b >= 0xE0 {
                3
            } else {
                2
            };
            if back < need {
                end = carry.len() - back;
            }
            break;
        }
        if b & 0x80 == 0 {
            break;
        }
    }
    let text = String::from_utf8_lossy(&carry[..end]).into_owned();
    carry.drain(..end);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_utf8_is_joined_not_mangled() {
        let mut carry = Vec::new();
        let s = "é→😀";
        let b = s.as_bytes();
        let mut out = String::new();
        for chunk in b.chunks(1) {
            out.push_str(&take_utf8(&mut carry, chunk));
        }
        assert_eq!(out, s);
        assert!(carry.is_empty());
        assert_eq!(take_utf8(&mut Vec::new(), &[0xff, b'a']), "\u{fffd}a");
    }

    #[test]
    fn writes_asciicast_v2() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Recorder::create(
            dir.path(),
            "s1",
            Header {
                width: 80,
                height: 24,
                timestamp: 1,
                term: "xterm",
                title: "t",
            },
            true,
        )
        .unwrap();
        r.output(b"hello\r\n").unwrap();
        r.input(b"ls\r").unwrap();
        r.resize(100, 30).unwrap();
        let (size, sha) = r.finish().unwrap();
        assert_eq!(sha.len(), 64);
        let text = std::fs::read_to_string(dir.path().join("s1.cast")).unwrap();
        assert_eq!(size as usize, text.len());
        let mut lines = text.lines();
        let header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(header["version"], 2);
        let ev: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(ev[1], "o");
        assert_eq!(ev[2], "hello\r\n");
        assert_eq!(lines.count(), 2);
    }
}
