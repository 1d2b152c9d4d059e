//! Session recordings at rest: one asciicast file per session in a directory, written whole
//! (temporary file, fsync, rename) so a reader never sees half of one. Kept out of sled: a
//! recording can be gigabytes (a raw data recording of a large copy), which is also why one
//! arriving is written as it comes ([`Incoming`]) instead of being held in memory.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

#[derive(Debug, Clone)]
pub struct Recordings {
    dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
#[error("recording {path}: {source}")]
pub struct RecordingError {
    pub path: String,
    pub source: std::io::Error,
}

fn safe(session: &str) -> bool {
    !session.is_empty()
        && session
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !session.starts_with('.')
}

impl Recordings {
    pub fn new(dir: &Path) -> Recordings {
        Recordings {
            dir: dir.to_path_buf(),
        }
    }

    fn path_as(&self, session: &str, format: &str) -> Result<PathBuf, RecordingError> {
        if !safe(session) || !matches!(format, "cast" | "data") {
            return Err(RecordingError {
                path: session.to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "not a session id or recording format",
                ),
            });
        }
        Ok(self.dir.join(format!("{session}.{format}")))
    }

    fn path(&self, session: &str) -> Result<PathBuf, RecordingError> {
        let cast = self.path_as(session, "cast")?;
        let data = self.path_as(session, "data")?;
        Ok(if !cast.exists() && data.exists() {
            data
        } else {
            cast
        })
    }

    /// Start receiving a recording in `format` (`cast` or `data`): its bytes go to a temporary
    /// file beside the final one as they arrive, hashed on the way.
    ///
    /// Each arrival has a temporary file of its own: a gateway's retry can overlap an earlier
    /// attempt still being received, and neither may write into, rename or remove the other's.
    pub fn receive(&self, session: &str, format: &str) -> Result<Incoming, RecordingError> {
        static ARRIVALS: AtomicU64 = AtomicU64::new(0);
        let path = self.path_as(session, format)?;
        let n = ARRIVALS.fetch_add(1, Ordering::Relaxed);
        let tmp = path.with_extension(format!("{format}.{}-{n}{PARTIAL}", std::process::id()));
        let err = |source| RecordingError {
            path: tmp.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(err)?;
        let file = std::fs::File::options()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(err)?;
        Ok(Incoming {
            dir: self.dir.clone(),
            session: session.to_string(),
            path,
            tmp,
            file: Some(file),
            kept: false,
            hasher: Sha256::new(),
            size: 0,
        })
    }

    /// Remove a session's recording (either format); whether there was one.
    pub fn remove(&self, session: &str) -> Result<bool, RecordingError> {
        let mut removed = false;
        for format in ["cast", "data"] {
            let path = self.path_as(session, format)?;
            match std::fs::remove_file(&path) {
                Ok(()) => removed = true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(RecordingError {
                        path: path.display().to_string(),
                        source,
                    })
                }
            }
        }
        Ok(removed)
    }

    /// Remove what arrivals cut short by a crash left behind; for start-up, before any
    /// arrives. Returns how many went.
    pub fn remove_partial(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(PARTIAL))
            .filter(|e| std::fs::remove_file(e.path()).is_ok())
            .count()
    }

    /// Where a recording is, if here, and whether it is a raw data stream (`.data`) rather
    /// than an asciicast: for readers that take it in pieces.
    pub fn locate(&self, session: &str) -> Result<Option<(PathBuf, bool)>, RecordingError> {
        let path = self.path(session)?;
        let raw = path.extension().is_some_and(|e| e == "data");
        Ok(path.exists().then_some((path, raw)))
    }

    /// A recording's SHA-256 in hex, if here, read in pieces: a recording can be larger
    /// than the memory of whoever checks it.
    pub fn sha256(&self, session: &str) -> Result<Option<String>, RecordingError> {
        let path = self.path(session)?;
        file_sha256(&path).map_err(|source| RecordingError {
            path: path.display().to_string(),
            source,
        })
    }
}

/// A recording on its way in. Nothing is in place until [`Incoming::keep`] is called with
/// the hash the recording was announced with; dropped before that, the partial file goes.
#[derive(Debug)]
pub struct Incoming {
    dir: PathBuf,
    path: PathBuf,
    tmp: PathBuf,
    session: String,
    /// `None` once closed for keeping.
    file: Option<std::fs::File>,
    /// Renamed into place: nothing to remove.
    kept: bool,
    hasher: Sha256,
    size: u64,
}

impl Incoming {
    fn err(&self, source: std::io::Error) -> RecordingError {
        RecordingError {
            path: format!("of {}", self.session),
            source,
        }
    }

    /// Append the next bytes.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), RecordingError> {
        let written = match self.file.as_mut() {
            Some(f) => f.write_all(bytes),
            None => Err(std::io::Error::other("recording already kept")),
        };
        written.map_err(|e| self.err(e))?;
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
        Ok(())
    }

    /// How many bytes have arrived.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Put the recording in place durably (fsync, rename, fsync of the directory), if what
    /// arrived is what was announced: `sha256` in hex and `size` in bytes. Otherwise nothing
    /// is kept and the error says what differs.
    pub fn keep(mut self, sha256: &str, size: u64) -> Result<(), RecordingError> {
        let found = hex::encode(self.hasher.clone().finalize());
        if found != sha256 || self.size != size {
            return Err(self.err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "arrived damaged: {} bytes with SHA-256 {found}, announced {size} bytes with {sha256}",
                    self.size
                ),
            )));
        }
        let Some(file) = self.file.take() else {
            return Err(self.err(std::io::Error::other("recording already kept")));
        };
        file.sync_all().map_err(|e| self.err(e))?;
        drop(file);
        // Never over a recording already kept: a link fails where a rename would replace.
        match std::fs::hard_link(&self.tmp, &self.path) {
            Ok(()) => {
                let _ = std::fs::remove_file(&self.tmp);
                self.kept = true;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // The same recording again (a retry whose acknowledgement was lost) is fine;
                // another one is refused, and its temporary file goes on drop.
                if file_sha256(&self.path).map_err(|e| self.err(e))?.as_deref() != Some(&found) {
                    return Err(self.err(std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        "another recording of this session is kept already; it is never replaced",
                    )));
                }
                return Ok(());
            }
            Err(e) => return Err(self.err(e)),
        }
        if let Ok(d) = std::fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

