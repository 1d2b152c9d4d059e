//! The control-plane commands: parse an exec line, check who may run it, do it, say what
//! happened (text, or one JSON document with `--json`).

use std::sync::Arc;

use portcullis_core::audit_event::{AuditEvent, EventKind};
use portcullis_core::catalog::{Catalog, Principal, User};
use portcullis_core::command::{self, AuditCommand, ControlCommand};
use portcullis_core::model::{Grant, Request, RequestState, Revocation};
use portcullis_core::time::{format_duration, parse_duration};
use serde_json::{json, Value};

use crate::app::Approver;
use crate::errors::ApproverError;
use crate::render::{self, clean};
use crate::{decisions, limits};

mod authorize;

pub(crate) use authorize::{authorize, Action};

/// Who is asking: what their key proved, and from where.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub principal: Principal,
    pub fingerprint: String,
}

/// A finished command's output.
#[derive(Debug, Clone, Default)]
pub(crate) struct Reply {
    pub out: String,
    pub err: String,
    pub code: u32,
}

impl Reply {
    fn text(out: String) -> Reply {
        Reply {
            out,
            ..Default::default()
        }
    }
    fn failure(err: String, code: u32) -> Reply {
        Reply {
            err,
            code,
            ..Default::default()
        }
    }
}

/// Where a gateway's `watch` picks up, and what it shows of its history.
pub(crate) struct WatchFrom {
    pub gateway: String,
    pub since: u64,
    /// The store identity its replica follows (`Some(0)`: none yet); `None` from a gateway
    /// that predates identities (no hello, no snapshot).
    pub epoch: Option<u64>,
    /// SHA-256 (hex) of the change it applied at `since`.
    pub after: Option<String>,
    pub max_grant: u64,
}

/// What the server should do with a command.
pub(crate) enum Outcome {
    Done(Reply),
    Wait {
        id: u64,
        json: bool,
    },
    Watch(WatchFrom),
    /// Play a recording with its timing, read in pieces like [`Outcome::Export`].
    Replay {
        path: std::path::PathBuf,
        raw: bool,
        session: String,
        speed: f64,
        idle: Option<std::time::Duration>,
    },
    /// A recording as asciicast, streamed from its file (converted as it is read if it is a
    /// raw data stream): a recording can be larger than memory.
    Export {
        path: std::path::PathBuf,
        raw: bool,
        session: String,
    },
    /// A gateway's session report; its bytes follow on the channel.
    Report {
        seq: u64,
        instance: String,
    },
}

pub(crate) fn out(json: bool, value: Value, text: String) -> Reply {
    if json {
        Reply::text(format!("{value}\n"))
    } else {
        Reply::text(text)
    }
}

/// Whose command `line` is: the caller's, or for a gateway the user it relays it for (its own
/// `watch` and `report` are nobody's).
pub(crate) fn acting_user(caller: &Caller, line: &str) -> Option<String> {
    match &caller.principal {
        Principal::User(name) => Some(name.clone()),
        Principal::Gateway(_) => match command::parse_line(line).ok()?.command {
            ControlCommand::As { user, .. } => Some(user),
            _ => None,
        },
    }
}

/// Run one exec line for `caller`.
pub(crate) async fn execute(app: &Arc<Approver>, caller: &Caller, line: &str) -> Outcome {
    let parsed = match command::parse_line(line) {
        Ok(p) => p,
        Err(e) => {
            use clap::error::ErrorKind;
            let text = e.render().to_string();
            return Outcome::Done(match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => Reply::text(text),
                _ => Reply::failure(text, 2),
            });
        }
    };
    let json = parsed.json;
    let command_name = line.split_whitespace().next().unwrap_or("").to_string();
    let result = match (&caller.principal, parsed.command) {
        (
            Principal::Gateway(gateway),
            ControlCommand::Watch {
                since,
                epoch,
                after,
                max_grant,
            },
        ) => {
            return Outcome::Watch(WatchFrom {
                gateway: gateway.clone(),
                since,
                epoch,
                after,
                max_grant: max_grant.unwrap_or(0),
            });
        }
        (Principal::Gateway(_), ControlCommand::Report { seq, instance }) => {
            return Outcome::Report { seq, instance };
        }
        (Principal::Gateway(gw), ControlCommand::As { user, key, words }) => {
            return on_behalf(app, gw, &user, &key, &words).await;
        }
        (principal, cmd) => match authorize::authorize_identity(principal, &cmd) {
            Err(denied) => Err(denied.into()),
            Ok(()) => match principal {
                Principal::User(name) => {
                    return run_as_user(app, caller, name, cmd, json, command_name).await
                }
                Principal::Gateway(_) => Err(ApproverError::BadInput(
                    "this command cannot run here".into(),
                )),
            },
        },
    };
    finish(app, caller, result, json, command_name).await
}

