//! A passive reader of the SFTP (version 3, as OpenSSH speaks it) stream of a recorded
//! session's `sftp` subsystem, which `sftp` and `scp` (OpenSSH 9.0 and later) use: it turns
//! requests and the target's answers into file events (open with its flags, close with the
//! bytes read and written through the handle, rename, remove, mkdir, rmdir, setstat, symlink,
//! hard link), each with the target's answer (`ok`, `permission denied`, …).
//!
//! It reads a copy of each direction as the relay moves it, in whatever pieces the channel
//! delivers, and never holds more than one packet's head per direction: of a packet it keeps
//! the first bytes it needs ([`HEAD`], less for the data of reads and writes) and counts the
//! rest. Requests waiting for their answer ([`MAX_PENDING`](tables::MAX_PENDING)) and open
//! handles ([`MAX_HANDLES`](tables::MAX_HANDLES)) are bounded, and so are the bytes of the
//! paths and handles they keep ([`MAX_RETAINED`](tables::MAX_RETAINED)); a packet longer
//! than [`MAX_PACKET`] (OpenSSH refuses over 256 KiB), a bound reached or a version other than 3 stops the parsing for the rest of the
//! session with one `sftp.parse_abandoned` event (files open then are reported closed as they
//! stand). Garbage never panics: every read is checked.
//!
//! So a session's reader holds at most: two packet heads (2 x [`HEAD`], 18 KiB), the two
//! tables (256 entries each, under 80 bytes apiece before their text, in hash tables of up to
//! 512 slots: about 70 KiB) and their paths and handles (256 KiB): about 350 KiB, where the
//! counts alone let it reach 2.4 MiB. The events it produces wait in the session's `FileLog`,
//! which the relay empties whenever 64 are waiting.
//!
//! Packets: `uint32 length, byte type, uint32 request-id, …` (INIT and VERSION carry a
//! version instead of an id). Client to target: OPEN 3 (path, pflags, attrs), CLOSE 4
//! (handle), READ 5 (handle, offset, length), WRITE 6 (handle, offset, data), SETSTAT 9 (path,
//! attrs), REMOVE 13, MKDIR 14, RMDIR 15, RENAME 18 (from, to), SYMLINK 20, EXTENDED 200
//! (`posix-rename@openssh.com`, `hardlink@openssh.com`, `lsetstat@openssh.com`). Target to
//! client: VERSION 2, STATUS 101 (code), HANDLE 102, DATA 103.

use portcullis_core::audit_event::FileOp;
use portcullis_core::Timestamp;

use super::files::{text, FileLog};

mod tables;

use tables::{OpenFile, Pending, Tables};
#[cfg(test)]
use tables::{MAX_HANDLES, MAX_PENDING, MAX_RETAINED};

/// The most of a packet kept to read its fields: two paths of OpenSSH's PATH_MAX and then
/// some. Longer paths are cut (and marked so).
const HEAD: usize = 9 * 1024;
/// Of a WRITE, what is kept: type, id, a handle of up to [`MAX_HANDLE`] bytes, the offset and
/// the data's length. The data itself is only counted.
const WRITE_HEAD: usize = 1 + 4 + 4 + MAX_HANDLE + 8 + 4;
/// Of a DATA answer: type, id and the data's length.
const DATA_HEAD: usize = 1 + 4 + 4;
/// The longest packet followed. OpenSSH's client and server both refuse over 256 KiB.
const MAX_PACKET: u32 = 1024 * 1024;
/// The longest handle tracked (OpenSSH's are 4 bytes; the protocol allows 256).
const MAX_HANDLE: usize = 256;

const INIT: u8 = 1;
const VERSION: u8 = 2;
const OPEN: u8 = 3;
const CLOSE: u8 = 4;
const READ: u8 = 5;
const WRITE: u8 = 6;
const SETSTAT: u8 = 9;
const FSETSTAT: u8 = 10;
const REMOVE: u8 = 13;
const MKDIR: u8 = 14;
const RMDIR: u8 = 15;
const RENAME: u8 = 18;
const SYMLINK: u8 = 20;
const STATUS: u8 = 101;
const HANDLE: u8 = 102;
const DATA: u8 = 103;
const EXTENDED: u8 = 200;

/// The SFTP stream of one session, both directions.
#[derive(Debug, Default)]
pub(crate) struct SftpTap {
    to_target: Packets,
    to_client: Packets,
    /// Requests waiting for their answer, and files open.
    tables: Tables,
    log: FileLog,
    abandoned: bool,
}

/// Why the stream is no longer followed.
#[derive(Debug)]
struct Abandon(String);

