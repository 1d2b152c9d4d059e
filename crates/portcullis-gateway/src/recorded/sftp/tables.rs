//! What the SFTP reader remembers between packets: the requests waiting for their answer and
//! the files open, bounded in count ([`MAX_PENDING`], [`MAX_HANDLES`]) and in the bytes of the
//! paths and handles they keep ([`MAX_RETAINED`]). Counts alone did not bound the bytes: a path
//! is kept up to 1 KiB of the stream (`files::MAX_PATH`), which grows to 3 KiB of text when
//! none of it is UTF-8 (each byte a U+FFFD), and a rename or a link keeps two; 256 such
//! requests and 256 open files held about 2.4 MiB per session.

use std::collections::HashMap;

use portcullis_core::audit_event::FileOp;

use super::Abandon;

/// Requests waiting for the target's answer. OpenSSH's client keeps 64 in flight by default.
pub(super) const MAX_PENDING: usize = 256;
/// Files open at once.
pub(super) const MAX_HANDLES: usize = 256;
/// Bytes of the paths and handles kept by waiting requests and open files together. OpenSSH's
/// 64 requests in flight are reads and writes (a handle of 4 bytes each), and a few opens:
/// 42 renames of two paths of the longest kept would still fit.
pub(super) const MAX_RETAINED: usize = 256 * 1024;

/// A request whose answer decides its event.
#[derive(Debug)]
pub(super) enum Pending {
    Open { path: String, flags: String },
    Close { handle: Vec<u8> },
    Read { handle: Vec<u8> },
    Write { handle: Vec<u8>, len: u64 },
    Op(FileOp),
}

impl Pending {
    /// The bytes of text it keeps.
    fn retained(&self) -> usize {
        match self {
            Pending::Open { path, flags } => path.len() + flags.len(),
            Pending::Close { handle }
            | Pending::Read { handle }
            | Pending::Write { handle, .. } => handle.len(),
            Pending::Op(op) => match op {
                FileOp::Setstat { path }
                | FileOp::Remove { path }
                | FileOp::Mkdir { path }
                | FileOp::Rmdir { path } => path.len(),
                FileOp::Rename { from, to } => from.len() + to.len(),
                FileOp::Symlink { link, points_to } | FileOp::Hardlink { link, points_to } => {
                    link.len() + points_to.len()
                }
                // Not requests: they never wait for an answer.
                _ => 0,
            },
        }
    }
}

#[derive(Debug)]
pub(super) struct OpenFile {
    pub path: String,
    pub read: u64,
    pub written: u64,
}

/// Requests waiting and files open, and the bytes of text they keep.
#[derive(Debug, Default)]
pub(super) struct Tables {
    /// Requests sent and not yet answered, by request id.
    pub(super) pending: HashMap<u32, Pending>,
    /// Open files by the target's handle.
    pub(super) handles: HashMap<Vec<u8>, OpenFile>,
    /// Bytes of the paths and handles in both.
    pub(super) retained: usize,
}

impl Tables {
    /// Keep `p` until the answer to request `id`.
    pub fn wait_for(&mut self, id: u32, p: Pending) -> Result<(), Abandon> {
        if self.pending.len() >= MAX_PENDING && !self.pending.contains_key(&id) {
            return Err(Abandon(format!(
                "over {MAX_PENDING} requests waiting for an answer"
            )));
        }
        self.keep(p.retained())?;
        // An id still waiting for its answer, used again: which answer is whose can no longer
        // be told, and guessing would let one operation hide behind another. Say so instead.
        if let Some(old) = self.pending.insert(id, p) {
            self.retained = self.retained.saturating_sub(old.retained());
            return Err(Abandon(format!(
                "request id {id} used again before its answer"
            )));
        }
        Ok(())
    }

    /// The request answered by `id`, no longer waiting.
    pub fn answered(&mut self, id: u32) -> Option<Pending> {
        let p = self.pending.remove(&id)?;
        self.retained = self.retained.saturating_sub(p.retained());
        Some(p)
    }

    /// A file opened under `handle`.
    pub fn open(&mut self, handle: Vec<u8>, file: OpenFile) -> Result<(), Abandon> {
        if self.handles.len() >= MAX_HANDLES && !self.handles.contains_key(&handle) {
            return Err(Abandon(format!("over {MAX_HANDLES} files open")));
        }
        // A handle given out again while open: the file it named is replaced, as before.
        self.close(&handle);
        self.keep(handle.len() + file.path.len())?;
        self.handles.insert(handle, file);
        Ok(())
    }

    /// The file `handle` named, closed.
    pub fn close(&mut self, handle: &[u8]) -> Option<OpenFile> {
        let f = self.handles.remove(handle)?;
        self.retained = self.retained.saturating_sub(handle.len() + f.path.len());
        Some(f)
    }

    pub fn is_open(&self, handle: &[u8]) -> bool {
        self.handles.contains_key(handle)
    }

    pub fn file(&self, handle: &[u8]) -> Option<&OpenFile> {
        self.handles.get(handle)
    }

    pub fn file_mut(&mut self, handle: &[u8]) -> Option<&mut OpenFile> {
        self.handles.get_mut(handle)
    }

    /// Every file still open, closed, in no particular order.
    pub fn close_all(&mut self) -> Vec<OpenFile> {
        let files: Vec<OpenFile> = std::mem::take(&mut self.handles).into_values().collect();
        self.retained = self.pending.values().map(Pending::retained).sum();
        files
    }

    /// Count `bytes` more kept, or refuse them past [`MAX_RETAINED`].
    fn keep(&mut self, bytes: usize) -> Result<(), Abandon> {
        let total = self.retained.saturating_add(bytes);
        if total > MAX_RETAINED {
            return Err(Abandon(format!(
                "the paths and handles of requests waiting and files open would hold {total} bytes, over {MAX_RETAINED}"
            )));
        }
        self.retained = total;
        Ok(())
    }
}