/// A command a gateway relays for a user it authenticated. The approver checks that the key
/// the gateway names belongs to that user, then runs the words with the user's own rights.
async fn on_behalf(
    app: &Arc<Approver>,
    gateway: &str,
    user: &str,
    key: &str,
    words: &[String],
) -> Outcome {
    let catalog = app.catalog();
    let key_ok = catalog.users.get(user).is_some_and(|u| {
        u.keys.iter().any(|k| {
            portcullis_core::keys::parse_public_key(k)
                .map(|pk| portcullis_core::keys::fingerprint(&pk) == key)
                .unwrap_or(false)
        })
    });
    if !key_ok {
        let gw_caller = Caller {
            principal: Principal::Gateway(gateway.to_string()),
            fingerprint: String::new(),
        };
        let e = ApproverError::Forbidden(format!(
            "gateway {gateway} relayed a command for {user} with a key that is not {user}'s"
        ));
        return finish(app, &gw_caller, Err(e), false, "as".into()).await;
    }
    let line = command::join_words(words);
    let caller = Caller {
        principal: Principal::User(user.to_string()),
        fingerprint: key.to_string(),
    };
    match command::parse_line(&line) {
        Ok(parsed) => {
            let name = words.first().cloned().unwrap_or_default();
            match parsed.command {
                ControlCommand::Watch { .. }
                | ControlCommand::As { .. }
                | ControlCommand::Report { .. } => {
                    finish(
                        app,
                        &caller,
                        Err(ApproverError::Forbidden(format!(
                            "`{name}` is not a user command"
                        ))),
                        parsed.json,
                        name,
                    )
                    .await
                }
                cmd => run_as_user(app, &caller, user, cmd, parsed.json, name).await,
            }
        }
        Err(_) => Box::pin(execute(app, &caller, &line)).await,
    }
}

async fn run_as_user(
    app: &Arc<Approver>,
    caller: &Caller,
    name: &str,
    cmd: ControlCommand,
    json: bool,
    command_name: String,
) -> Outcome {
    let catalog = app.catalog();
    let result = match catalog.users.get(name).cloned() {
        None => Err(ApproverError::Forbidden(format!(
            "user {name} is no longer configured"
        ))),
        Some(user) => match cmd {
            ControlCommand::Wait { id } => match may_see_request(app, &user, id) {
                Ok(()) => return Outcome::Wait { id, json },
                Err(e) => Err(e),
            },
            ControlCommand::Audit(AuditCommand::Replay {
                session,
                speed,
                idle_limit,
            }) => {
                let idle = idle_limit
                    .as_deref()
                    .map(parse_duration)
                    .transpose()
                    .map_err(ApproverError::BadInput);
                match (permit(&user, Action::Audit, &catalog), idle) {
                    (Err(e), _) | (_, Err(e)) => Err(e),
                    (Ok(()), Ok(idle)) if speed > 0.0 && speed.is_finite() => {
                        match recording_file(app, &session) {
                            Ok((path, raw)) => {
                                return Outcome::Replay {
                                    path,
                                    raw,
                                    session,
                                    speed,
                                    idle,
                                }
                            }
                            Err(e) => Err(e),
                        }
                    }
                    _ => Err(ApproverError::BadInput("--speed must be above zero".into())),
                }
            }
            ControlCommand::Audit(AuditCommand::Export { session }) => {
                match permit(&user, Action::Audit, &catalog)
                    .and_then(|()| recording_file(app, &session))
                {
                    Ok((path, raw)) => return Outcome::Export { path, raw, session },
                    Err(e) => Err(e),
                }
            }
            cmd => run_user_command(app, caller, &user, &catalog, cmd, json).await,
        },
    };
    finish(app, caller, result, json, command_name).await
}