impl SftpTap {
    pub fn client_sent(&mut self, data: &[u8], now: &dyn Fn() -> Timestamp) {
        self.feed(true, data, now);
    }

    pub fn target_sent(&mut self, data: &[u8], now: &dyn Fn() -> Timestamp) {
        self.feed(false, data, now);
    }

    pub fn log(&mut self) -> &mut FileLog {
        &mut self.log
    }

    /// The session ended: files still open are reported closed with what went through them.
    pub fn finish(&mut self, at: Timestamp) {
        self.close_all(at, "session ended");
    }

    fn feed(&mut self, by_client: bool, mut data: &[u8], now: &dyn Fn() -> Timestamp) {
        while !self.abandoned && !data.is_empty() {
            let packets = if by_client {
                &mut self.to_target
            } else {
                &mut self.to_client
            };
            let step = packets.take(data);
            data = &data[step.used..];
            let result = match step.done {
                Done::No => Ok(()),
                Done::Packet => {
                    let (head, len) = (std::mem::take(&mut packets.head), packets.len);
                    let r = if by_client {
                        self.request(&head, len)
                    } else {
                        self.answer(&head, len, now)
                    };
                    // The buffer goes back for the next packet: no allocation per packet.
                    let packets = if by_client {
                        &mut self.to_target
                    } else {
                        &mut self.to_client
                    };
                    packets.head = head;
                    packets.head.clear();
                    r
                }
                Done::Bad(why) => Err(Abandon(why)),
            };
            if let Err(Abandon(why)) = result {
                self.abandon(now(), why);
            }
        }
    }

    /// Stop following the stream: one event saying why, the files open reported closed as
    /// they stand, and the memory given back.
    fn abandon(&mut self, at: Timestamp, why: String) {
        self.abandoned = true;
        // Debug-quoted: `why` quotes bytes of the stream.
        tracing::warn!("sftp stream no longer followed: {why:?}");
        self.log.push(at, FileOp::SftpAbandoned { why }, None);
        self.close_all(at, "parse abandoned");
        self.tables = Tables::default();
        self.to_target = Packets::default();
        self.to_client = Packets::default();
    }

    fn close_all(&mut self, at: Timestamp, outcome: &str) {
        let mut open: Vec<OpenFile> = self.tables.close_all();
        open.sort_by(|a, b| a.path.cmp(&b.path));
        for f in open {
            self.log.push(
                at,
                FileOp::Close {
                    path: f.path,
                    bytes_read: f.read,
                    bytes_written: f.written,
                },
                Some(outcome.to_string()),
            );
        }
    }

    /// A request from the client.
    fn request(&mut self, head: &[u8], len: u32) -> Result<(), Abandon> {
        let mut r = Reader::new(head, len);
        let kind = r.u8()?;
        if kind == INIT {
            return Ok(());
        }
        let id = r.u32()?;
        let pending = match kind {
            OPEN => {
                let path = r.path()?;
                let flags = open_flags(r.u32()?);
                Pending::Open { path, flags }
            }
            CLOSE | READ => {
                let handle = r.handle()?;
                if !self.tables.is_open(&handle) {
                    return Ok(());
                }
                match kind {
                    CLOSE => Pending::Close { handle },
                    _ => Pending::Read { handle },
                }
            }
            WRITE => {
                let handle = r.handle()?;
                if !self.tables.is_open(&handle) {
                    return Ok(());
                }
                let _offset = r.u64()?;
                // The data's own length, but never more than the packet holds.
                let fixed = 1 + 4 + 4 + handle.len() as u64 + 8 + 4;
                let len = u64::from(r.u32()?).min(u64::from(len).saturating_sub(fixed));
                Pending::Write { handle, len }
            }
            SETSTAT => Pending::Op(FileOp::Setstat { path: r.path()? }),
            // chmod, chown or truncate through an open file: the file's path, as SETSTAT.
            FSETSTAT => {
                let handle = r.handle()?;
                let Some(file) = self.tables.file(&handle) else {
                    return Ok(());
                };
                Pending::Op(FileOp::Setstat {
                    path: file.path.clone(),
                })
            }
            REMOVE => Pending::Op(FileOp::Remove { path: r.path()? }),
            MKDIR => Pending::Op(FileOp::Mkdir { path: r.path()? }),
            RMDIR => Pending::Op(FileOp::Rmdir { path: r.path()? }),
            RENAME => {
                let from = r.path()?;
                Pending::Op(FileOp::Rename {
                    from,
                    to: r.path()?,
                })
            }
            // OpenSSH sends the target of the link first, then the link (the reverse of the
            // draft); every OpenSSH client and server agree on it.
            SYMLINK => {
                let points_to = r.path()?;
                Pending::Op(FileOp::Symlink {
                    link: r.path()?,
                    points_to,
                })
            }
            EXTENDED => match r.string()?.0 {
                b"posix-rename@openssh.com" => {
                    let from = r.path()?;
                    Pending::Op(FileOp::Rename {
                        from,
                        to: r.path()?,
                    })
                }
                b"hardlink@openssh.com" => {
                    let points_to = r.path()?;
                    Pending::Op(FileOp::Hardlink {
                        link: r.path()?,
                        points_to,
                    })
                }
                b"lsetstat@openssh.com" => Pending::Op(FileOp::Setstat { path: r.path()? }),
                _ => return Ok(()),
            },
            // Reads of the file system (stat, listings, realpath, …) change nothing.
            _ => return Ok(()),
        };
        self.tables.wait_for(id, pending)
    }

