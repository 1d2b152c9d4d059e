//! One session lifecycle for every channel kind that reaches a target: forwards, recorded
//! sessions, and the database sessions to come. Admission (gateway open, user and key still
//! configured, a live grant), the live-table entry that binds a session to its grant from the
//! moment its channel opens until it ends, the start and end reports, and the message a cut
//! session is given all live here, so that a new channel kind cannot forget one of them.
//!
//! What is checked when: [`admit`] when a channel opens, [`Live::check`] again whenever the
//! channel is used for something new (a pty, an environment variable, the command itself), and
//! the enforcer at every grant end. A channel that never runs a command is bound to its grant
//! like any other, so keeping one open is no way to outlive a grant.

use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_core::catalog::Catalog;
use portcullis_core::model::{Grant, SessionReport};
use russh::server;
use tokio::sync::watch;

use crate::errors::GatewayError;
use crate::spool;
use crate::state::GatewayState;

/// How long a session waits for a grant that may still be replicating before it is refused.
const GRANT_GRACE: Duration = Duration::from_secs(1);

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EndReason {
    Closed,
    Expired,
    Revoked,
    Killed,
    /// The user, or the key they logged in with, left the catalog.
    Deprovisioned,
    /// `fail_mode = "closed"` and the approver has been unreachable longer than `fail_after`.
    FailedClosed,
    /// The session's recording could not be written: it does not go on unrecorded.
    RecordingFailed,
    /// The gateway was told to stop (SIGTERM, SIGINT).
    GatewayStopping,
    /// The grant is no longer on the approver's books (a snapshot after the approver's store
    /// was restored from an older copy does not hold it).
    Withdrawn,
}

impl EndReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            EndReason::Closed => "closed",
            EndReason::Expired => "expired",
            EndReason::Revoked => "revoked",
            EndReason::Killed => "killed",
            EndReason::Deprovisioned => "user or key removed",
            EndReason::FailedClosed => "approver unreachable (fail closed)",
            EndReason::RecordingFailed => "recording failed",
            EndReason::GatewayStopping => "gateway-stopping",
            EndReason::Withdrawn => "withdrawn",
        }
    }
}

/// The authenticated user of one connection, as every session they open needs them.
#[derive(Clone)]
pub(crate) struct Holder {
    pub user: String,
    /// The key they logged in with, normalised: checked against the catalog at every use.
    pub key: String,
    pub fingerprint: String,
    /// Their address, for the audit log.
    pub client: String,
    /// How they reach this gateway, for the commands we suggest (`ssh -p 2222 alice@host`).
    pub reach: String,
    /// Which connection of this gateway they are on.
    pub conn: u64,
    /// The connection's handle, known from its first channel on.
    pub handle: Option<server::Handle>,
}

impl Holder {
    /// What shows the approver, in a relayed command, that this is the user's own login: the
    /// key's fingerprint, or a certificate login's binding (which it checks like a key).
    pub(crate) fn proof(&self) -> String {
        match portcullis_core::user_ca::Binding::parse(&self.key) {
            Some(_) => self.key.clone(),
            None => self.fingerprint.clone(),
        }
    }
}

/// Why a session may not open, or not go on: what the gateway denies, and what to run instead.
/// (Not the policy's `portcullis_core::policy::Refusal`, which is why the approver refuses a
/// request.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Denial {
    /// `fail_mode = "closed"` holds the gateway shut.
    FailedClosed(String),
    /// No catalog has arrived from the approver yet.
    NoCatalog,
    /// The user, or the key they logged in with, is no longer configured.
    Deprovisioned { user: String },
    /// The target is not one this user may reach this way; the message says why.
    Target(Unreachable, String),
    /// The session was cut already; the message says why.
    Ended(String),
    /// No live grant for (user, target): may only be late, if one was just approved.
    NoGrant {
        user: String,
        target: String,
        reach: String,
    },
}

/// Why a request names no target this user may reach that way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unreachable {
    /// Neither a configured target's name nor its exact address.
    UnknownTarget,
    /// A configured target, on another port than its own.
    PortNotAllowed,
    /// A port number past 65535.
    BadPort,
    /// A recorded session asked of a target that is for forwarding only.
    ForwardingOnly,
}

