//! Raw data streams (`portcullis-data v1`, recorded for channels without a pty) turned into
//! asciicast v2, whole or as the bytes come.

/// Render the raw data stream of a channel without a pty (`portcullis-data v1`) as asciicast
/// v2, so `audit export` and `audit replay` work for every recorded session: stdout and stderr
/// as output events, what the client sent as input events. Whole; [`RawCast`] does the same
/// in pieces.
pub fn raw_to_cast(raw: &[u8], title: &str) -> Result<String, String> {
    let mut cast = RawCast::new(title);
    let mut out = String::new();
    cast.push(raw, &mut out)?;
    cast.finish()?;
    Ok(out)
}

/// Turns a raw data stream into an asciicast as its bytes come, in any pieces: a data
/// recording can be far larger than memory, so `audit export` converts it as it reads it.
#[derive(Debug)]
pub struct RawCast {
    title: String,
    /// Bytes of a record (or of the leading magic) not complete yet.
    pending: Vec<u8>,
    /// The magic line was checked and the header written.
    started: bool,
}

const RAW_MAGIC: &[u8] = b"portcullis-data v1\n";

/// The largest record a data stream is read with: a record is what one SSH data message
/// carried, so a larger length is damage, and reading it would hold it all in memory.
pub const RAW_MAX_RECORD: usize = 16 * 1024 * 1024;

impl RawCast {
    pub fn new(title: &str) -> RawCast {
        RawCast {
            title: title.to_string(),
            pending: Vec::new(),
            started: false,
        }
    }

    /// Convert what `bytes` completes, appending the cast's lines to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut String) -> Result<(), String> {
        self.pending.extend_from_slice(bytes);
        let mut rest = self.pending.as_slice();
        if !self.started {
            if rest.len() < RAW_MAGIC.len() {
                return if RAW_MAGIC.starts_with(rest) {
                    Ok(())
                } else {
                    Err("not a portcullis data stream".into())
                };
            }
            rest = rest
                .strip_prefix(RAW_MAGIC)
                .ok_or("not a portcullis data stream")?;
            out.push_str(&format!(
                "{}\n",
                serde_json::json!({"version": 2, "width": 80, "height": 24, "title": self.title})
            ));
            self.started = true;
        }
        while rest.len() >= 9 {
            let stream = rest[0];
            let ms = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]);
            let len = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]) as usize;
            if len > RAW_MAX_RECORD {
                return Err(format!(
                    "data stream record of {len} bytes (the recorder writes at most one SSH message, far under {RAW_MAX_RECORD})"
                ));
            }
            let Some(data) = rest.get(9..9 + len) else {
                break;
            };
            let kind = if stream == 0 { "i" } else { "o" };
            let text = serde_json::to_string(&String::from_utf8_lossy(data)).unwrap_or_default();
            out.push_str(&format!(
                "[{:.3}, \"{kind}\", {text}]\n",
                f64::from(ms) / 1000.0
            ));
            rest = &rest[9 + len..];
        }
        let used = self.pending.len() - rest.len();
        self.pending.drain(..used);
        Ok(())
    }

    /// The stream ended: an error if it ended inside a record.
    pub fn finish(self) -> Result<(), String> {
        match (self.started, self.pending.len()) {
            (false, _) => Err("not a portcullis data stream".into()),
            (true, 0) => Ok(()),
            (true, n) if n < 9 => Err("data stream cut inside a record header".into()),
            (true, _) => Err("data stream cut inside a record".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_record_longer_than_any_message_is_damage_not_a_wait() {
        let mut raw = b"portcullis-data v1\n".to_vec();
        raw.extend_from_slice(&[1, 0, 0, 0, 5]);
        raw.extend_from_slice(&u32::MAX.to_be_bytes());
        let mut out = String::new();
        let e = RawCast::new("t").push(&raw, &mut out).unwrap_err();
        assert!(e.contains("record of 4294967295 bytes"), "{e}");
    }

    #[test]
    fn raw_streams_become_casts() {
        let mut raw = b"portcullis-data v1\n".to_vec();
        raw.extend_from_slice(&[1, 0, 0, 0, 5, 0, 0, 0, 2]);
        raw.extend_from_slice(b"hi");
        let cast = raw_to_cast(&raw, "t").unwrap();
        assert!(cast.lines().nth(1).unwrap().contains("\"o\", \"hi\""));
        assert!(raw_to_cast(&raw[..raw.len() - 1], "t").is_err());
    }

    proptest! {
        /// In pieces of any size, the same cast (or the same refusal) as whole.
        #[test]
        fn pieces_make_the_same_cast(
            records in proptest::collection::vec((0u8..3, any::<u32>(), proptest::collection::vec(any::<u8>(), 0..40)), 0..8),
            cut_at in proptest::collection::vec(0usize..400, 0..6),
            chop in 0usize..10,
        ) {
            let mut raw = b"portcullis-data v1\n".to_vec();
            for (stream, ms, data) in &records {
                raw.push(*stream);
                raw.extend_from_slice(&ms.to_be_bytes());
                raw.extend_from_slice(&(data.len() as u32).to_be_bytes());
                raw.extend_from_slice(data);
            }
            raw.truncate(raw.len().saturating_sub(chop));
            let whole = raw_to_cast(&raw, "t");
            let mut cuts: Vec<usize> = cut_at.into_iter().map(|c| c.min(raw.len())).collect();
            cuts.sort_unstable();
            let mut cast = RawCast::new("t");
            let (mut out, mut from, mut failed) = (String::new(), 0, None);
            for c in cuts.into_iter().chain([raw.len()]) {
                if let Err(e) = cast.push(&raw[from..c], &mut out) {
                    failed = Some(e);
                    break;
                }
                from = c;
            }
            let pieces = match failed {
                Some(e) => Err(e),
                None => cast.finish().map(|()| out),
            };
            prop_assert_eq!(whole, pieces);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut raw = b"portcullis-data v1\n".to_vec();
            raw.extend_from_slice(&bytes);
            let _ = raw_to_cast(&raw, "t");
            let _ = raw_to_cast(&bytes, "t");
        }
    }
}
