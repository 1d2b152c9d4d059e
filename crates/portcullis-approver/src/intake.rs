//! A `report` command's stdin: gateways' session reports, framed one after another, and a
//! recording after the one report that announces it. The reports are read whole; a recording
//! goes to disk as it arrives, so that it costs the approver a megabyte of memory, not its
//! size. Recording the reports is `sessions`' job.

use std::sync::Arc;

use portcullis_core::catalog::Principal;
use portcullis_core::codec;
use portcullis_core::model::SessionReport;
use portcullis_store::Incoming;
use russh::ChannelMsg;

use crate::app::Approver;
use crate::commands::{self, Caller, Reply};
use crate::errors::ApproverError;

/// The most one `report` command may carry in reports (a recording aside, which goes to disk
/// as it arrives): a batch of 64 reports of a few hundred bytes each is far below it.
const MAX_REPORTS: usize = 16 * 1024 * 1024;

/// How much of an arriving recording is gathered before one write to disk.
const RECORDING_WRITE: usize = 1024 * 1024;

/// Read a `report` command's stdin: the reports whole, and a recording announced by the first
/// report straight to disk as it arrives (hashed on the way), so that a recording of any size
/// costs the approver a megabyte of memory, not its size.
pub(crate) async fn receive_report(
    app: &Arc<Approver>,
    caller: &Caller,
    seq: u64,
    instance: &str,
    read: &mut russh::ChannelReadHalf,
) -> Reply {
    // Only a gateway reports: anyone else is refused before anything is written.
    if !matches!(caller.principal, Principal::Gateway(_)) {
        return commands::report(app, caller, instance, seq, &[], None).await;
    }
    match read_input(app, seq, read).await {
        Ok((reports, recording)) => {
            commands::report(app, caller, instance, seq, &reports, recording).await
        }
        // A partial recording, if any, is dropped with its temporary file.
        Err(e) => commands::error_reply(&e, false),
    }
}