    /// An answer from the target.
    fn answer(
        &mut self,
        head: &[u8],
        len: u32,
        now: &dyn Fn() -> Timestamp,
    ) -> Result<(), Abandon> {
        let mut r = Reader::new(head, len);
        let kind = r.u8()?;
        if kind == VERSION {
            let version = r.u32()?;
            if version != 3 {
                return Err(Abandon(format!(
                    "SFTP version {version} is not followed (only 3)"
                )));
            }
            return Ok(());
        }
        let id = r.u32()?;
        let Some(pending) = self.tables.answered(id) else {
            return Ok(());
        };
        match (kind, pending) {
            (HANDLE, Pending::Open { path, flags }) => {
                let handle = r.handle()?;
                let file = OpenFile {
                    path: path.clone(),
                    read: 0,
                    written: 0,
                };
                self.tables.open(handle, file)?;
                self.log
                    .push(now(), FileOp::Open { path, flags }, Some("ok".into()));
            }
            (DATA, Pending::Read { handle }) => {
                let got = u64::from(r.u32()?).min(u64::from(len).saturating_sub(9));
                if let Some(f) = self.tables.file_mut(&handle) {
                    f.read += got;
                }
            }
            (STATUS, pending) => {
                let code = r.u32()?;
                self.status(pending, code, now);
            }
            // An answer of another shape than the request asks for: nothing to record.
            _ => {}
        }
        Ok(())
    }

    /// The target's STATUS answer to `pending`.
    fn status(&mut self, pending: Pending, code: u32, now: &dyn Fn() -> Timestamp) {
        let outcome = status_name(code);
        match pending {
            Pending::Open { path, flags } => {
                self.log
                    .push(now(), FileOp::Open { path, flags }, Some(outcome.into()))
            }
            Pending::Close { handle } => {
                // Closed or not, the handle is done with.
                if let Some(f) = self.tables.close(&handle) {
                    self.log.push(
                        now(),
                        FileOp::Close {
                            path: f.path,
                            bytes_read: f.read,
                            bytes_written: f.written,
                        },
                        Some(outcome.into()),
                    );
                }
            }
            Pending::Write { handle, len } => {
                if code == 0 {
                    if let Some(f) = self.tables.file_mut(&handle) {
                        f.written += len;
                    }
                }
            }
            // The end of the file, or an error: nothing was read.
            Pending::Read { .. } => {}
            Pending::Op(op) => self.log.push(now(), op, Some(outcome.into())),
        }
    }
}

/// SSH_FX_* as the audit log names them.
fn status_name(code: u32) -> &'static str {
    match code {
        0 => "ok",
        1 => "end of file",
        2 => "no such file",
        3 => "permission denied",
        4 => "failure",
        5 => "bad message",
        6 => "no connection",
        7 => "connection lost",
        8 => "operation unsupported",
        _ => "error",
    }
}

/// SSH_FXF_* as `read,write,…`.
fn open_flags(pflags: u32) -> String {
    const NAMES: [(u32, &str); 6] = [
        (0x01, "read"),
        (0x02, "write"),
        (0x04, "append"),
        (0x08, "create"),
        (0x10, "truncate"),
        (0x20, "exclusive"),
    ];
    NAMES
        .iter()
        .filter(|(bit, _)| pflags & bit != 0)
        .map(|(_, name)| *name)
        .collect::<Vec<_>>()
        .join(",")
}

/// Cuts one direction of the stream into packets, in whatever pieces it comes.
#[derive(Debug, Default)]
struct Packets {
    /// Of the length field, the bytes seen so far (up to 4) while no packet is under way.
    len_bytes: Vec<u8>,
    /// The packet under way: its length, and how much of it is still to come.
    len: u32,
    remaining: u32,
    /// Its first bytes, as many as its type needs (see [`keep_for`]).
    head: Vec<u8>,
    under_way: bool,
}

