//! The file operations of a recorded session: which stream is read for them (SFTP for the
//! `sftp` subsystem, which `sftp` and modern `scp` use; the legacy scp protocol for an exec of
//! `scp -t`/`scp -f`, what `scp -O` runs), and [`FileLog`], the bounded queue of events the
//! relay takes out and reports (`SessionReport::FileOps`).
//!
//! The parsers only read a copy of what the relay moves: they never change, hold back or slow
//! a byte, and on anything they cannot follow they stop with one `*.parse_abandoned` event
//! while the session goes on.

use portcullis_core::audit_event::FileOp;
use portcullis_core::model::FileEvent;
use portcullis_core::Timestamp;

use super::scp::ScpTap;
use super::sftp::SftpTap;

/// Events of one session reported one by one; past it they are counted by kind and reported
/// as one `sftp.counted` at the end, so a client removing a million files costs the log ten
/// thousand records and a count, not a million.
pub(super) const MAX_SESSION_EVENTS: u64 = 10_000;
/// Events in one report: with paths capped at [`MAX_PATH`] bytes a report stays far below
/// what the approver takes in one `report` command, even 64 of them to a command.
pub(super) const REPORT_EVENTS: usize = 64;
/// Events waiting to be taken out by the relay. It takes them out every second and whenever
/// [`REPORT_EVENTS`] are waiting; this bounds what one burst between two looks can queue.
const MAX_QUEUED: usize = 4096;
/// The most of a path kept in an event.
pub(super) const MAX_PATH: usize = 1024;

/// The events a session's parser produced and the relay has not yet taken, bounded.
#[derive(Debug, Default)]
pub(crate) struct FileLog {
    queued: Vec<FileEvent>,
    /// Events let through one by one so far.
    reported: u64,
    /// Past the budget (or the queue's bound): how many of each kind.
    counted: Vec<(String, u64)>,
}

impl FileLog {
    /// Queue an event, or count it if the session has had its share.
    pub fn push(&mut self, at: Timestamp, op: FileOp, outcome: Option<String>) {
        if self.reported < MAX_SESSION_EVENTS && self.queued.len() < MAX_QUEUED {
            self.reported += 1;
            self.queued.push(FileEvent { at, op, outcome });
            return;
        }
        let name = op.name();
        match self.counted.iter_mut().find(|(n, _)| n == name) {
            Some((_, n)) => *n += 1,
            None => self.counted.push((name.to_string(), 1)),
        }
    }

    /// Whether enough events wait to be worth a report now rather than at the next tick.
    pub fn due(&self) -> bool {
        self.queued.len() >= REPORT_EVENTS
    }

    /// Take out what waits, in reports of at most [`REPORT_EVENTS`].
    pub fn take(&mut self) -> Vec<Vec<FileEvent>> {
        let mut out = Vec::new();
        let mut rest = std::mem::take(&mut self.queued).into_iter().peekable();
        while rest.peek().is_some() {
            out.push(rest.by_ref().take(REPORT_EVENTS).collect());
        }
        out
    }

    /// At the session's end: the count of what went past the budget, as one last event.
    fn close(&mut self, at: Timestamp) {
        if !self.counted.is_empty() {
            let counts = std::mem::take(&mut self.counted);
            self.queued.push(FileEvent {
                at,
                op: FileOp::Counted { counts },
                outcome: None,
            });
        }
    }
}

/// What a recorded session's data is read for file operations, chosen by its command.
pub(crate) enum FileTap {
    Sftp(SftpTap),
    Scp(ScpTap),
}

impl FileTap {
    /// The parser for a session running `command`, if it moves files: the `sftp` subsystem, or
    /// the remote end of a legacy scp.
    pub fn for_subsystem(name: &str) -> Option<FileTap> {
        (name == "sftp").then(|| FileTap::Sftp(SftpTap::default()))
    }

    pub fn for_exec(command: &str) -> Option<FileTap> {
        ScpTap::for_command(command).map(FileTap::Scp)
    }

    /// Bytes the client sent towards the target.
    pub fn client_sent(&mut self, data: &[u8], now: &dyn Fn() -> Timestamp) {
        match self {
            FileTap::Sftp(t) => t.client_sent(data, now),
            FileTap::Scp(t) => t.client_sent(data, now),
        }
    }

    /// Bytes the target sent on its standard output.
    pub fn target_sent(&mut self, data: &[u8], now: &dyn Fn() -> Timestamp) {
        match self {
            FileTap::Sftp(t) => t.target_sent(data, now),
            FileTap::Scp(t) => t.target_sent(data, now),
        }
    }

    pub fn log(&mut self) -> &mut FileLog {
        match self {
            FileTap::Sftp(t) => t.log(),
            FileTap::Scp(t) => t.log(),
        }
    }

    /// The session ended: files still open are reported closed as they stand, and the
    /// count of what went past the budget. Then [`FileLog::take`] the rest.
    pub fn finish(&mut self, at: Timestamp) {
        if let FileTap::Sftp(t) = self {
            t.finish(at);
        }
        self.log().close(at);
    }
}

/// `bytes` as text for an event: lossy UTF-8, at most [`MAX_PATH`] bytes, marked where cut.
pub(super) fn text(bytes: &[u8], cut: bool) -> String {
    let (bytes, cut) = if bytes.len() > MAX_PATH {
        (&bytes[..MAX_PATH], true)
    } else {
        (bytes, cut)
    };
    let mut s = String::from_utf8_lossy(bytes).into_owned();
    if cut {
        // A multi-byte character cut in half became U+FFFD above: harmless.
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(i: usize) -> FileOp {
        FileOp::Mkdir {
            path: format!("/d{i}"),
        }
    }

    #[test]
    fn events_past_the_budget_are_counted_and_reports_are_small() {
        let mut log = FileLog::default();
        for i in 0..REPORT_EVENTS * 2 + 1 {
            log.push(Timestamp(1), op(i), Some("ok".into()));
        }
        assert!(log.due());
        let reports = log.take();
        assert_eq!(
            reports.iter().map(Vec::len).collect::<Vec<_>>(),
            [REPORT_EVENTS, REPORT_EVENTS, 1]
        );
        assert!(!log.due() && log.take().is_empty());
        log.reported = MAX_SESSION_EVENTS;
        for i in 0..5 {
            log.push(Timestamp(2), op(i), None);
        }
        log.push(Timestamp(2), FileOp::Remove { path: "/x".into() }, None);
        assert!(log.take().is_empty(), "past the budget nothing is queued");
        log.close(Timestamp(3));
        let last = log.take();
        assert_eq!(
            last[0][0].op,
            FileOp::Counted {
                counts: vec![("sftp.mkdir".into(), 5), ("sftp.remove".into(), 1)]
            }
        );
    }

    #[test]
    fn the_queue_is_bounded_even_if_nobody_takes_from_it() {
        let mut log = FileLog::default();
        for i in 0..MAX_QUEUED + 10 {
            log.push(Timestamp(1), op(i), None);
        }
        assert_eq!(log.queued.len(), MAX_QUEUED);
        assert_eq!(log.counted, vec![("sftp.mkdir".to_string(), 10)]);
    }

    #[test]
    fn paths_are_capped_and_marked() {
        assert_eq!(text(b"/tmp/a", false), "/tmp/a");
        assert_eq!(text(b"/tmp/a", true), "/tmp/a…");
        let long = vec![b'x'; MAX_PATH + 5];
        let t = text(&long, false);
        assert_eq!(t.len(), MAX_PATH + '…'.len_utf8());
        assert_eq!(text(&[0xff, b'a'], false), "\u{fffd}a");
    }
}