/// Everything the gateway sends until its EOF: the framed reports, and the recording written
/// whole to its temporary file.
async fn read_input(
    app: &Approver,
    seq: u64,
    read: &mut russh::ChannelReadHalf,
) -> Result<(Vec<u8>, Option<Incoming>), ApproverError> {
    let mut input = Input {
        seq,
        reports: Vec::new(),
        recording: None,
        reports_only: false,
    };
    while let Some(msg) = read.wait().await {
        match msg {
            ChannelMsg::Data { data } => input.take(app, &data).await?,
            ChannelMsg::Eof => return input.finish().await,
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    Err(ApproverError::BadInput(format!(
        "report {seq} incomplete: the gateway closed the stream before finishing it"
    )))
}

/// A `report` command's stdin as it arrives.
struct Input {
    seq: u64,
    /// The reports (and, until the first is whole, all that came).
    reports: Vec<u8>,
    /// The recording on its way in, if the first report announced one.
    recording: Option<Arriving>,
    /// Decided once the first report is whole: only reports follow.
    reports_only: bool,
}

/// A recording on its way to disk: nothing past the size it was announced with is taken.
struct Arriving {
    incoming: Incoming,
    /// Bytes not yet written.
    pending: Vec<u8>,
    announced: u64,
}

impl Input {
    /// Take the next piece of stdin.
    async fn take(&mut self, app: &Approver, data: &[u8]) -> Result<(), ApproverError> {
        if let Some(arriving) = self.recording.take() {
            self.recording = Some(arriving.take(self.seq, data).await?);
            return Ok(());
        }
        let seq = self.seq;
        if self.reports.len() + data.len() > MAX_REPORTS {
            return Err(ApproverError::BadInput(format!(
                "report {seq}: over {MAX_REPORTS} bytes of reports"
            )));
        }
        self.reports.extend_from_slice(data);
        if self.reports_only {
            return Ok(());
        }
        match head(&self.reports)? {
            Head::Recording {
                end,
                session,
                format,
                size,
            } => {
                if (self.reports.len() - end) as u64 > size {
                    return Err(ApproverError::BadInput(format!(
                        "report {seq}: the recording runs past the {size} bytes announced"
                    )));
                }
                let incoming = app
                    .recordings
                    .receive(&session, &format)
                    .map_err(ApproverError::Recording)?;
                self.recording = Some(Arriving {
                    incoming,
                    pending: self.reports.split_off(end),
                    announced: size,
                });
            }
            Head::Reports => self.reports_only = true,
            Head::Incomplete => {}
        }
        Ok(())
    }

    /// The gateway's EOF: the reports, and the recording with its last bytes written.
    async fn finish(self) -> Result<(Vec<u8>, Option<Incoming>), ApproverError> {
        let recording = match self.recording {
            Some(a) => Some(write_recording(a.incoming, a.pending).await?.0),
            None => None,
        };
        Ok((self.reports, recording))
    }
}

impl Arriving {
    /// Take the next piece of the recording, written to disk a megabyte at a time.
    async fn take(mut self, seq: u64, data: &[u8]) -> Result<Arriving, ApproverError> {
        let announced = self.announced;
        if self.incoming.size() + (self.pending.len() + data.len()) as u64 > announced {
            return Err(ApproverError::BadInput(format!(
                "report {seq}: the recording runs past the {announced} bytes announced"
            )));
        }
        self.pending.extend_from_slice(data);
        if self.pending.len() >= RECORDING_WRITE {
            (self.incoming, self.pending) = write_recording(self.incoming, self.pending).await?;
        }
        Ok(self)
    }
}

/// Write `pending` to an arriving recording, off the async workers; the buffer comes back
/// empty for reuse.
async fn write_recording(
    mut incoming: Incoming,
    mut pending: Vec<u8>,
) -> Result<(Incoming, Vec<u8>), ApproverError> {
    tokio::task::spawn_blocking(move || {
        incoming.write(&pending)?;
        pending.clear();
        Ok((incoming, pending))
    })
    .await
    .map_err(|e| ApproverError::Config(format!("writing a recording: {e}")))?
    .map_err(ApproverError::Recording)
}

/// What the start of a `report` command's stdin says comes next.
#[derive(Debug, PartialEq)]
enum Head {
    /// The first report has not arrived whole yet.
    Incomplete,
    /// Reports, no recording: they are read whole before anything is recorded.
    Reports,
    /// The first report announces a recording of `size` bytes, which starts at byte `end`.
    Recording {
        end: usize,
        session: String,
        format: String,
        size: u64,
    },
}

/// Look at the first report on a `report` command's stdin as it arrives, to know whether what
/// follows is a recording (to be written to disk as it comes) or more reports.
fn head(input: &[u8]) -> Result<Head, ApproverError> {
    let Some((len, after)) = input.split_first_chunk::<4>() else {
        return Ok(Head::Incomplete);
    };
    let len = u32::from_be_bytes(*len) as usize;
    if len as u64 > codec::MAX_RECORD_BYTES {
        return Err(ApproverError::BadInput(format!(
            "report of {len} bytes is over the {}-byte limit",
            codec::MAX_RECORD_BYTES
        )));
    }
    let Some(bytes) = after.get(..len) else {
        return Ok(Head::Incomplete);
    };
    match codec::decode(bytes) {
        Ok(SessionReport::Recorded {
            session,
            format,
            size,
            ..
        }) => Ok(Head::Recording {
            end: 4 + len,
            session,
            format,
            size,
        }),
        Ok(_) => Ok(Head::Reports),
        Err(e) => Err(ApproverError::BadInput(format!(
            "report 1 does not decode: {e}"
        ))),
    }
}

/// The reports on a `report` command's stdin, and the recording after the one that announces
/// it (empty otherwise).
pub(crate) fn split_reports(input: &[u8]) -> Result<(Vec<SessionReport>, &[u8]), ApproverError> {
    let bad = |why: String| ApproverError::BadInput(why);
    let mut reports = Vec::new();
    let mut rest = input;
    loop {
        let Some((len, after)) = rest.split_first_chunk::<4>() else {
            return Err(bad(if reports.is_empty() {
                "report is not framed".into()
            } else {
                format!("{} stray bytes after report {}", rest.len(), reports.len())
            }));
        };
        let len = u32::from_be_bytes(*len) as usize;
        if after.len() < len {
            return Err(bad(format!(
                "report {} is cut short ({} of {len} bytes)",
                reports.len() + 1,
                after.len()
            )));
        }
        let (bytes, after) = after.split_at(len);
        let report: SessionReport = codec::decode(bytes)
            .map_err(|e| bad(format!("report {} does not decode: {e}", reports.len() + 1)))?;
        let recorded = matches!(report, SessionReport::Recorded { .. });
        if recorded && !reports.is_empty() {
            return Err(bad("a report announcing a recording must come alone".into()));
        }
        reports.push(report);
        if recorded || after.is_empty() {
            return Ok((reports, after));
        }
        rest = after;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::Timestamp;

    fn framed(r: &SessionReport) -> Vec<u8> {
        codec::frame(&codec::encode(r))
    }

    fn mismatch(session: &str) -> SessionReport {
        SessionReport::HostKeyMismatch {
            session: session.into(),
            user: "alice".into(),
            target: "web-1".into(),
            presented: "ssh-ed25519 AAAA".into(),
            at: Timestamp(1),
        }
    }

    fn recorded(session: &str) -> SessionReport {
        SessionReport::Recorded {
            session: session.into(),
            sha256: "00".into(),
            size: 3,
            format: "cast".into(),
        }
    }

    #[test]
    fn reports_come_one_after_another() {
        let input = [framed(&mismatch("a")), framed(&mismatch("b"))].concat();
        let (reports, attachment) = split_reports(&input).unwrap();
        assert_eq!(reports.len(), 2);
        assert_eq!(reports[1].session(), Some("b"));
        assert!(attachment.is_empty());
    }

    #[test]
    fn a_recording_follows_the_report_that_announces_it() {
        let input = [framed(&recorded("a")), b"abc".to_vec()].concat();
        let (reports, attachment) = split_reports(&input).unwrap();
        assert_eq!(reports.len(), 1);
        assert_eq!(attachment, b"abc");
    }

    #[test]
    fn the_head_tells_a_recording_from_reports_as_soon_as_the_first_report_is_whole() {
        let rec = [framed(&recorded("a")), b"abc".to_vec()].concat();
        let end = framed(&recorded("a")).len();
        assert_eq!(head(&rec[..3]).unwrap(), Head::Incomplete);
        assert_eq!(head(&rec[..end - 1]).unwrap(), Head::Incomplete);
        let want = Head::Recording {
            end,
            session: "a".into(),
            format: "cast".into(),
            size: 3,
        };
        assert_eq!(head(&rec[..end]).unwrap(), want);
        assert_eq!(head(&rec).unwrap(), want);
        assert_eq!(head(&framed(&mismatch("a"))).unwrap(), Head::Reports);
        let huge = [(u32::MAX).to_be_bytes().to_vec(), vec![0; 8]].concat();
        assert!(head(&huge).unwrap_err().to_string().contains("over"));
        assert!(head(&[0, 0, 0, 3, 1, 2, 3]).is_err());
    }

    #[test]
    fn bad_batches_are_refused_with_a_reason() {
        let late = [
            framed(&mismatch("a")),
            framed(&recorded("a")),
            b"abc".to_vec(),
        ]
        .concat();
        let cut = {
            let mut v = [framed(&mismatch("a")), framed(&mismatch("b"))].concat();
            v.truncate(v.len() - 1);
            v
        };
        let stray = [framed(&mismatch("a")), vec![0, 0]].concat();
        for (input, why) in [
            (Vec::new(), "not framed"),
            (late, "must come alone"),
            (cut, "cut short"),
            (stray, "stray bytes"),
            (vec![0, 0, 0, 3, 1, 2, 3], "does not decode"),
        ] {
            let e = split_reports(&input).unwrap_err().to_string();
            assert!(e.contains(why), "{why}: {e}");
        }
    }
}