/// What [`Packets::take`] did with a piece of the stream.
struct Step {
    /// Bytes of the piece it took: up to the end of a packet at most.
    used: usize,
    done: Done,
}

enum Done {
    /// No packet ended in what it took.
    No,
    /// A packet ended: its head is in `head`, its length in `len`.
    Packet,
    /// The stream cannot be SFTP from here.
    Bad(String),
}

/// How much of a packet of `kind` to keep.
fn keep_for(kind: u8) -> usize {
    match kind {
        WRITE => WRITE_HEAD,
        DATA => DATA_HEAD,
        _ => HEAD,
    }
}

impl Packets {
    fn take(&mut self, data: &[u8]) -> Step {
        if !self.under_way {
            let want = 4 - self.len_bytes.len();
            let used = want.min(data.len());
            self.len_bytes.extend_from_slice(&data[..used]);
            let Ok(field) = <[u8; 4]>::try_from(self.len_bytes.as_slice()) else {
                return Step {
                    used,
                    done: Done::No,
                };
            };
            self.len_bytes.clear();
            let len = u32::from_be_bytes(field);
            if len == 0 || len > MAX_PACKET {
                return Step {
                    used,
                    done: Done::Bad(format!("a packet of {len} bytes")),
                };
            }
            (self.len, self.remaining, self.under_way) = (len, len, true);
            self.head.clear();
            return Step {
                used,
                done: Done::No,
            };
        }
        let used = data.len().min(self.remaining as usize);
        let keep = match self.head.first() {
            Some(&kind) => keep_for(kind),
            None => data.first().map_or(HEAD, |&kind| keep_for(kind)),
        };
        let room = keep.saturating_sub(self.head.len()).min(used);
        self.head.extend_from_slice(&data[..room]);
        // `used` is at most `remaining`, a u32.
        self.remaining -= used as u32;
        if self.remaining > 0 {
            return Step {
                used,
                done: Done::No,
            };
        }
        self.under_way = false;
        Step {
            used,
            done: Done::Packet,
        }
    }
}

/// Checked reads from a packet's head. Running out is "the packet is not what it claims":
/// the stream is abandoned. Except past a string cut by the head's bound (a path longer than
/// anyone's PATH_MAX): that string is kept cut, and what follows it reads as zeros and empty
/// strings, since it was not kept.
struct Reader<'a> {
    rest: &'a [u8],
    /// Whether `rest` runs to the packet's end (nothing of it was left out).
    whole: bool,
    cut: bool,
}

impl<'a> Reader<'a> {
    /// A reader of `head`, the first bytes of a packet of `len` bytes.
    fn new(head: &'a [u8], len: u32) -> Reader<'a> {
        Reader {
            rest: head,
            whole: head.len() as u64 == u64::from(len),
            cut: false,
        }
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], Abandon> {
        let Some((first, rest)) = self.rest.split_first_chunk::<N>() else {
            if self.cut {
                return Ok([0; N]);
            }
            return Err(Abandon("a packet shorter than its fields".into()));
        };
        self.rest = rest;
        Ok(*first)
    }

    fn u8(&mut self) -> Result<u8, Abandon> {
        Ok(self.bytes::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, Abandon> {
        Ok(u32::from_be_bytes(self.bytes()?))
    }

    fn u64(&mut self) -> Result<u64, Abandon> {
        Ok(u64::from_be_bytes(self.bytes()?))
    }

    /// A string, and whether it was cut short by the end of what was kept of the packet.
    fn string(&mut self) -> Result<(&'a [u8], bool), Abandon> {
        if self.cut {
            return Ok((&[], true));
        }
        let len = self.u32()? as usize;
        if len <= self.rest.len() {
            let (s, rest) = self.rest.split_at(len);
            self.rest = rest;
            Ok((s, false))
        } else if self.whole {
            Err(Abandon(format!(
                "a string of {len} bytes in a packet with {} left",
                self.rest.len()
            )))
        } else {
            let s = self.rest;
            self.rest = &[];
            self.cut = true;
            Ok((s, true))
        }
    }

    fn path(&mut self) -> Result<String, Abandon> {
        let (bytes, cut) = self.string()?;
        Ok(text(bytes, cut))
    }

    fn handle(&mut self) -> Result<Vec<u8>, Abandon> {
        match self.string()? {
            (h, false) if h.len() <= MAX_HANDLE => Ok(h.to_vec()),
            (h, _) => Err(Abandon(format!("a handle of {} bytes", h.len()))),
        }
    }
}

#[cfg(test)]
mod tests;
