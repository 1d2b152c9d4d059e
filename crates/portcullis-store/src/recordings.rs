//! Session recordings at rest: one asciicast file per session in a directory, written whole
//! (temporary file, fsync, rename) so a reader never sees half of one. Kept out of sled: a
//! recording can be tens of megabytes.

use std::io::Write as _;
use std::path::{Path, PathBuf};

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

    /// Store a pty session's asciicast durably.
    pub fn put(&self, session: &str, bytes: &[u8]) -> Result<(), RecordingError> {
        self.put_as(session, "cast", bytes)
    }

    /// Store a recording in `format` (`cast` or `data`) durably.
    pub fn put_as(&self, session: &str, format: &str, bytes: &[u8]) -> Result<(), RecordingError> {
        let path = self.path_as(session, format)?;
        let err = |source| RecordingError {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(err)?;
        let tmp = path.with_extension(format!("{format}.tmp"));
        let mut f = std::fs::File::create(&tmp).map_err(err)?;
        f.write_all(bytes).map_err(err)?;
        f.sync_all().map_err(err)?;
        std::fs::rename(&tmp, &path).map_err(err)?;
        if let Ok(d) = std::fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// A recording's bytes (the cast, or the raw stream of a channel without a pty), if here.
    pub fn get(&self, session: &str) -> Result<Option<Vec<u8>>, RecordingError> {
        let path = self.path(session)?;
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(RecordingError {
                path: path.display().to_string(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_and_refuse_paths() {
        let dir = tempfile::tempdir().unwrap();
        let r = Recordings::new(&dir.path().join("rec"));
        r.put("gw-1-ab-1", b"cast").unwrap();
        assert_eq!(r.get("gw-1-ab-1").unwrap().unwrap(), b"cast");
        assert!(r.get("gw-1-ab-2").unwrap().is_none());
        assert!(r.put("../etc/passwd", b"x").is_err());
        assert!(r.get("a/b").is_err());
    }
}
