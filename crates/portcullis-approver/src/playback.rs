//! Recordings served back: `audit export` sends one as asciicast, `audit replay` plays its
//! output with its timing. Both read the file in pieces (a raw data stream converted to
//! asciicast as it is read), so a recording of any size costs the approver a few megabytes.

use russh::server::Msg;

use crate::errors::ApproverError;

/// How much of a recording is read at once.
const PIECE: usize = 1024 * 1024;

/// A stored recording opened to be read in pieces of [`PIECE`], with the converter
/// a raw data stream goes through on its way to asciicast.
async fn open_recording(
    path: &std::path::Path,
    raw: bool,
    session: &str,
) -> Result<
    (
        tokio::io::BufReader<tokio::fs::File>,
        Option<portcullis_audit::RawCast>,
    ),
    ApproverError,
> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| unreadable(session, e))?;
    Ok((
        tokio::io::BufReader::with_capacity(PIECE, file),
        raw.then(|| portcullis_audit::RawCast::new(session)),
    ))
}

fn unreadable(session: &str, e: std::io::Error) -> ApproverError {
    ApproverError::Config(format!("recording of {session}: {e}"))
}

/// The longest line `audit replay` reads from a cast; a longer one means the file is damaged
/// (the recorder writes a line per read of the target's output).
const MAX_CAST_LINE: u64 = 16 * 1024 * 1024;

/// Play a recording's output events with their timing, reading it in pieces (a raw data stream
/// converted as it is read). Lines that are not output events are skipped, as a damaged
/// recording replays what it can; `audit verify` is what judges it.
pub(crate) async fn replay_file(
    path: &std::path::Path,
    raw: bool,
    session: &str,
    mut replay: portcullis_audit::Replay,
    write: &russh::ChannelWriteHalf<Msg>,
) -> Result<(), ApproverError> {
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _};
    let unreadable = |e| unreadable(session, e);
    let (mut file, mut cast) = open_recording(path, raw, session).await?;
    let mut header = true;
    let mut due = tokio::time::Instant::now();
    let (mut line, mut text) = (Vec::new(), String::new());
    loop {
        // The next lines: one from a cast, or all those a piece of a data stream completes.
        text.clear();
        match cast.as_mut() {
            Some(c) => {
                let piece = file.fill_buf().await.map_err(unreadable)?;
                if piece.is_empty() {
                    return Ok(());
                }
                let n = piece.len();
                if c.push(piece, &mut text).is_err() {
                    return Ok(());
                }
                file.consume(n);
            }
            None => {
                line.clear();
                let n = (&mut file)
                    .take(MAX_CAST_LINE)
                    .read_until(b'\n', &mut line)
                    .await
                    .map_err(unreadable)?;
                if n == 0 {
                    return Ok(());
                }
                if n as u64 == MAX_CAST_LINE && line.last() != Some(&b'\n') {
                    return Err(ApproverError::Conflict(format!(
                        "recording of {session}: a line over {MAX_CAST_LINE} bytes"
                    )));
                }
                text.push_str(&String::from_utf8_lossy(&line));
            }
        }
        for l in text.lines() {
            if std::mem::take(&mut header) {
                continue;
            }
            if let Some((pause, out)) = replay.event(l) {
                // Against a running schedule, not pause by pause: the timer's millisecond
                // would otherwise round every short pause up and the replay fall behind.
                due += pause;
                if due > tokio::time::Instant::now() {
                    tokio::time::sleep_until(due).await;
                }
                if write.data_bytes(out.into_bytes()).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
}

/// Send a recording as asciicast in pieces of a megabyte read off the async workers (a raw
/// data stream converted as it is read), so that exporting a recording of any size costs the
/// approver a few megabytes. An error (the file unreadable, a data stream cut short) ends it
/// with a failure after what was sent.
pub(crate) async fn export(
    path: &std::path::Path,
    raw: bool,
    session: &str,
    write: &russh::ChannelWriteHalf<Msg>,
) -> Result<(), ApproverError> {
    let unreadable = |e| unreadable(session, e);
    let (mut file, mut cast) = open_recording(path, raw, session).await?;
    let damaged = |e: String| ApproverError::Conflict(format!("recording of {session}: {e}"));
    loop {
        let piece = tokio::io::AsyncBufReadExt::fill_buf(&mut file)
            .await
            .map_err(unreadable)?;
        if piece.is_empty() {
            break;
        }
        let n = piece.len();
        let out = match cast.as_mut() {
            Some(c) => {
                let mut text = String::new();
                c.push(piece, &mut text).map_err(damaged)?;
                text.into_bytes()
            }
            None => piece.to_vec(),
        };
        tokio::io::AsyncBufReadExt::consume(&mut file, n);
        if write.data_bytes(out).await.is_err() {
            return Ok(());
        }
    }
    match cast {
        Some(c) => c.finish().map_err(damaged),
        None => Ok(()),
    }
}
