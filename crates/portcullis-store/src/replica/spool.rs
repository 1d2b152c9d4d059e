//! The spool of session reports not yet delivered, and the sessions open right now: reports
//! are numbered in order and committed in groups (one transaction and one flush for all the
//! reports waiting while the previous commit ran), each answered with its own number.

use portcullis_core::codec;
use portcullis_core::locks::lock;
use portcullis_core::model::SessionReport;
use sled::transaction::ConflictableTransactionError;
use sled::Transactional;

use super::{blocking, tx_err, Replica, REPORT_SEQ};
use crate::{decode, decode_all, key, Result, StoreError};

/// The most reports one spool commit takes.
const MAX_SPOOL_GROUP: usize = 64;

/// A report on its way into the spool, and where its sequence number (or the error) goes.
pub(super) struct Queued {
    bytes: Vec<u8>,
    session: Vec<u8>,
    started: bool,
    ended: bool,
    done: tokio::sync::oneshot::Sender<std::result::Result<u64, String>>,
}

/// Spool `batch` in one transaction and one flush, numbering the reports in order, and answer
/// each: all of them get their number, or all of them the error.
fn commit_spool(
    meta: &sled::Tree,
    spool: &sled::Tree,
    live: &sled::Tree,
    db: &sled::Db,
    batch: Vec<Queued>,
) {
    let committed = (meta, spool, live)
        .transaction(|(me, sp, lv)| {
            let first = me
                .get(REPORT_SEQ)?
                .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0)
                + 1;
            let mut seq = first;
            for q in &batch {
                sp.insert(&key(seq), q.bytes.as_slice())?;
                if q.started {
                    lv.insert(q.session.as_slice(), q.bytes.as_slice())?;
                } else if q.ended {
                    lv.remove(q.session.as_slice())?;
                }
                seq += 1;
            }
            me.insert(REPORT_SEQ, &(seq - 1).to_be_bytes())?;
            Ok::<u64, ConflictableTransactionError<()>>(first)
        })
        .map_err(tx_err)
        .and_then(|first| {
            db.flush()?;
            Ok(first)
        });
    match committed {
        Ok(first) => {
            for (seq, q) in (first..).zip(batch) {
                let _ = q.done.send(Ok(seq));
            }
        }
        Err(e) => {
            let why = e.to_string();
            for q in batch {
                let _ = q.done.send(Err(why.clone()));
            }
        }
    }
}

impl Replica {
    /// Put a report in the spool (and track the session as open or closed), durably. Returns
    /// the report's sequence number: the order of delivery.
    ///
    /// Group commit: reports spooled while another commit is under way wait for it and then go
    /// to disk together, in one transaction and one flush. When fifty sessions end in the same
    /// instant (a grant with many sessions expires), that is a few transactions rather than
    /// fifty, and the cores stay freer for the cuts themselves.
    pub async fn spool(&self, report: &SessionReport) -> Result<u64> {
        let (done, mut numbered) = tokio::sync::oneshot::channel();
        lock(&self.queued).push(Queued {
            bytes: codec::encode(report),
            // Only a start or an end touches the live tree, and both name their session.
            session: report.session().unwrap_or_default().as_bytes().to_vec(),
            started: matches!(report, SessionReport::Started { .. }),
            // Only the end closes a session: a crash between its recording and its end
            // must still leave it to be reported ended on restart.
            ended: matches!(report, SessionReport::Ended { .. }),
            done,
        });
        loop {
            match numbered.try_recv() {
                Ok(Ok(seq)) => return Ok(seq),
                Ok(Err(e)) => return Err(StoreError::Sled(sled::Error::Unsupported(e))),
                Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {
                    return Err(StoreError::Sled(sled::Error::Unsupported(
                        "the spool commit was abandoned".into(),
                    )))
                }
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {}
            }
            let _w = self.write.lock().await;
            // Oldest first, and a bounded group: with 2,000 sessions closing at once, one
            // transaction for all their ends left the gateway 10 MB larger for good.
            let batch: Vec<Queued> = {
                let mut queued = lock(&self.queued);
                let n = queued.len().min(MAX_SPOOL_GROUP);
                queued.drain(..n).collect()
            };
            // Empty when an earlier holder of the lock committed this report with its own.
            if !batch.is_empty() {
                let (meta, spool, live, db) = (
                    self.meta.clone(),
                    self.spool.clone(),
                    self.live.clone(),
                    self.db.clone(),
                );
                // The answers go out from the blocking task itself, so a caller that gives up
                // waiting cannot leave the others of its group without theirs.
                blocking(move || {
                    commit_spool(&meta, &spool, &live, &db, batch);
                    Ok(())
                })
                .await?;
            }
        }
    }