/// Turn a result into the reply; refusals for lack of permission are audit events.
async fn finish(
    app: &Arc<Approver>,
    caller: &Caller,
    result: Result<Reply, ApproverError>,
    json: bool,
    command_name: String,
) -> Outcome {
    Outcome::Done(match result {
        Ok(r) => r,
        Err(e) => {
            if let ApproverError::Forbidden(msg) = &e {
                let (Principal::User(actor) | Principal::Gateway(actor)) = &caller.principal;
                app.record_refusal(actor, command_name, msg.clone()).await;
            }
            error_reply(&e, json)
        }
    })
}

/// Record reports `seq`, `seq + 1`, … from gateway `gw` (bytes read from the channel by the
/// server).
pub(crate) async fn report(
    app: &Arc<Approver>,
    caller: &Caller,
    instance: &str,
    seq: u64,
    input: &[u8],
    recording: Option<portcullis_store::Incoming>,
) -> Reply {
    let Principal::Gateway(gw) = &caller.principal else {
        return error_reply(&ApproverError::Forbidden("not a gateway".into()), false);
    };
    match crate::sessions::report(app, gw, instance, seq, input, recording).await {
        Ok(m) => Reply::text(format!("{m}\n")),
        Err(e) => error_reply(&e, false),
    }
}

pub(crate) fn error_reply(e: &ApproverError, json: bool) -> Reply {
    let kind = match e {
        ApproverError::Refused(_) => "refused",
        ApproverError::Forbidden(_) => "forbidden",
        ApproverError::NotFound(_) => "not_found",
        ApproverError::Conflict(_) => "conflict",
        ApproverError::BadInput(_) => "bad_input",
        ApproverError::Store(_) => "store",
        ApproverError::Config(_) | ApproverError::Key(_) => "config",
        ApproverError::Recording(_) => "recording",
    };
    let mut r = Reply::failure(format!("portcullis: {e}\n"), 1);
    if json {
        r.out = format!("{}\n", json!({"error": kind, "message": e.to_string()}));
    }
    r
}

async fn run_user_command(
    app: &Arc<Approver>,
    caller: &Caller,
    user: &User,
    catalog: &Catalog,
    cmd: ControlCommand,
    json: bool,
) -> Result<Reply, ApproverError> {
    match cmd {
        ControlCommand::Request(args) => {
            permit(user, Action::Request, catalog)?;
            decisions::request(app, user, args, json).await
        }
        ControlCommand::Requests { all, limit, .. } => requests(app, user, all, limit, json),
        ControlCommand::Approve(args) => decisions::decide(app, user, args, true, json).await,
        ControlCommand::Deny(args) => decisions::decide(app, user, args, false, json).await,
        ControlCommand::Grants {
            active,
            user: for_user,
            target,
            limit,
        } => {
            permit(
                user,
                Action::ListGrants {
                    of: for_user.as_deref(),
                },
                catalog,
            )?;
            grants(app, user, (active, for_user, target), limit, json)
        }
        ControlCommand::Revoke { grant, reason } => {
            let reason = limits::text(&reason, "reason")?;
            revoke(app, user, grant, reason, json).await
        }
        ControlCommand::Sessions { live, limit } => {
            permit(user, Action::Sessions, catalog)?;
            let list: Vec<_> = app
                .store
                .sessions()?
                .into_iter()
                .filter(|s| !live || s.end.is_none())
                .collect();
            let empty = if live {
                "no live sessions"
            } else {
                "no sessions"
            };
            Ok(crate::sessions::listing(list, limit, json, empty))
        }
        ControlCommand::Kill { session } => {
            permit(user, Action::Kill, catalog)?;
            let rec = crate::sessions::kill(app, &user.name, &session).await?;
            Ok(out(
                json,
                crate::sessions::session_json(&rec),
                format!(
                    "session {} ({} on {}) is being cut by gateway {}\n",
                    clean(&rec.id),
                    clean(&rec.user),
                    clean(&rec.target),
                    clean(&rec.gateway)
                ),
            ))
        }
        ControlCommand::Status => {
            permit(user, Action::OwnView, catalog)?;
            status(app, user, json)
        }
        ControlCommand::Whoami => {
            permit(user, Action::OwnView, catalog)?;
            Ok(whoami(app, caller, user, json))
        }
        ControlCommand::Targets => {
            permit(user, Action::OwnView, catalog)?;
            Ok(targets(app, user, json))
        }
        ControlCommand::Reload => {
            permit(user, Action::Reload, catalog)?;
            let summary = app.reload(&user.name).await?;
            Ok(out(
                json,
                json!({"reloaded": true, "summary": summary}),
                format!("{summary}\n"),
            ))
        }
        ControlCommand::Audit(a) => {
            permit(user, Action::Audit, catalog)?;
            // Off the async workers: a verify reads the whole trail and every recording.
            let app = Arc::clone(app);
            tokio::task::spawn_blocking(move || audit(&app, a, json))
                .await
                .map_err(|e| ApproverError::Config(format!("the audit command failed: {e}")))?
        }
        ControlCommand::Wait { .. }
        | ControlCommand::Watch { .. }
        | ControlCommand::As { .. }
        | ControlCommand::Report { .. } => Err(ApproverError::BadInput(
            "this command cannot run here".into(),
        )),
    }
}

