//! Delivers session reports to the approver in order, each exactly once: a report leaves the
//! spool only after the approver acknowledged it, and the approver records each sequence
//! number once, so a retry after a lost acknowledgement is harmless.
//!
//! Reports are spooled by [`submit`], which wakes the deliverer ([`run`]); what the approver
//! acknowledged is told to those waiting through [`Delivery`]. Only this module sends either.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt as _;
use tokio::sync::{watch, Notify};

use portcullis_core::codec;
use portcullis_core::model::SessionReport;

use crate::errors::GatewayError;
use crate::state::GatewayState;

/// How long a new session waits for its start event to reach the approver before relaying
/// anyway (it is durable in the spool by then).
const START_DELIVERY_WAIT: Duration = Duration::from_secs(5);

pub(crate) async fn run(gw: Arc<GatewayState>) {
    let mut link = gw.link().watch();
    loop {
        // Reports wait while the stream is down (the approver is away); they travel on a
        // connection of their own (see `link`).
        if !*link.borrow_and_update() {
            let _ = link.changed().await;
            continue;
        }
        let pending = match gw.replica().spooled() {
            Ok(p) => p,
            Err(e) => {
                tracing::error!("cannot read the spool: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if pending.is_empty() {
            tokio::select! {
                _ = gw.delivery().wake.notified() => {}
                _ = link.changed() => {}
            }
            continue;
        }
        for batch in batches(pending) {
            // Reports go in order: one not delivered holds up those behind it until the retry.
            if let Err(Retry { after }) = deliver(&gw, &batch).await {
                if !after.is_zero() {
                    tokio::time::sleep(after).await;
                }
                break;
            }
        }
    }
}

/// A batch not delivered: start over from the spool after this pause.
struct Retry {
    after: Duration,
}

impl Retry {
    fn after(after: Duration) -> Retry {
        Retry { after }
    }
}

/// Send one batch and, once the approver acknowledged it, take it off the spool. A batch whose
/// recording is gone for good is taken off unsent (`Ok` too): the reports behind it must flow.
async fn deliver(gw: &GatewayState, batch: &Batch) -> Result<(), Retry> {
    let (first, last) = (batch.first, batch.last());
    let (frames, recording) = match batch.input(gw).await {
        Ok(input) => input,
        Err(Unsendable::Gone(e)) => {
            // Retrying cannot bring the recording back, and the reports behind it must flow:
            // the end event still carries its hash, so `audit verify` will name it as missing.
            // (A crash after the approver acknowledged it and this copy was removed, but
            // before the report left the spool, ends here too: the approver has it.)
            tracing::error!("{e}; it cannot be delivered (unless the approver already has it)");
            if let Err(e) = gw.replica().delivered(first..=last).await {
                tracing::error!("cannot clear report {first} from the spool: {e}");
            }
            return Ok(());
        }
        Err(Unsendable::NotNow(e)) => {
            tracing::warn!("{e}; will retry");
            return Err(Retry::after(Duration::from_secs(1)));
        }
    };
    let conn = match gw.link().reports().get(gw).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("reports {first}-{last} not delivered ({e}); will retry");
            return Err(Retry::after(Duration::from_secs(1)));
        }
    };
    let command = format!("report --seq {first} --instance {}", gw.instance());
    let limit = delivery_limit(recording.as_ref().map(|(_, size)| *size));
    let send = async {
        match recording {
            // Streamed from the file: a recording of any size costs a buffer, not its size.
            Some((file, _)) => {
                let file = tokio::io::BufReader::with_capacity(RECORDING_READ, file);
                conn.run_with_input(&command, frames.as_slice().chain(file))
                    .await
            }
            None => conn.run_with_input(&command, frames.as_slice()).await,
        }
    };
    let Ok(sent) = tokio::time::timeout(limit, send).await else {
        // A stalled approver (or a connection that died without saying so) must not hold the
        // spool for ever: drop the connection and try again.
        tracing::warn!("reports {first}-{last} not acknowledged within {limit:?}; reconnecting");
        gw.link().reports().drop_conn(&conn).await;
        return Err(Retry::after(Duration::ZERO));
    };
    match sent {
        Ok((r, _, _)) if r.exit_status == Some(0) => {
            acknowledged(gw, batch).await;
            Ok(())
        }
        Ok((_, _, err)) => {
            tracing::warn!(
                "approver refused reports {first}-{last}: {}",
                String::from_utf8_lossy(&err).trim()
            );
            Err(Retry::after(Duration::from_secs(1)))
        }
        Err(e) => {
            tracing::warn!("reports {first}-{last} not delivered ({e}); will retry");
            Err(Retry::after(Duration::from_millis(200)))
        }
    }
}