impl Denial {
    /// Why, as the audit log names it (`session.refused`'s `reason`).
    pub fn reason(&self) -> &'static str {
        match self {
            Denial::FailedClosed(_) => "failed_closed",
            Denial::NoCatalog => "no_catalog",
            Denial::Deprovisioned { .. } => "deprovisioned",
            Denial::Target(Unreachable::UnknownTarget, _) => "unknown_target",
            Denial::Target(Unreachable::PortNotAllowed, _) => "port_not_allowed",
            Denial::Target(Unreachable::BadPort, _) => "bad_port",
            Denial::Target(Unreachable::ForwardingOnly, _) => "forwarding_only",
            Denial::Ended(_) => "session_ended",
            Denial::NoGrant { .. } => "no_grant",
        }
    }

    /// What the user is told.
    pub fn message(&self) -> String {
        match self {
            Denial::FailedClosed(why) | Denial::Target(_, why) | Denial::Ended(why) => {
                why.clone()
            }
            Denial::NoCatalog => {
                "portcullis: this gateway has not heard from the approver yet; try again shortly"
                    .into()
            }
            Denial::Deprovisioned { user } => {
                format!("portcullis: {user} or this key is no longer configured")
            }
            Denial::NoGrant {
                user,
                target,
                reach,
            } => format!(
                "portcullis: no active grant for {user} on {target} - request one: {reach} request {target} --for 1h --reason \"...\""
            ),
        }
    }
}

/// The checks every session passes whatever its kind: the gateway is open, it knows the
/// catalog, and the user still holds the key they logged in with. Returns that catalog.
pub(crate) fn admit_user(gw: &GatewayState, who: &Holder) -> Result<Arc<Catalog>, Denial> {
    if let Some(why) = gw.closed_reason() {
        return Err(Denial::FailedClosed(why));
    }
    let catalog = gw.catalog().ok_or(Denial::NoCatalog)?;
    if !still_valid(&catalog, &who.user, &who.key) {
        return Err(Denial::Deprovisioned {
            user: who.user.clone(),
        });
    }
    Ok(catalog)
}

/// The live grant `who` holds on `target` (the one that lasts longest).
pub(crate) fn grant_for(gw: &GatewayState, who: &Holder, target: &str) -> Result<Grant, Denial> {
    gw.active_grant(&who.user, target)
        .ok_or_else(|| Denial::NoGrant {
            user: who.user.clone(),
            target: target.to_string(),
            reach: who.reach.clone(),
        })
}

/// Whether `user` still exists and still holds `key` in `catalog` (no CA revoked it).
pub(crate) fn still_valid(catalog: &Catalog, user: &str, key: &str) -> bool {
    // A certificate login: its CA still trusted, nothing it names revoked.
    if let Some(binding) = portcullis_core::user_ca::Binding::parse(key) {
        return binding.still_valid(catalog, user);
    }
    catalog.users.contains_key(user) && catalog.user_holds_key(user, key)
}

/// Run `check` until it passes or refuses for good. A grant approved a moment ago may still be
/// on its way down the stream: while the link is up, a missing grant gets [`GRANT_GRACE`] to
/// arrive before the refusal stands.
pub(crate) async fn admit<T>(
    gw: &GatewayState,
    mut check: impl FnMut() -> Result<T, Denial>,
) -> Result<T, Denial> {
    let mut changes = gw.watch_grants();
    let deadline = tokio::time::Instant::now() + GRANT_GRACE;
    loop {
        changes.borrow_and_update();
        match check() {
            Err(r @ Denial::NoGrant { .. }) if gw.link().is_up() => {
                let arrived = tokio::time::timeout_at(deadline, changes.changed()).await;
                if !matches!(arrived, Ok(Ok(()))) {
                    return Err(r);
                }
            }
            other => return other,
        }
    }
}

/// A session on the books: in the live table, bound to its grant, until it is dropped. The
/// enforcer moves it to another grant or cuts it; whoever runs the session watches
/// [`Live::cut_signal`].
pub(crate) struct Live {
    gw: Arc<GatewayState>,
    id: String,
    who: Holder,
    target: String,
    cut: watch::Receiver<Option<EndReason>>,
}