/// [`authorize`], its refusal as the error the caller reads.
fn permit(user: &User, action: Action<'_>, catalog: &Catalog) -> Result<(), ApproverError> {
    authorize(user, &action, catalog).map_err(ApproverError::from)
}

/// The requests `user` may see: pending ones from memory, or every one from the store.
fn visible_requests(app: &Approver, user: &User, all: bool) -> Result<Vec<Request>, ApproverError> {
    let catalog = app.catalog();
    let candidates = if all {
        app.store.requests()?
    } else {
        app.live
            .read()
            .map(|l| l.pending.values().cloned().collect())
            .unwrap_or_default()
    };
    Ok(candidates
        .into_iter()
        .filter(|r| authorize(user, &Action::SeeRequest(r.into()), &catalog).is_ok())
        .collect())
}

fn may_see_request(app: &Approver, user: &User, id: u64) -> Result<(), ApproverError> {
    match app.store.request(id)? {
        Some(r) => permit(user, Action::Wait((&r).into()), &app.catalog()),
        None => Err(not_found_request(id)),
    }
}

pub(crate) fn not_found_request(id: u64) -> ApproverError {
    ApproverError::NotFound(format!(
        "no request {id} that you can see — `requests --all` lists yours and those you may decide"
    ))
}

fn requests(
    app: &Approver,
    user: &User,
    all: bool,
    limit: u64,
    json: bool,
) -> Result<Reply, ApproverError> {
    let now = app.now();
    let mut list: Vec<Request> = visible_requests(app, user, all)?;
    list.sort_by_key(|r| r.id);
    let (list, more) = render::newest(list, limit);
    let value = json!({
        "requests": list.iter().map(|r| render::request_json(r, now)).collect::<Vec<_>>(),
        "more": more,
    });
    let empty = if all {
        "no requests"
    } else {
        "no pending requests"
    };
    let lines = list.iter().map(|r| render::request_line(r, now));
    Ok(out(json, value, render::listing(lines, more, limit, empty)))
}