    /// Undelivered reports, oldest first.
    pub fn spooled(&self) -> Result<Vec<(u64, SessionReport)>> {
        decode_all(self.spool.iter(), "spool")
    }

    /// The approver acknowledged reports `seqs`. Not flushed: should a crash lose the removal,
    /// the reports are sent again, and the approver records each (instance, number) once. That
    /// keeps a burst of session ends (a grant with many sessions expiring) at one fsync for the
    /// spooling instead of two.
    pub async fn delivered(&self, seqs: std::ops::RangeInclusive<u64>) -> Result<()> {
        let _w = self.write.lock().await;
        let spool = self.spool.clone();
        blocking(move || {
            for seq in seqs {
                spool.remove(key(seq))?;
            }
            Ok(())
        })
        .await
    }

    /// Sessions that started and have not ended: after a crash, the ones to report ended.
    pub fn open_sessions(&self) -> Result<Vec<SessionReport>> {
        self.live
            .iter()
            .map(|kv| {
                let (_, v) = kv?;
                decode("live", 0, &v)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{reopen, started};
    use super::*;
    use portcullis_core::Timestamp;
    use std::time::Duration;

    /// A hundred sessions start and end at once, from as many tasks on two threads: the spool
    /// commits them in groups (more are waiting than one group takes), yet every report gets
    /// its own number, in the order of a task's own reports, with none lost or doubled across
    /// a reopen.
    #[test]
    fn concurrent_reports_are_grouped_without_losing_or_reordering_any() {
        let dir = tempfile::tempdir().unwrap();
        {
            let r = Replica::open(dir.path()).unwrap();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .build()
                .unwrap();
            let numbers = rt.block_on(async {
                let tasks: Vec<_> = (0..100)
                    .map(|i| {
                        let r = r.clone();
                        tokio::spawn(async move {
                            let id = format!("gw-1-{i}");
                            let start = r.spool(&started(&id)).await.unwrap();
                            let end = r
                                .spool(&SessionReport::Ended {
                                    session: id,
                                    bytes_in: i,
                                    bytes_out: i,
                                    duration: Duration::from_secs(1),
                                    reason: "expired".into(),
                                    exit_status: None,
                                    at: Timestamp(2),
                                    recording: None,
                                })
                                .await
                                .unwrap();
                            (start, end)
                        })
                    })
                    .collect();
                let mut numbers = Vec::new();
                for t in tasks {
                    numbers.push(t.await.unwrap());
                }
                numbers
            });
            for (start, end) in &numbers {
                assert!(start < end, "a session's end was numbered before its start");
            }
            let mut all: Vec<u64> = numbers.iter().flat_map(|(s, e)| [*s, *e]).collect();
            all.sort_unstable();
            assert_eq!(all, (1..=200).collect::<Vec<u64>>());
        }
        let r = reopen(dir.path());
        let spooled = r.spooled().unwrap();
        assert_eq!(spooled.len(), 200);
        for (seq, report) in &spooled {
            if let SessionReport::Ended { session, .. } = report {
                let start = spooled
                    .iter()
                    .find(|(_, x)| {
                        matches!(x, SessionReport::Started { .. }) && x.session() == Some(session)
                    })
                    .map(|(s, _)| *s)
                    .unwrap();
                assert!(start < *seq);
            }
        }
        assert!(r.open_sessions().unwrap().is_empty());
    }
}
