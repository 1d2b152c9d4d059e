//! The one write path: [`Approver::write`] runs a decision as the only writer, collects what it
//! produces in a [`Tx`] (requests, grants, sessions, signed changes, sealed audit records), and
//! commits it all at once with the signed head of the log, flushed before anyone is told.
//! Then, still as the writer, it puts a reload's catalog in force and brings the `Live` mirror
//! up to date; then it hands the new deadlines to the scheduler and wakes the `watch` streams.

use std::sync::Arc;

use portcullis_audit::{AuditRecord, Chain, SignedHead};
use portcullis_core::audit_event::AuditEvent;
use portcullis_core::model::{Grant, GrantRecord, Request, SessionRecord};
use portcullis_core::stream::{Change, ChangeBody, SignedChange};
use portcullis_core::{Catalog, Timestamp};
use portcullis_store::{Batch, Store};

use super::Approver;
use crate::errors::ApproverError;
use crate::locks;
use crate::scheduler::Deadline;

#[derive(Debug, Clone, Copy)]
pub(crate) struct WriterState {
    chain: Chain,
    last_rev: u64,
    last_request: u64,
}

/// Request (and so grant) ids start above this: raised past every id a gateway holds when the
/// store turns out to have been restored from an older copy, so that no id means two grants.
const REQUEST_ID_FLOOR: &str = "request_id_floor";

impl WriterState {
    pub(super) fn from_store(store: &Store) -> Result<WriterState, ApproverError> {
        Ok(WriterState {
            chain: Chain::after(store.last_audit()?.as_ref()),
            last_rev: store.last_rev()?,
            last_request: store
                .last_request_id()?
                .max(store.counter(REQUEST_ID_FLOOR)?),
        })
    }
}

/// One write in progress: what it will commit.
pub(crate) struct Tx<'a> {
    app: &'a Approver,
    state: WriterState,
    batch: Batch,
    deadlines: Vec<(Timestamp, Deadline)>,
    pub now: Timestamp,
    /// The catalog in force for this write, read under the writer lock: a reload swaps it only
    /// under that lock too, so no decision is taken under rules already replaced.
    pub catalog: Arc<Catalog>,
    /// A reload's new catalog, put in force as this write commits.
    new_catalog: Option<Arc<Catalog>>,
}

impl Tx<'_> {
    pub fn audit(&mut self, event: AuditEvent) {
        let rec: AuditRecord = self
            .state
            .chain
            .seal(&self.app.keys.signing(), self.now, event);
        self.batch.audit.push(rec);
    }

    /// New ids start above `id` from now on (and after a restart). The first id to come.
    pub fn raise_request_floor(&mut self, id: u64) -> u64 {
        self.state.last_request = self.state.last_request.max(id);
        self.set_counter(REQUEST_ID_FLOOR.into(), self.state.last_request);
        self.state.last_request + 1
    }

    pub fn next_request_id(&mut self) -> u64 {
        self.state.last_request += 1;
        self.state.last_request
    }

    pub fn put_request(&mut self, r: Request) {
        if r.is_pending() {
            self.deadlines.push((r.expires_at, Deadline::Request(r.id)));
        }
        self.batch.requests.retain(|x| x.id != r.id);
        self.batch.requests.push(r);
    }

    /// Sign a grant, store it, and put it on the gateway stream.
    pub fn put_grant(&mut self, grant: &Grant, end_recorded: bool) {
        let signed = grant.sign(&self.app.keys.signing());
        if !end_recorded {
            self.deadlines
                .push((grant.expires_at, Deadline::Grant(grant.id)));
        }
        self.batch.grants.push((
            grant.id,
            GrantRecord {
                signed: signed.clone(),
                end_recorded,
            },
        ));
        self.push_change(ChangeBody::Grant(signed));
    }

    /// Note that a grant's end is in the audit log; the grant itself (and the stream) is
    /// unchanged.
    pub fn mark_end_recorded(&mut self, id: u64, mut record: GrantRecord) {
        record.end_recorded = true;
        self.batch.grants.push((id, record));
    }

    /// A session as this write leaves it: what it has put so far, else what the store holds.
    pub fn session(&self, id: &str) -> Result<Option<SessionRecord>, ApproverError> {
        if let Some(s) = self.batch.sessions.iter().find(|s| s.id == id) {
            return Ok(Some(s.clone()));
        }
        Ok(self.app.store.session(id)?)
    }

    pub fn put_session(&mut self, record: SessionRecord) {
        self.batch.sessions.retain(|s| s.id != record.id);
        self.batch.sessions.push(record);
    }

    pub fn set_counter(&mut self, name: String, value: u64) {
        self.batch.counters.push((name, value));
    }

    /// Tell the gateways to cut a session.
    pub fn kill_session(&mut self, session: &str) {
        self.push_change(ChangeBody::KillSession {
            session: session.to_string(),
        });
    }

    pub fn put_catalog(&mut self, catalog: &Catalog) {
        self.push_change(ChangeBody::Catalog(catalog.clone()));
    }

    /// Stream `catalog` and put it in force once this write commits (and only if it does).
    pub fn replace_catalog(&mut self, catalog: Catalog) {
        self.put_catalog(&catalog);
        self.new_catalog = Some(Arc::new(catalog));
    }

    fn push_change(&mut self, body: ChangeBody) {
        self.state.last_rev += 1;
        let change = Change {
            rev: self.state.last_rev,
            at: self.now,
            body,
        };
        let signed = SignedChange::seal(&self.app.keys.signing(), &change);
        self.batch.changes.push((change.rev, signed));
    }
}