/// Block until request `id` is decided. Exit 0 only when approved. The waiter sleeps on its
/// own request's notification and checks the in-memory mirror (see `waiters`); the store is
/// read once, for the answer.
pub(crate) async fn wait(app: &Approver, id: u64, json: bool) -> Reply {
    let waiting = app.waiters.register(id);
    waiting
        .until(|| {
            app.live
                .read()
                .map(|l| l.pending.contains_key(&id))
                .unwrap_or(false)
        })
        .await;
    let req = match app.store.request(id) {
        Ok(Some(r)) => r,
        Ok(None) => return error_reply(&not_found_request(id), json),
        Err(e) => return error_reply(&ApproverError::Store(e), json),
    };
    let (text, code) = match &req.state {
        RequestState::Approved { grant } => {
            let until = app
                .store
                .grant(*grant)
                .ok()
                .flatten()
                .and_then(|g| g.signed.grant().ok())
                .map(|g| format!(" until {}", g.expires_at))
                .unwrap_or_default();
            (format!("request {id} approved: grant {grant}{until}\n"), 0)
        }
        RequestState::Denied { by, note } => (
            format!(
                "request {id} denied by {}{}\n",
                clean(by),
                note.as_ref()
                    .map(|n| format!(": {}", clean(n)))
                    .unwrap_or_default()
            ),
            1,
        ),
        RequestState::Pending => (format!("request {id} is still pending\n"), 1),
        RequestState::Expired => (format!("request {id} expired undecided\n"), 1),
    };
    let mut r = out(json, render::request_json(&req, app.now()), text);
    r.code = code;
    r
}

/// `grants [--active] [--user U] [--target T]`: what to list.
type GrantFilter = (bool, Option<String>, Option<String>);

fn grants(
    app: &Approver,
    user: &User,
    (active, for_user, target): GrantFilter,
    limit: u64,
    json: bool,
) -> Result<Reply, ApproverError> {
    let now = app.now();
    let catalog = app.catalog();
    let all: Vec<Grant> =
        if active {
            app.live
                .read()
                .map(|l| l.grants.iter().cloned().collect())
                .unwrap_or_default()
        } else {
            let mut v = Vec::new();
            for (_, rec) in app.store.grants()? {
                v.push(rec.signed.grant().map_err(|e| {
                    ApproverError::Conflict(format!("unreadable grant record: {e}"))
                })?);
            }
            v
        };
    let mut list = Vec::new();
    for g in all {
        let visible = authorize(user, &Action::SeeGrant((&g).into()), &catalog).is_ok();
        let wanted = for_user.as_ref().is_none_or(|u| &g.user == u)
            && target.as_ref().is_none_or(|t| &g.target == t)
            && (!active || g.is_active(now));
        if visible && wanted {
            list.push(g);
        }
    }
    list.sort_by_key(|g| g.id);
    let (list, more) = render::newest(list, limit);
    let value = json!({
        "grants": list.iter().map(|g| render::grant_json(g, now)).collect::<Vec<_>>(),
        "more": more,
    });
    let lines = list.iter().map(|g| render::grant_line(g, now));
    Ok(out(
        json,
        value,
        render::listing(lines, more, limit, "no grants"),
    ))
}

async fn revoke(
    app: &Arc<Approver>,
    user: &User,
    id: u64,
    reason: Option<String>,
    json: bool,
) -> Result<Reply, ApproverError> {
    let grant = app
        .write(|tx| {
            let catalog = tx.catalog.clone();
            let rec = app.store.grant(id)?.ok_or_else(|| {
                ApproverError::NotFound(format!("no grant {id} — `grants` lists them"))
            })?;
            let mut g = rec
                .signed
                .grant()
                .map_err(|e| ApproverError::Conflict(format!("unreadable grant {id}: {e}")))?;
            // The rights the config in force gives: a user it no longer has keeps only what
            // needs no group (giving up their own grant).
            let unconfigured = User {
                name: user.name.clone(),
                keys: Vec::new(),
                groups: Default::default(),
            };
            let current = catalog.users.get(&user.name).unwrap_or(&unconfigured);
            permit(current, Action::Revoke((&g).into()), &catalog)?;
            if !g.is_active(tx.now) {
                return Err(ApproverError::Conflict(format!(
                    "grant {id} has already ended ({})",
                    g.status(tx.now).as_str()
                )));
            }
            g.revoked = Some(Revocation {
                at: tx.now,
                by: user.name.clone(),
                reason: reason.clone(),
            });
            tx.audit(
                AuditEvent::new(&user.name, EventKind::GrantRevoked)
                    .user(&g.user)
                    .target(&g.target)
                    .request(g.request)
                    .grant(g.id)
                    .reason(reason.clone()),
            );
            tx.put_grant(&g, true);
            Ok(g)
        })
        .await?;
    let now = app.now();
    Ok(out(
        json,
        render::grant_json(&grant, now),
        format!(
            "grant {} revoked: {} no longer has {}; sessions on it are cut\n",
            grant.id,
            clean(&grant.user),
            clean(&grant.target)
        ),
    ))
}

