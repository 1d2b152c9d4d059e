//! The versioned binary codec shared by the store and the wire.
//!
//! Every stored record and every streamed message is `[FORMAT_VERSION] ++ bincode(value)`,
//! decoded with a size limit (FIELD-NOTES: bincode must never trust a length read from
//! untrusted bytes). Stream frames add a 4-byte big-endian length in front.

use bincode::Options;
use serde::{de::DeserializeOwned, Serialize};

/// The format version written in front of every record and message.
pub const FORMAT_VERSION: u8 = 1;

/// The largest record or frame body we ever decode.
pub const MAX_RECORD_BYTES: u64 = 16 * 1024 * 1024;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("empty record")]
    Empty,
    #[error("unsupported format version {found} (this build reads version {FORMAT_VERSION})")]
    Version { found: u8 },
    #[error("record of {len} bytes is over the {MAX_RECORD_BYTES}-byte limit")]
    TooLarge { len: u64 },
    #[error("malformed record: {0}")]
    Malformed(String),
    #[error("{0} trailing bytes after the record")]
    Trailing(usize),
}

fn options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_limit(MAX_RECORD_BYTES)
        .with_fixint_encoding()
        .reject_trailing_bytes()
}

/// Encode a value as `[version] ++ bincode`.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![FORMAT_VERSION];
    // Serialising our own in-memory types cannot fail short of the size limit, which our
    // records never reach; an empty body then fails to decode instead of panicking here.
    if let Ok(body) = options().serialize(value) {
        out.extend_from_slice(&body);
    }
    out
}

/// Decode `[version] ++ bincode`, refusing unknown versions, oversized input and trailing bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    if version != FORMAT_VERSION {
        return Err(CodecError::Version { found: version });
    }
    if body.len() as u64 > MAX_RECORD_BYTES {
        return Err(CodecError::TooLarge {
            len: body.len() as u64,
        });
    }
    options().deserialize(body).map_err(|e| match *e {
        bincode::ErrorKind::SizeLimit => CodecError::TooLarge {
            len: body.len() as u64,
        },
        other => CodecError::Malformed(other.to_string()),
    })
}

/// Bytes of the body without the version prefix: what gets signed and hashed.
pub fn body_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    options().serialize(value).unwrap_or_default()
}

/// Decode a body written by [`body_bytes`].
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, CodecError> {
    options()
        .deserialize(body)
        .map_err(|e| CodecError::Malformed(e.to_string()))
}

/// Frame a message for a byte stream: 4-byte big-endian length, then the record.
pub fn frame(record: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(record.len() + 4);
    out.extend_from_slice(&(record.len() as u32).to_be_bytes());
    out.extend_from_slice(record);
    out
}

/// Incremental splitter of length-delimited frames from a byte stream.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed bytes as they arrive.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame's record, if one has arrived. An announced length over
    /// [`MAX_RECORD_BYTES`] is an error at once, before any of it is buffered.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, CodecError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as u64;
        if len > MAX_RECORD_BYTES {
            return Err(CodecError::TooLarge { len });
        }
        let end = 4 + len as usize;
        if self.buf.len() < end {
            return Ok(None);
        }
        let record = self.buf[4..end].to_vec();
        self.buf.drain(..end);
        Ok(Some(record))
    }

    /// Bytes received but not yet part of a whole frame.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Sample {
        a: u64,
        b: String,
        c: Vec<u8>,
    }

    #[test]
    fn round_trip_and_version_check() {
        let s = Sample {
            a: 7,
            b: "x".into(),
            c: vec![1, 2],
        };
        let bytes = encode(&s);
        assert_eq!(decode::<Sample>(&bytes), Ok(s));
        let mut other = bytes.clone();
        other[0] = 9;
        assert_eq!(
            decode::<Sample>(&other),
            Err(CodecError::Version { found: 9 })
        );
        assert_eq!(decode::<Sample>(&[]), Err(CodecError::Empty));
    }

    #[test]
    fn oversized_length_is_refused_before_allocation() {
        // A vector claiming u64::MAX elements must not allocate.
        let mut bytes = vec![FORMAT_VERSION];
        bytes.extend_from_slice(&7u64.to_le_bytes());
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode::<Sample>(&bytes).is_err());
        let mut r = FrameReader::new();
        r.push(&u32::MAX.to_be_bytes());
        assert!(matches!(r.next_frame(), Err(CodecError::TooLarge { .. })));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode::<Sample>(&bytes);
        }

        #[test]
        fn frames_split_at_any_boundary(msgs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8), cut in 0usize..600) {
            let mut wire = Vec::new();
            for m in &msgs { wire.extend(frame(m)); }
            let cut = cut.min(wire.len());
            let mut r = FrameReader::new();
            let mut got = Vec::new();
            r.push(&wire[..cut]);
            while let Some(f) = r.next_frame().unwrap() { got.push(f); }
            r.push(&wire[cut..]);
            while let Some(f) = r.next_frame().unwrap() { got.push(f); }
            prop_assert_eq!(got, msgs);
            prop_assert_eq!(r.pending(), 0);
        }
    }
}