impl Approver {
    /// Where the store says the log ends, read under the writer lock so that it belongs to
    /// a whole commit: `audit verify` online checks the records up to it, and records
    /// committed while it runs are past it.
    /// Blocks: call it off the async workers.
    pub(crate) fn audit_end(&self) -> Result<portcullis_audit::End, ApproverError> {
        let _writer = self.writer.blocking_lock();
        Ok(portcullis_audit::End {
            signed: self.store.signed_audit_head()?,
            counter: self.store.audit_head()?,
        })
    }

    /// Wait for the write in flight, if any, write `last` (the stop's own record), and hold
    /// the writer: no write starts while the guard lives (a graceful stop keeps it until the
    /// process exits), so `last` is the last record of this run.
    pub(crate) async fn stop_writing(
        &self,
        last: AuditEvent,
    ) -> tokio::sync::MutexGuard<'_, WriterState> {
        let mut guard = self.writer.lock().await;
        let written = self
            .commit_as_writer(&mut guard, |tx| {
                tx.audit(last);
                Ok(())
            })
            .await;
        match written {
            Ok(((), committed)) => self.committed(committed),
            Err(e) => tracing::error!("could not record the stop: {e}"),
        }
        guard
    }

    /// Run `f` as the only writer, then commit what it produced and flush. Nothing `f` did is
    /// visible or acknowledged unless the commit succeeds.
    pub(crate) async fn write<T>(
        &self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, ApproverError>,
    ) -> Result<T, ApproverError> {
        let mut guard = self.writer.lock().await;
        let (out, committed) = self.commit_as_writer(&mut guard, f).await?;
        drop(guard);
        self.committed(committed);
        Ok(out)
    }

    /// After a commit (`Some` of its deadlines; `None` if there was nothing to commit), the
    /// writer lock released or not: the scheduler gets the new deadlines and the `watch`
    /// streams wake.
    fn committed(&self, committed: Option<Vec<(Timestamp, Deadline)>>) {
        if let Some(deadlines) = committed {
            self.deadlines.add(deadlines);
            self.changed.send_modify(|n| *n += 1);
        }
    }

    /// [`Approver::write`]'s work under the writer lock the caller holds: what `f` returned,
    /// and what [`Approver::committed`] is to do after it.
    async fn commit_as_writer<T>(
        &self,
        guard: &mut tokio::sync::MutexGuard<'_, WriterState>,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, ApproverError>,
    ) -> Result<(T, Option<Vec<(Timestamp, Deadline)>>), ApproverError> {
        let mut tx = Tx {
            app: self,
            state: **guard,
            batch: Batch::default(),
            deadlines: Vec::new(),
            now: self.clock.now(),
            catalog: self.catalog(),
            new_catalog: None,
        };
        let out = f(&mut tx)?;
        if tx.batch.is_empty() {
            return Ok((out, None));
        }
        // Sign where the log now ends, committed with the records: without the key nobody
        // can cut records off the end and make the head agree.
        if !tx.batch.audit.is_empty() {
            tx.batch.audit_head = tx
                .state
                .chain
                .head(tx.now)
                .map(|head| SignedHead::seal(&self.keys.signing(), &head));
        }
        if let Err(e) = self.store.commit(&tx.batch).await {
            // The store may hold part of it (applied but not flushed): continue from what it
            // holds, so no revision, sequence number or id is ever handed out twice.
            if let Ok(state) = WriterState::from_store(&self.store) {
                **guard = state;
            }
            return Err(e.into());
        }
        **guard = tx.state;
        if let Some(catalog) = tx.new_catalog.take() {
            // Still under the writer lock: the next write sees the catalog this one recorded.
            *locks::write(&self.catalog) = catalog;
        }
        self.live.commit(&tx.batch, tx.now);
        self.metrics.committed(&tx.batch);
        Ok((out, Some(tx.deadlines)))
    }
}