fn status(app: &Approver, user: &User, json: bool) -> Result<Reply, ApproverError> {
    let now = app.now();
    let (active, pending): (Vec<Grant>, Vec<Request>) = app
        .live
        .read()
        .map(|l| {
            (
                l.grants
                    .for_user(&user.name)
                    .filter(|g| g.is_active(now))
                    .cloned()
                    .collect(),
                l.pending
                    .values()
                    .filter(|r| r.user == user.name)
                    .cloned()
                    .collect(),
            )
        })
        .unwrap_or_default();
    let mut active = active;
    active.sort_by_key(|g| g.id);
    let targets = requestable(app, user);
    let value = json!({
        "user": user.name,
        "grants": active.iter().map(|g| render::grant_json(g, now)).collect::<Vec<_>>(),
        "pending": pending.iter().map(|r| render::request_json(r, now)).collect::<Vec<_>>(),
        "targets": targets.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>(),
    });
    let mut text = format!("{}\n", user.name);
    if active.is_empty() {
        text.push_str("active grants: none\n");
    } else {
        text.push_str("active grants:\n");
        for g in &active {
            text.push_str(&format!(
                "  {:<16} grant {:<5} {} left (until {})\n",
                clean(&g.target),
                g.id,
                format_duration(g.remaining(now)),
                g.expires_at
            ));
        }
    }
    if !pending.is_empty() {
        text.push_str("pending requests:\n");
        for r in &pending {
            text.push_str(&format!(
                "  {:<16} request {:<5} {}/{} approvals\n",
                clean(&r.target),
                r.id,
                r.approvals.len(),
                r.needed
            ));
        }
    }
    text.push_str(&format!(
        "targets you can request: {}\n",
        if targets.is_empty() {
            "none".to_string()
        } else {
            targets
                .iter()
                .map(|(t, _)| t.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        }
    ));
    Ok(out(json, value, text))
}

/// Targets with the policy a request by `user` would fall under (ignoring duration and reason).
fn requestable(app: &Approver, user: &User) -> Vec<(String, String)> {
    let catalog = app.catalog();
    let now = app.now();
    catalog
        .targets
        .values()
        .filter_map(|t| {
            let p = catalog.policies_for(t).find(|p| {
                !p.approvers.is_empty()
                    || p.auto_approve.as_ref().is_some_and(|a| {
                        a.groups.iter().any(|g| user.in_group(g))
                            && (a.windows.is_empty() || a.windows.iter().any(|w| w.contains(now)))
                    })
            })?;
            Some((t.name.clone(), p.name.clone()))
        })
        .collect()
}

fn whoami(app: &Approver, caller: &Caller, user: &User, json: bool) -> Reply {
    let catalog = app.catalog();
    let approves: Vec<&str> = catalog
        .policies
        .iter()
        .filter(|p| p.is_approver(user))
        .map(|p| p.name.as_str())
        .collect();
    let groups: Vec<&str> = user.groups.iter().map(|g| g.as_str()).collect();
    out(
        json,
        json!({"user": user.name, "groups": groups, "key": caller.fingerprint, "approver_of": approves}),
        format!(
            "{} (key {})\ngroups: {}\napprover of policies: {}\n",
            user.name,
            caller.fingerprint,
            if groups.is_empty() {
                "none".into()
            } else {
                groups.join(", ")
            },
            if approves.is_empty() {
                "none".into()
            } else {
                approves.join(", ")
            }
        ),
    )
}

fn targets(app: &Approver, user: &User, json: bool) -> Reply {
    let catalog = app.catalog();
    let reachable = requestable(app, user);
    let mut rows = Vec::new();
    let mut text = String::new();
    for t in catalog.targets.values() {
        let policy = reachable
            .iter()
            .find(|(n, _)| n == &t.name)
            .map(|(_, p)| p.clone());
        let Some(policy) = policy else { continue };
        let how = catalog
            .policy(&policy)
            .map(|p| {
                if p.auto_approve
                    .as_ref()
                    .is_some_and(|a| a.groups.iter().any(|g| user.in_group(g)))
                {
                    "auto-approved for you".to_string()
                } else {
                    format!("{} approval(s) from {}", p.approvals, p.approvers.join("/"))
                }
            })
            .unwrap_or_default();
        text.push_str(&format!(
            "{:<16} {:<4} policy {:<20} {}\n",
            t.name,
            t.kind.as_str(),
            policy,
            how
        ));
        rows.push(json!({"name": t.name, "kind": t.kind.as_str(), "labels": t.labels, "policy": policy, "approval": how}));
    }
    if rows.is_empty() {
        text.push_str("no targets you can request\n");
    }
    out(json, json!({"targets": rows}), text)
}

/// Where a session's recording is, and whether it is a raw data stream: for `audit export`
/// and `audit replay`, which read it in pieces.
fn recording_file(
    app: &Approver,
    session: &str,
) -> Result<(std::path::PathBuf, bool), ApproverError> {
    app.recordings
        .locate(session)
        .map_err(|e| ApproverError::Config(e.to_string()))?
        .ok_or_else(|| no_recording(app, session))
}

/// Why a session has no recording here.
fn no_recording(app: &Approver, session: &str) -> ApproverError {
    let why = match app.store.session(session) {
        Err(e) => return e.into(),
        Ok(None) => format!("no session {session:?} — `audit sessions` lists them"),
        Ok(Some(s)) if s.end.is_none() => {
            format!("session {session} is still live; its recording arrives when it ends")
        }
        Ok(Some(_)) => format!(
            "session {session} has no recording (pty sessions are recorded; others only where record_data = true)"
        ),
    };
    ApproverError::NotFound(why)
}

fn audit(app: &Approver, cmd: AuditCommand, json: bool) -> Result<Reply, ApproverError> {
    match cmd {
        AuditCommand::Log { since, limit } => {
            let cutoff = since
                .as_deref()
                .map(parse_duration)
                .transpose()
                .map_err(ApproverError::BadInput)?
                .map(|d| app.now().minus(d));
            Ok(audit_log(app, cutoff, limit, json))
        }
        AuditCommand::Sessions {
            user,
            target,
            since,
            live,
            limit,
        } => {
            let cutoff = since
                .as_deref()
                .map(parse_duration)
                .transpose()
                .map_err(ApproverError::BadInput)?
                .map(|d| app.now().minus(d));
            let list: Vec<_> = app
                .store
                .sessions()?
                .into_iter()
                .filter(|s| {
                    (!live || s.end.is_none())
                        && user.as_ref().is_none_or(|u| &s.user == u)
                        && target.as_ref().is_none_or(|t| &s.target == t)
                        && cutoff.is_none_or(|c| s.started_at >= c)
                })
                .collect();
            Ok(crate::sessions::listing(list, limit, json, "no sessions"))
        }
        AuditCommand::Export { .. } => Err(ApproverError::BadInput(
            "export streams; it cannot run here".into(),
        )),
        AuditCommand::Replay { .. } => Err(ApproverError::BadInput(
            "replay streams; it cannot run here".into(),
        )),
        AuditCommand::Verify => match verify(app, json) {
            Ok(reply) => Ok(reply),
            // Exit 2, not 1: nothing was found wrong, the check could not be made.
            Err(e) => {
                let mut r = Reply::failure(format!("portcullis: could not verify: {e}\n"), 2);
                if json {
                    r.out = format!("{}\n", json!({"ok": null, "error": e.to_string()}));
                }
                Ok(r)
            }
        },
    }
}

/// `audit verify`: the chain up to the signed head read under the writer (records committed
/// while it runs come after it), every signature, and every finished recording.
fn verify(app: &Approver, json: bool) -> Result<Reply, ApproverError> {
    let end = app.audit_end()?;
    let upto = match &end.signed {
        Some(Ok(h)) => h.peek().map(|h| h.seq).unwrap_or(u64::MAX),
        _ => u64::MAX,
    };
    let key = app.keys.signing().verifying_key();
    let records = || {
        app.store
            .audit_records()
            .take_while(move |(position, _)| *position <= upto)
    };
    // The key in force now signed the newest records; a rotation in the log hands back to
    // the key before it.
    let chain = portcullis_audit::KeySchedule::from_log(&key, records())
        .and_then(|schedule| portcullis_audit::verify_scheduled(&schedule, records(), &end))
        .map_err(|b| (b.first_bad(), b.to_string()));
    // Recordings are checked against the hashes in the signed end events.
    let expected = portcullis_audit::expected_recordings(app.store.audit_records());
    let (hashes, removed) = (expected.present, expected.removed.len());
    let result = chain.and_then(|v| {
        for (session, sha) in &hashes {
            let found = app
                .recordings
                .sha256(session)
                .map_err(|e| (0, e.to_string()))?;
            portcullis_audit::verify_recording_hash(session, sha, found)
                .map_err(|b| (0, b.to_string()))?;
        }
        Ok((v, hashes.len()))
    });
    match result {
        Ok((v, recordings)) => {
            let signed = v.signed_head.map(|h| h.at.rfc3339());
            let mut reply = out(
                        json,
                        json!({"ok": true, "records": v.records, "recordings": recordings, "recordings_removed_by_retention": removed, "head": hex::encode(v.head), "head_signed_at": signed}),
                        format!(
                            "audit log verified: {} records, chain intact, every signature valid, ends at its {} (head {}); {recordings} recordings match their hashes{}\n",
                            v.records,
                            signed.as_deref().map_or("unsigned head".to_string(), |at| format!("signed head of {at}")),
                            hex::encode(v.head),
                            removed_note(removed)
                        ),
                    );
            if v.signed_head.is_none() && v.records > 0 {
                reply.err = format!("portcullis: warning: {}\n", portcullis_audit::UNSIGNED_HEAD);
            }
            Ok(reply)
        }
        Err((first_bad, broken)) => {
            let mut r = Reply::failure(
                format!(
                    "portcullis: audit log verification FAILED: {}\n",
                    clean(&broken)
                ),
                1,
            );
            if json {
                r.out = format!(
                    "{}\n",
                    json!({"ok": false, "first_bad": first_bad, "error": broken})
                );
            }
            Ok(r)
        }
    }
}

/// `audit log`: the newest `limit` events since `cutoff`, oldest first, one a line (JSON Lines
/// with `--json`, where the note that more exist goes to stderr so the lines stay events).
/// Only `limit` records are held at a time, however long the log.
fn audit_log(
    app: &Approver,
    cutoff: Option<portcullis_core::Timestamp>,
    limit: u64,
    json: bool,
) -> Reply {
    let keep = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut newest = std::collections::VecDeque::new();
    let mut more = 0usize;
    for (seq, rec) in app.store.audit_records() {
        let line = match rec {
            Ok(r) if cutoff.is_some_and(|c| r.at < c) => continue,
            Ok(r) if json => r.to_json().to_string(),
            Ok(r) => format!("{:>6}  {}  {}", r.seq, r.at, clean(&r.event.summary())),
            Err(e) if json => json!({"seq": seq, "error": e.to_string()}).to_string(),
            Err(e) => format!("{seq:>6}  <unreadable record: {}>", clean(&e.to_string())),
        };
        newest.push_back(line);
        if newest.len() > keep {
            newest.pop_front();
            more += 1;
        }
    }
    let mut text = String::new();
    for line in newest {
        text.push_str(&line);
        text.push('\n');
    }
    let note = (more > 0).then(|| render::more_line(more, limit));
    match note {
        Some(n) if json => Reply {
            out: text,
            err: n,
            code: 0,
        },
        Some(n) => Reply::text(text + &n),
        None => Reply::text(text),
    }
}

/// `; 3 removed by retention`, or nothing.
pub(crate) fn removed_note(removed: usize) -> String {
    match removed {
        0 => String::new(),
        1 => "; 1 removed by retention (its removal is in the log)".into(),
        n => format!("; {n} removed by retention (their removals are in the log)"),
    }
}
