//! Requests and decisions: `request`, `approve`, `deny`, `cancel`, and the grant they issue.
//!
//! Everything here is decided inside [`Approver::write`], against `tx.catalog`, the catalog in
//! force for that commit: a reload cannot slip between the check and the write. A pending
//! request is re-checked at every approval against the rules in force then
//! ([`policy::recheck`]): one that no longer qualifies is closed with the reason, never granted
//! and never shortened.

use std::sync::Arc;

use portcullis_core::audit_event::{AuditEvent, EventKind};
use portcullis_core::catalog::{Catalog, User};
use portcullis_core::command::{DecideArgs, RequestArgs};
use portcullis_core::model::{Approval, Grant, Request, RequestState};
use portcullis_core::policy::{self, Admission, Refusal};
use portcullis_core::time::parse_duration;

use super::{authorize, not_found_request, Action, Reply};
use crate::app::{Approver, Tx};
use crate::errors::ApproverError;
use crate::limits;
use crate::render::{self, requests::Decision};

/// The daemon's own name in the audit log, for what it decides itself.
const DAEMON: &str = "approver";

/// `user` as the catalog in force has them: gone users decide nothing.
fn current<'c>(catalog: &'c Catalog, user: &User) -> Result<&'c User, ApproverError> {
    catalog.users.get(&user.name).ok_or_else(|| {
        ApproverError::Forbidden(format!("user {} is no longer configured", user.name))
    })
}

/// `request TARGET`: `reach` is how the requester reaches us, for the `wait` line the reply
/// suggests.
pub(crate) async fn request(
    app: &Arc<Approver>,
    user: &User,
    args: RequestArgs,
    reach: Option<&str>,
    json: bool,
) -> Result<Reply, ApproverError> {
    let duration = args
        .duration
        .as_deref()
        .map(parse_duration)
        .transpose()
        .map_err(ApproverError::BadInput)?;
    let reason = limits::text(&args.reason, "reason")?;
    let ttl = app.settings.request_ttl;
    let (req, grant, groups) = app
        .write(|tx| {
            let catalog = tx.catalog.clone();
            let user = current(&catalog, user)?;
            let admission = policy::evaluate(
                &catalog,
                user,
                &args.target,
                duration,
                reason.as_deref(),
                tx.now,
            )?;
            if matches!(admission, Admission::NeedsApproval { .. }) {
                limits::may_add_pending(app, &user.name)?;
            }
            let policy = admission.policy();
            let id = tx.next_request_id();
            let mut req = Request {
                id,
                user: user.name.clone(),
                target: args.target.clone(),
                policy: policy.name.clone(),
                duration: admission.duration(),
                reason: reason.clone(),
                created_at: tx.now,
                expires_at: tx.now.plus(ttl),
                approvals: Vec::new(),
                needed: policy.approvals,
                state: RequestState::Pending,
                decided_at: None,
            };
            tx.audit(
                AuditEvent::new(
                    &user.name,
                    EventKind::RequestCreated {
                        policy: policy.name.clone(),
                        duration: req.duration,
                    },
                )
                .user(&user.name)
                .target(&req.target)
                .request(id)
                .reason(reason.clone()),
            );
            let grant = match admission {
                Admission::AutoApproved { .. } => Some(issue(tx, &mut req, Vec::new(), true)),
                Admission::NeedsApproval { .. } => None,
            };
            tx.put_request(req.clone());
            Ok((req, grant, policy.approvers.join(" or ")))
        })
        .await?;
    Ok(render::requests::created(
        &req,
        grant.as_ref(),
        &groups,
        ttl,
        reach,
        app.now(),
        json,
    ))
}

/// Issue the grant for an approved request: its clock starts now.
fn issue(tx: &mut Tx<'_>, req: &mut Request, approvers: Vec<String>, automatic: bool) -> Grant {
    let grant = Grant {
        id: req.id,
        request: req.id,
        user: req.user.clone(),
        target: req.target.clone(),
        policy: req.policy.clone(),
        issued_at: tx.now,
        expires_at: tx.now.plus(req.duration),
        approvers,
        revoked: None,
    };
    req.state = RequestState::Approved { grant: grant.id };
    req.decided_at = Some(tx.now);
    tx.audit(
        AuditEvent::new(
            DAEMON,
            EventKind::GrantIssued {
                expires_at: grant.expires_at,
                approvers: grant.approvers.clone(),
                automatic,
            },
        )
        .user(&grant.user)
        .target(&grant.target)
        .request(req.id)
        .grant(grant.id),
    );
    tx.put_grant(&grant, false);
    grant
}

/// What a decision came to.
enum Decided {
    Denied,
    /// Approved (counted, or already counted), with the grant if the count is met.
    Approved {
        repeated: bool,
        counted: usize,
        grant: Option<Grant>,
    },
    /// The request no longer qualifies under the config in force; it is closed.
    Refused(Refusal),
}

/// Request `id` as the store has it.
fn stored(app: &Approver, id: u64) -> Result<Request, ApproverError> {
    app.store.request(id)?.ok_or_else(|| not_found_request(id))
}

/// `req` if it is still pending, or why it cannot be decided.
fn undecided(tx: &Tx<'_>, req: Request) -> Result<Request, ApproverError> {
    let why = match &req.state {
        RequestState::Pending if tx.now >= req.expires_at => format!(
            "has expired (it lapsed at {}) — the requester must ask again",
            req.expires_at
        ),
        RequestState::Pending => return Ok(req),
        RequestState::Approved { grant } => {
            format!("is already decided: approved, grant {grant}")
        }
        RequestState::Denied { by, .. } => format!("is already decided: denied by {by}"),
        RequestState::Expired => "has expired undecided — the requester must ask again".into(),
        RequestState::Cancelled { .. } => "was cancelled by its requester".into(),
    };
    Err(ApproverError::Conflict(format!("request {} {why}", req.id)))
}