impl Live {
    /// Put a session on the books under `grant`, and wake the enforcer so that its timer
    /// covers this grant's end.
    pub fn enter(
        gw: &Arc<GatewayState>,
        id: String,
        who: &Holder,
        target: &str,
        grant: u64,
    ) -> Live {
        let cut = gw.enter_session(id.clone(), who, target, grant);
        Live {
            gw: gw.clone(),
            id,
            who: who.clone(),
            target: target.to_string(),
            cut,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The grant the session rests on now (the enforcer may have moved it to another).
    pub fn grant(&self) -> Option<u64> {
        self.gw.session_grant(&self.id)
    }

    /// Why the session was cut, if it was.
    pub fn cut_reason(&self) -> Option<EndReason> {
        self.cut.borrow().clone()
    }

    /// Resolves with the reason once the session is cut. Owns what it needs, so a session can
    /// keep it pinned in its loop while using the rest of `self`.
    pub fn cut_signal(&self) -> impl std::future::Future<Output = EndReason> + Send + 'static {
        let mut cut = self.cut.clone();
        async move {
            match cut.wait_for(|c| c.is_some()).await {
                Ok(reason) => reason.clone().unwrap_or(EndReason::Closed),
                // The table dropped the session without a reason: it is not to go on.
                Err(_) => EndReason::Closed,
            }
        }
    }

    /// The session's receiver of its cut, for relays that watch it themselves.
    pub fn cut_receiver(&self) -> watch::Receiver<Option<EndReason>> {
        self.cut.clone()
    }

    /// At the moment of use (a pty, an environment variable, the command itself): the session
    /// may go on only if it has not been cut, the user and key are still configured and a live
    /// grant still covers it. Not waiting for the enforcer's next sweep closes the gap between
    /// a grant's end and its sweep.
    pub fn check(&self) -> Result<(), Denial> {
        if let Some(reason) = self.cut_reason() {
            return Err(Denial::Ended(
                cut_message(
                    &self.gw,
                    &reason,
                    &self.id,
                    &self.who,
                    &self.target,
                    self.grant(),
                )
                .unwrap_or_else(|| "portcullis: this session has ended".into()),
            ));
        }
        admit_user(&self.gw, &self.who)?;
        grant_for(&self.gw, &self.who, &self.target).map(|_| ())
    }

    /// Take the session off the books. Returns the grant it ended under, and whether other
    /// sessions of the same connection are still live (if none, a cut takes the connection).
    pub fn leave(self) -> Left {
        self.gw.leave_session(&self.id, self.who.conn)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        // Whatever path a session takes out, it leaves the table: an entry left behind would
        // keep the enforcer's timer and the connection's "others" count wrong for ever.
        self.gw.end_session(&self.id);
    }
}

/// What [`Live::leave`] found.
pub(crate) struct Left {
    pub grant: Option<u64>,
    pub others: bool,
}

/// The start of a session: durable in the spool, and normally in the approver's audit log,
/// before the caller relays its first byte (with the approver away the spool holds it).
pub(crate) async fn report_start(
    gw: &GatewayState,
    live: &Live,
    grant: u64,
    channel: &str,
) -> Result<(), GatewayError> {
    let report = SessionReport::Started {
        session: live.id.clone(),
        user: live.who.user.clone(),
        target: live.target.clone(),
        grant,
        client: live.who.client.clone(),
        fingerprint: portcullis_core::user_ca::reported_fingerprint(
            &live.who.fingerprint,
            &live.who.key,
        ),
        channel: channel.to_string(),
        at: gw.now(),
    };
    let seq = spool::submit(gw, &report).await?;
    gw.metrics().session_opened(channel);
    spool::await_delivery(gw, seq).await;
    Ok(())
}

/// How a session ended, for its end report. (What the approver keeps of that report is
/// `portcullis_core::model::SessionEnd`.)
pub(crate) struct SessionOutcome {
    pub reason: EndReason,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub started: Instant,
    pub exit_status: Option<u32>,
    /// SHA-256 (hex) and size of the recording, when there is one.
    pub recording: Option<(String, u64)>,
}

/// Spool the end of a session (its start was reported).
pub(crate) async fn report_end(gw: &GatewayState, session: &str, end: SessionOutcome) {
    gw.metrics().session_ended(end.bytes_in, end.bytes_out);
    let report = SessionReport::Ended {
        session: session.to_string(),
        bytes_in: end.bytes_in,
        bytes_out: end.bytes_out,
        duration: end.started.elapsed(),
        reason: end.reason.as_str().to_string(),
        exit_status: end.exit_status,
        at: gw.now(),
        recording: end.recording,
    };
    if let Err(e) = spool::submit(gw, &report).await {
        tracing::error!("cannot record the end of session {session}: {e}");
    }
    tracing::info!("session {session}: ended ({})", end.reason.as_str());
}

/// What a session cut for `reason` is told (`None` for a session that simply closed).
pub(crate) fn cut_message(
    gw: &GatewayState,
    reason: &EndReason,
    session: &str,
    who: &Holder,
    target: &str,
    grant: Option<u64>,
) -> Option<String> {
    let user = &who.user;
    Some(match reason {
        EndReason::Closed => return None,
        EndReason::Killed => format!("portcullis: session {session} was ended by an admin"),
        EndReason::FailedClosed => gw.closed_reason().unwrap_or_else(|| {
            "portcullis: the approver is unreachable and this gateway fails closed".into()
        }),
        EndReason::Deprovisioned => format!(
            "portcullis: {user} or this key was removed from the configuration; session {session} ended"
        ),
        EndReason::RecordingFailed => {
            "portcullis: the recording of this session failed; ending it".into()
        }
        EndReason::GatewayStopping => "portcullis: gateway stopping".into(),
        EndReason::Expired | EndReason::Revoked | EndReason::Withdrawn => format!(
            "portcullis: grant {} for {user} on {target} {} - request more: {} request {target} --for 1h --reason \"...\"",
            grant.map(|g| g.to_string()).unwrap_or_default(),
            reason.as_str(),
            who.reach
        ),
    })
}

/// How long a client whose last channel was closed with the reason written in it (a recorded
/// session's screen) gets to leave by itself before the connection is cut under it: OpenSSH
/// exits at a disconnect without writing out what it has buffered for the terminal, so a
/// disconnect on the heels of the reason can swallow the reason.
pub(crate) const LINGER: Duration = Duration::from_millis(250);

/// As [`disconnect_if_last`], after [`LINGER`], without holding up the caller.
pub(crate) fn disconnect_if_last_later(who: &Holder, left: &Left, why: &str) {
    if left.others {
        return;
    }
    let (who, why) = (who.clone(), why.to_string());
    tokio::spawn(async move {
        tokio::time::sleep(LINGER).await;
        disconnect(&who, &why).await;
    });
}

/// After a session was cut: the last session of a connection takes the connection with it,
/// with the reason in the disconnect message (`Received disconnect …: portcullis: …`).
pub(crate) async fn disconnect_if_last(who: &Holder, left: &Left, why: &str) {
    if !left.others {
        disconnect(who, why).await;
    }
}

async fn disconnect(who: &Holder, why: &str) {
    if let Some(handle) = &who.handle {
        let _ = handle
            .disconnect(
                russh::Disconnect::ByApplication,
                why.to_string(),
                "en".into(),
            )
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denial_says_what_to_run() {
        let r = Denial::NoGrant {
            user: "alice".into(),
            target: "db".into(),
            reach: "ssh -p 2222 alice@127.0.0.1".into(),
        };
        assert_eq!(
            r.message(),
            "portcullis: no active grant for alice on db - request one: ssh -p 2222 alice@127.0.0.1 request db --for 1h --reason \"...\""
        );
        assert!(Denial::Deprovisioned {
            user: "alice".into()
        }
        .message()
        .contains("alice or this key is no longer configured"));
    }

    #[test]
    fn end_reasons_keep_their_audit_names() {
        let names: Vec<_> = [
            EndReason::Closed,
            EndReason::Expired,
            EndReason::Revoked,
            EndReason::Killed,
            EndReason::Deprovisioned,
            EndReason::FailedClosed,
            EndReason::RecordingFailed,
            EndReason::GatewayStopping,
            EndReason::Withdrawn,
        ]
        .iter()
        .map(EndReason::as_str)
        .collect();
        assert_eq!(
            names,
            [
                "closed",
                "expired",
                "revoked",
                "killed",
                "user or key removed",
                "approver unreachable (fail closed)",
                "recording failed",
                "gateway-stopping",
                "withdrawn"
            ]
        );
    }
}