/// SHA-256 (hex) of a file read in pieces; `None` if it does not exist.
fn file_sha256(path: &Path) -> std::io::Result<Option<String>> {
    use std::io::Read as _;
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let (mut hasher, mut buf) = (Sha256::new(), vec![0u8; 1024 * 1024]);
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(Some(hex::encode(hasher.finalize())))
}

impl Drop for Incoming {
    /// Not kept (cut short, refused, or failed on the way in): its temporary file goes.
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// How the temporary file of an arriving recording ends.
const PARTIAL: &str = ".partial";

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    /// A recording stored whole, as it would arrive.
    fn put(r: &Recordings, session: &str, bytes: &[u8]) -> Result<(), RecordingError> {
        let mut incoming = r.receive(session, "cast")?;
        incoming.write(bytes)?;
        incoming.keep(&sha(bytes), bytes.len() as u64)
    }

    /// A recording's bytes, if here.
    fn get(r: &Recordings, session: &str) -> Result<Option<Vec<u8>>, RecordingError> {
        Ok(r.locate(session)?
            .map(|(path, _)| std::fs::read(path).unwrap()))
    }

    #[test]
    fn put_get_and_refuse_paths() {
        let dir = tempfile::tempdir().unwrap();
        let r = Recordings::new(&dir.path().join("rec"));
        put(&r, "gw-1-ab-1", b"cast").unwrap();
        assert_eq!(get(&r, "gw-1-ab-1").unwrap().unwrap(), b"cast");
        assert!(get(&r, "gw-1-ab-2").unwrap().is_none());
        assert!(put(&r, "../etc/passwd", b"x").is_err());
        assert!(get(&r, "a/b").is_err());
    }

    #[test]
    fn an_incoming_recording_is_kept_only_whole_and_as_announced() {
        let dir = tempfile::tempdir().unwrap();
        let r = Recordings::new(&dir.path().join("rec"));
        let whole = b"first part, second part".to_vec();

        let mut ok = r.receive("gw-1-ab-1", "data").unwrap();
        ok.write(&whole[..11]).unwrap();
        assert!(
            get(&r, "gw-1-ab-1").unwrap().is_none(),
            "not in place before it is kept"
        );
        ok.write(&whole[11..]).unwrap();
        assert_eq!(ok.size(), whole.len() as u64);
        ok.keep(&sha(&whole), whole.len() as u64).unwrap();
        assert_eq!(get(&r, "gw-1-ab-1").unwrap().unwrap(), whole);
        assert_eq!(r.sha256("gw-1-ab-1").unwrap(), Some(sha(&whole)));
        assert_eq!(r.sha256("gw-1-ab-9").unwrap(), None);
        let (at, raw) = r.locate("gw-1-ab-1").unwrap().unwrap();
        assert!(raw && at.ends_with("gw-1-ab-1.data"));
        assert!(r.locate("gw-1-ab-9").unwrap().is_none());

        // A damaged arrival is refused and leaves nothing behind, not even its temporary file.
        let mut bad = r.receive("gw-1-ab-2", "cast").unwrap();
        bad.write(b"first part, second pArt").unwrap();
        let e = bad.keep(&sha(&whole), whole.len() as u64).unwrap_err();
        assert!(e.to_string().contains("arrived damaged"), "{e}");
        let short = r.receive("gw-1-ab-3", "cast").unwrap();
        assert!(short.keep(&sha(&whole), whole.len() as u64).is_err());
        // An arrival cut off (dropped) leaves nothing either.
        let mut cut = r.receive("gw-1-ab-4", "cast").unwrap();
        cut.write(b"first").unwrap();
        drop(cut);
        // Two arrivals of the same recording at once (a retry overlapping the first attempt)
        // each write their own file: the first one kept is whole, the other's end removes
        // nothing of it.
        let mut a = r.receive("gw-1-ab-5", "data").unwrap();
        let mut b = r.receive("gw-1-ab-5", "data").unwrap();
        a.write(&whole).unwrap();
        b.write(&whole[..5]).unwrap();
        a.keep(&sha(&whole), whole.len() as u64).unwrap();
        drop(b);
        assert_eq!(get(&r, "gw-1-ab-5").unwrap().unwrap(), whole);
        std::fs::remove_file(dir.path().join("rec/gw-1-ab-5.data")).unwrap();
        // What a crash leaves is cleared at start-up.
        std::fs::write(dir.path().join("rec/gw-1-ab-6.cast.1-0.partial"), b"x").unwrap();
        assert_eq!(r.remove_partial(), 1);
        let left: Vec<_> = std::fs::read_dir(dir.path().join("rec"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, vec!["gw-1-ab-1.data".to_string()]);
        assert!(r.receive("../x", "cast").is_err());
    }
}