/// Whether `user` may decide `req` under the catalog in force: the permission table, then
/// whether there is still a policy to decide under.
fn may_decide(
    catalog: &Catalog,
    user: &User,
    req: &Request,
    approving: bool,
) -> Result<(), ApproverError> {
    let facts = req.into();
    let action = if approving {
        Action::Approve(facts)
    } else {
        Action::Deny(facts)
    };
    authorize(user, &action, catalog)?;
    // A policy gone takes its approvers' right with it; an approval then closes the request
    // (see `approve`), a denial has nothing left to decide under.
    if !approving && catalog.policy(&req.policy).is_none() {
        return Err(ApproverError::Conflict(format!(
            "policy {:?} of request {} no longer exists; ask for a new request",
            req.policy, req.id
        )));
    }
    Ok(())
}

/// Count an approval and issue the grant if the count is met, all under the rules in force.
fn approve(
    tx: &mut Tx<'_>,
    user: &User,
    mut req: Request,
    note: Option<String>,
) -> (Request, Decided) {
    let catalog = tx.catalog.clone();
    let policy = match policy::recheck(&catalog, &req) {
        Ok(p) => p,
        Err(why) => {
            let why = Refusal::NoLongerQualifies {
                request: req.id,
                why: Box::new(why),
            };
            tx.audit(
                AuditEvent::new(DAEMON, EventKind::RequestDenied)
                    .user(&req.user)
                    .target(&req.target)
                    .request(req.id)
                    .note(Some(why.to_string())),
            );
            req.state = RequestState::Denied {
                by: DAEMON.into(),
                note: Some(why.to_string()),
            };
            req.decided_at = Some(tx.now);
            tx.put_request(req.clone());
            return (req, Decided::Refused(why));
        }
    };
    req.needed = policy.approvals;
    let repeated = req.approved_by(&user.name);
    if !repeated {
        req.approvals.push(Approval {
            by: user.name.clone(),
            at: tx.now,
            note: note.clone(),
        });
    }
    let counted: Vec<String> = policy::counted_approvals(&catalog, policy, &req)
        .iter()
        .map(|a| a.by.clone())
        .collect();
    if !repeated {
        tx.audit(
            AuditEvent::new(
                &user.name,
                EventKind::RequestApproved {
                    approvals: counted.len() as u32,
                    needed: req.needed,
                },
            )
            .user(&req.user)
            .target(&req.target)
            .request(req.id)
            .note(note),
        );
    }
    let n = counted.len();
    let grant = (n as u32 >= req.needed).then(|| issue(tx, &mut req, counted, false));
    if !repeated || grant.is_some() {
        tx.put_request(req.clone());
    }
    (
        req,
        Decided::Approved {
            repeated,
            counted: n,
            grant,
        },
    )
}

pub(crate) async fn decide(
    app: &Arc<Approver>,
    user: &User,
    args: DecideArgs,
    approving: bool,
    json: bool,
) -> Result<Reply, ApproverError> {
    let note = limits::text(&args.note, "note")?;
    let (req, decided) = app
        .write(|tx| {
            let catalog = tx.catalog.clone();
            let user = current(&catalog, user)?;
            let mut req = undecided(tx, stored(app, args.id)?)?;
            may_decide(&catalog, user, &req, approving)?;
            if approving {
                return Ok(approve(tx, user, req, note.clone()));
            }
            tx.audit(
                AuditEvent::new(&user.name, EventKind::RequestDenied)
                    .user(&req.user)
                    .target(&req.target)
                    .request(req.id)
                    .note(note.clone()),
            );
            req.state = RequestState::Denied {
                by: user.name.clone(),
                note: note.clone(),
            };
            req.decided_at = Some(tx.now);
            tx.put_request(req.clone());
            Ok((req, Decided::Denied))
        })
        .await?;
    reply(app, req, decided, json)
}

fn reply(
    app: &Approver,
    req: Request,
    decided: Decided,
    json: bool,
) -> Result<Reply, ApproverError> {
    let decision = match &decided {
        Decided::Refused(why) => return Err(ApproverError::Refused(why.clone())),
        Decided::Denied => Decision::Denied,
        Decided::Approved {
            repeated,
            counted,
            grant,
        } => Decision::Approved {
            repeated: *repeated,
            counted: *counted,
            grant: grant.as_ref(),
        },
    };
    Ok(render::requests::decided(&req, decision, app.now(), json))
}

/// `cancel ID`: the requester withdraws a request nobody has decided yet. Whoever waits on it
/// is woken by the commit (it is no longer pending) and told; it can no longer be approved.
pub(crate) async fn cancel(
    app: &Arc<Approver>,
    user: &User,
    id: u64,
    reason: &[String],
    json: bool,
) -> Result<Reply, ApproverError> {
    let reason = limits::text(reason, "reason")?;
    let req = app
        .write(|tx| {
            let catalog = tx.catalog.clone();
            let user = current(&catalog, user)?;
            let req = stored(app, id)?;
            // Who may not cancel it learns nothing of its state.
            authorize(user, &Action::Cancel((&req).into()), &catalog)?;
            let mut req = undecided(tx, req)?;
            tx.audit(
                AuditEvent::new(&user.name, EventKind::RequestCancelled)
                    .user(&req.user)
                    .target(&req.target)
                    .request(req.id)
                    .reason(reason.clone()),
            );
            req.state = RequestState::Cancelled {
                reason: reason.clone(),
            };
            req.decided_at = Some(tx.now);
            tx.put_request(req.clone());
            Ok(req)
        })
        .await?;
    Ok(render::requests::cancelled(&req, app.now(), json))
}