/// The approver acknowledged `batch`. It has the recording durably (it acknowledges only after
/// its fsync and rename): this copy goes now, before the reports leave the spool, so a crash in
/// between re-sends the file rather than orphaning it.
async fn acknowledged(gw: &GatewayState, batch: &Batch) {
    let (first, last) = (batch.first, batch.last());
    if let Some(path) = batch.recording_path(gw) {
        match tokio::fs::remove_file(&path).await {
            Ok(()) => tracing::debug!("delivered recording {} removed", path.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("cannot remove delivered recording {}: {e}", path.display()),
        }
    }
    if let Err(e) = gw.replica().delivered(first..=last).await {
        tracing::error!("cannot clear reports {first}-{last} from the spool: {e}");
    }
    gw.delivery().acknowledged.send_replace(last);
}

/// Reports that go to the approver in one `report` command: consecutive numbers, at most
/// [`MAX_BATCH`] of them, and a report that announces a recording alone (its file follows it).
struct Batch {
    first: u64,
    reports: Vec<SessionReport>,
}

/// Enough to take a burst of session ends in a few commands, small enough that one command
/// never holds the approver's writer for long.
const MAX_BATCH: usize = 64;

fn batches(pending: Vec<(u64, SessionReport)>) -> Vec<Batch> {
    let mut out: Vec<Batch> = Vec::new();
    for (seq, report) in pending {
        let alone = matches!(report, SessionReport::Recorded { .. });
        match out.last_mut() {
            Some(b)
                if !alone
                    && b.last() + 1 == seq
                    && b.reports.len() < MAX_BATCH
                    && !matches!(b.reports.first(), Some(SessionReport::Recorded { .. })) =>
            {
                b.reports.push(report);
            }
            _ => out.push(Batch {
                first: seq,
                reports: vec![report],
            }),
        }
    }
    out
}

impl Batch {
    /// The file of the recording this batch announces, if it announces one.
    fn recording_path(&self, gw: &GatewayState) -> Option<std::path::PathBuf> {
        self.reports.iter().find_map(|r| match r {
            SessionReport::Recorded {
                session, format, ..
            } => Some(recording_file(gw, session, format)),
            _ => None,
        })
    }

    /// The number of its last report (a batch is never empty).
    fn last(&self) -> u64 {
        self.first + self.reports.len() as u64 - 1
    }

    /// The `report` command's stdin: each report framed, then, for the (single) report that
    /// announces a recording, the recording's file, checked against the announcement first.
    async fn input(
        &self,
        gw: &GatewayState,
    ) -> Result<(Vec<u8>, Option<(tokio::fs::File, u64)>), Unsendable> {
        let mut frames = Vec::new();
        let mut recording = None;
        for report in &self.reports {
            frames.extend_from_slice(&codec::frame(&codec::encode(report)));
            if let SessionReport::Recorded {
                session,
                format,
                sha256,
                size,
            } = report
            {
                let path = recording_file(gw, session, format);
                let (sha256, size) = (sha256.clone(), *size);
                let checked = path.clone();
                tokio::task::spawn_blocking(move || check_recording(&checked, &sha256, size))
                    .await
                    .map_err(|e| {
                        Unsendable::NotNow(format!("checking recording {}: {e}", path.display()))
                    })??;
                let file = tokio::fs::File::open(&path)
                    .await
                    .map_err(|e| unreadable(&path, e))?;
                recording = Some((file, size));
            }
        }
        Ok((frames, recording))
    }
}

/// How long one `report` command may take: a batch of reports is a few kilobytes, and a
/// recording is allowed a generous 1 MiB/s on top.
fn delivery_limit(recording_size: Option<u64>) -> Duration {
    const BASE: Duration = Duration::from_secs(30);
    BASE + Duration::from_secs(recording_size.unwrap_or(0) / (1024 * 1024))
}

/// Where a session's recording of `format` is kept until delivered.
fn recording_file(gw: &GatewayState, session: &str, format: &str) -> std::path::PathBuf {
    match format {
        "data" => crate::recording::data_path(&gw.recordings_dir(), session),
        _ => crate::recording::path(&gw.recordings_dir(), session),
    }
}

/// How much of a recording's file is read at once while it is sent.
const RECORDING_READ: usize = 1024 * 1024;

/// Why a batch cannot be sent.
enum Unsendable {
    /// Its recording is gone or no longer what its report says: no retry brings it back.
    Gone(String),
    /// Something that may pass (too many open files, an I/O error): try again later.
    NotNow(String),
}

fn unreadable(path: &std::path::Path, e: std::io::Error) -> Unsendable {
    let why = format!("recording {} is unreadable ({e})", path.display());
    match e.kind() {
        std::io::ErrorKind::NotFound => Unsendable::Gone(why),
        _ => Unsendable::NotNow(why),
    }
}

/// The recording file must still be what its report announces. A damaged one would be refused
/// by the approver on every try and hold up every report behind it; it is reported as
/// undeliverable instead (`audit verify` names it from the hash in the end event).
fn check_recording(path: &std::path::Path, sha256: &str, size: u64) -> Result<(), Unsendable> {
    use sha2::{Digest, Sha256};
    use std::io::Read as _;
    let unreadable = |e| unreadable(path, e);
    let mut file = std::fs::File::open(path).map_err(unreadable)?;
    let (mut hasher, mut buf, mut found) = (Sha256::new(), vec![0u8; RECORDING_READ], 0u64);
    loop {
        let n = file.read(&mut buf).map_err(unreadable)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        found += n as u64;
    }
    let found_sha = hex::encode(hasher.finalize());
    if found_sha != sha256 || found != size {
        return Err(Unsendable::Gone(format!(
            "recording {} no longer matches its report ({found} bytes with SHA-256 {found_sha}, reported {size} bytes with {sha256})",
            path.display()
        )));
    }
    Ok(())
}

/// The deliverer's signals: woken when a report is spooled, and the highest report number the
/// approver has acknowledged. Only this module sends either.
pub(crate) struct Delivery {
    wake: Notify,
    acknowledged: watch::Sender<u64>,
}

impl Delivery {
    pub fn new() -> Delivery {
        Delivery {
            wake: Notify::new(),
            acknowledged: watch::channel(0).0,
        }
    }

    /// Wait, at most `limit`, until the approver has acknowledged report `seq`. Whether it has.
    pub async fn await_acknowledged(&self, seq: u64, limit: Duration) -> bool {
        let mut acknowledged = self.acknowledged.subscribe();
        tokio::time::timeout(limit, acknowledged.wait_for(|d| *d >= seq))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// Spool a report durably and hand it to the deliverer. Returns its sequence number.
pub(crate) async fn submit(gw: &GatewayState, report: &SessionReport) -> Result<u64, GatewayError> {
    let seq = gw.replica().spool(report).await?;
    gw.delivery().wake.notify_one();
    Ok(seq)
}

/// Wait until report `seq` reached the approver, if the link is up; with the approver away
/// the spool holds it and the caller goes on.
pub(crate) async fn await_delivery(gw: &GatewayState, seq: u64) {
    if !gw.link().is_up() {
        return;
    }
    gw.delivery()
        .await_acknowledged(seq, START_DELIVERY_WAIT)
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::Timestamp;

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
            size: 0,
            format: "cast".into(),
        }
    }

    fn shape(batches: &[Batch]) -> Vec<(u64, u64)> {
        batches.iter().map(|b| (b.first, b.last())).collect()
    }

    #[test]
    fn consecutive_reports_go_together_and_a_recording_goes_alone() {
        let pending = vec![
            (1, mismatch("a")),
            (2, mismatch("b")),
            (3, recorded("b")),
            (4, mismatch("c")),
            (5, mismatch("d")),
            // 6 was delivered on its own (its recording was unreadable): a gap starts anew.
            (7, mismatch("e")),
        ];
        assert_eq!(
            shape(&batches(pending)),
            vec![(1, 2), (3, 3), (4, 5), (7, 7)]
        );
    }

    #[test]
    fn a_long_burst_is_cut_into_bounded_commands() {
        let pending: Vec<_> = (1..=150).map(|i| (i, mismatch("s"))).collect();
        let b = batches(pending);
        assert_eq!(shape(&b), vec![(1, 64), (65, 128), (129, 150)]);
        assert_eq!(b.iter().map(|b| b.reports.len()).sum::<usize>(), 150);
    }
}
