//! The `watch` stream a gateway follows: a signed hello naming the store's identity, a
//! snapshot of the whole state for a gateway whose history is not this store's, then every
//! change from the revision it asks for, each new one as it is committed, and heartbeats while
//! idle.

use std::time::Duration;

use portcullis_core::stream::Frame;
use russh::server::Msg;

use crate::app::Approver;
use crate::commands;
use crate::errors::ApproverError;

/// How often an idle `watch` stream says it is alive.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// Changes sent per store read on a `watch` stream.
const WATCH_BATCH: usize = 256;

/// Whether the change this store holds at `rev` is the one a gateway says it applied there
/// (`after`, hex SHA-256), or the snapshot this store sent that gateway at `rev`. Revision 0
/// is everyone's starting point; a gateway that shows no digest cannot be vouched for (the
/// caller then sends a snapshot).
fn same_change_at(
    app: &Approver,
    gateway: &str,
    rev: u64,
    after: &Option<String>,
) -> Result<bool, ApproverError> {
    if rev == 0 {
        return Ok(true);
    }
    let Some(after) = after else { return Ok(true) };
    let ours = app.store.changes_after(rev - 1, 1)?;
    if matches!(ours.first(), Some((r, c)) if *r == rev && hex::encode(c.digest()) == *after) {
        return Ok(true);
    }
    app.sent_snapshot(gateway, rev, after)
}

/// Send every change after `since`, then each new one as it is committed, with heartbeats
/// while idle. Never buffers more than one batch: the channel's window paces the store reads.
/// A gateway that asks (`--epoch`) first gets a signed hello with the store's identity, and a
/// snapshot of the whole state instead of the changes it missed if its history is not this
/// store's.
pub(crate) async fn stream(
    app: &Approver,
    from: commands::WatchFrom,
    write: &russh::ChannelWriteHalf<Msg>,
) -> Result<(), ApproverError> {
    // Subscribed before the newest revision is read: a commit in between is not missed.
    let mut changes = app.subscribe();
    changes.borrow_and_update();
    let newest = app.store.last_rev()?;
    let mut last = greet(app, &from, newest, write).await?;
    loop {
        changes.borrow_and_update();
        // Nothing more for a gateway whose key a reload took away (each reload wakes us).
        if let Err(e) =
            commands::gateway_still_holds(&app.catalog(), &from.gateway, &from.fingerprint)
        {
            tracing::warn!("ending gateway {}'s watch stream: {e}", from.gateway);
            return Err(e);
        }
        let batch = app.store.changes_after(last, WATCH_BATCH)?;
        let full = batch.len() == WATCH_BATCH;
        for (rev, change) in batch {
            send(write, Frame::Change(change)).await?;
            last = rev;
        }
        if full {
            continue;
        }
        tokio::select! {
            r = changes.changed() => {
                if r.is_err() { return Ok(()); }
            }
            _ = tokio::time::sleep(HEARTBEAT) => {
                send(write, Frame::Heartbeat { rev: last, at: app.now() }).await?;
            }
        }
    }
}

/// The stream's opening: the hello and, for a gateway whose history is not this store's (or
/// cannot be vouched for), the snapshot. The revision the changes follow from.
async fn greet(
    app: &Approver,
    from: &commands::WatchFrom,
    newest: u64,
    write: &russh::ChannelWriteHalf<Msg>,
) -> Result<u64, ApproverError> {
    let Some(theirs) = from.epoch else {
        // A gateway from before store identities: it resumes, or is refused if it is ahead.
        if from.since > newest {
            return Err(ApproverError::Conflict(format!(
                "revision {} is ahead of this approver's newest ({newest}): the replica belongs to another approver's store; start it afresh",
                from.since
            )));
        }
        return Ok(from.since);
    };
    // Its history must be this store's: not past our newest, and the same change at the
    // revision it stopped at. Otherwise this store was restored or replaced.
    let diverged =
        from.since > newest || !same_change_at(app, &from.gateway, from.since, &from.after)?;
    let epoch = if diverged {
        app.history_diverged(&from.gateway, from.since, from.max_grant)
            .await?
    } else {
        app.epoch()?
    };
    let hello = portcullis_core::stream::Hello {
        epoch,
        newest,
        at: app.now(),
    };
    send(write, hello.seal(&app.keys.signing())).await?;
    // A replica of another store, or one that cannot show its history, starts over from the
    // whole state; a fresh one (revision 0) simply takes every change.
    let vouched = theirs == epoch && (from.since == 0 || from.after.is_some());
    if diverged || !vouched {
        let snapshot = app.snapshot(newest, epoch)?;
        app.note_snapshot(&from.gateway, newest, snapshot.digest())
            .await?;
        send(write, Frame::Change(snapshot)).await?;
        return Ok(newest);
    }
    Ok(from.since)
}

async fn send(write: &russh::ChannelWriteHalf<Msg>, frame: Frame) -> Result<(), ApproverError> {
    write
        .data_bytes(frame.to_wire())
        .await
        .map_err(|e| ApproverError::Conflict(format!("gateway went away: {e}")))
}
