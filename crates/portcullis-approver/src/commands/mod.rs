//! The control-plane commands: an exec line in, a reply (or a stream for the server to run)
//! out.
//!
//! Every line takes one path. [`execute`] parses it and, for a gateway, opens the `as`
//! envelope it relays a user's words in ([`route`]); [`authorize::authorize_identity`] says
//! which kind of identity may run it and [`authorize()`] whether this user may (SPEC's
//! permission table, in one pure function); [`run`] hands it to the handler of its area:
//!
//! - [`requests`] and [`decisions`]: `request`, `requests`, `approve`, `deny`, `cancel`,
//!   `wait`;
//! - [`grants`]: `grants`, `revoke`;
//! - [`own_view`]: `status`, `whoami`, `targets`;
//! - [`audit`]: `sessions`, `kill`, `audit …`;
//! - [`help`]: no command at all, or `help` alone: the commands this user may run.
//!
//! Refusals for lack of permission become `command.refused` audit events here, in one place.
//! This module holds no rule of its own (those are `authorize`'s and the policy's) and writes
//! only through [`Approver::write`].

use std::sync::Arc;

use portcullis_core::catalog::{Catalog, Principal, User};
use portcullis_core::command::{self, ControlCommand};

use crate::app::Approver;
use crate::errors::ApproverError;
use crate::render;

mod audit;
mod authorize;
mod decisions;
mod grants;
mod help;
mod own_view;
mod requests;

use authorize::{authorize, Action};
use requests::not_found_request;

pub(crate) use crate::render::{error_reply, Reply};
pub(crate) use requests::wait;

/// Who is asking: what their key proved, and from where.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub principal: Principal,
    pub fingerprint: String,
    /// The certificate a direct login presented, checked again before every command: a
    /// connection kept open must not outlive its certificate's revocation.
    pub certificate: Option<portcullis_core::user_ca::Binding>,
    /// How they reach us, as the start of an ssh command line (`ssh -p 2223 alice@10.0.0.2`),
    /// for the commands a reply suggests; `None` where that is not known.
    pub reach: Option<String>,
}

impl Caller {
    /// A caller on a connection of their own to `local`, the address they connected to.
    pub(crate) fn connected(
        principal: Principal,
        fingerprint: String,
        local: Option<std::net::SocketAddr>,
    ) -> Caller {
        let reach = match (&principal, local) {
            (Principal::User(user), Some(a)) => {
                Some(format!("ssh -p {} {user}@{}", a.port(), a.ip()))
            }
            _ => None,
        };
        Caller {
            principal,
            fingerprint,
            certificate: None,
            reach,
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
    /// The key the gateway logged in with: the stream ends once the catalog no longer
    /// gives it to this gateway (removed, replaced or revoked on reload).
    pub fingerprint: String,
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

/// Who asked, and how, for the reply and for the audit log should the command be refused.
struct Asker {
    caller: Caller,
    json: bool,
    /// The command's first word, as refusals are audited under.
    name: String,
}

/// Where a line goes once parsed and unwrapped.
enum Route {
    /// Answered without running a user command: help, a usage error, a gateway's stream or
    /// report.
    Answered(Outcome),
    Refused(Asker, ApproverError),
    Run(Asker, ControlCommand),
}

/// Run one exec line for `caller`.
pub(crate) async fn execute(app: &Arc<Approver>, caller: &Caller, line: &str) -> Outcome {
    let (asker, result) = match route(app, caller, line) {
        Route::Answered(outcome) => return outcome,
        Route::Refused(asker, e) => (asker, Err(e)),
        Route::Run(asker, command) => {
            let result = run(app, &asker, command).await;
            (asker, result)
        }
    };
    match result {
        Ok(outcome) => outcome,
        Err(e) => Outcome::Done(failed(app, &asker, e).await),
    }
}

/// Whether the key gateway `name` logged in with is still its, and not revoked.
pub(crate) fn gateway_still_holds(
    catalog: &portcullis_core::catalog::Catalog,
    name: &str,
    fingerprint: &str,
) -> Result<(), ApproverError> {
    if catalog.holds_fingerprint(&Principal::Gateway(name.to_string()), fingerprint) {
        return Ok(());
    }
    Err(ApproverError::Forbidden(format!(
        "the key gateway {name} logged in with ({fingerprint}) is no longer its, or is revoked"
    )))
}

/// Parse `line`, check which identity may run it, and unwrap a gateway's relay envelope.
fn route(app: &Approver, caller: &Caller, line: &str) -> Route {
    if let Principal::User(user) = &caller.principal {
        // A line that does not split is parse_line's to report below.
        let words = shell_words::split(line).unwrap_or_else(|_| vec![line.to_string()]);
        if let Some(json) = help::asked(&words) {
            return Route::Answered(commands_for(app, user, caller.reach.as_deref(), json));
        }
    }
    let parsed = match command::parse_line(line) {
        Ok(p) => p,
        Err(e) => return Route::Answered(Outcome::Done(render::usage(&e))),
    };
    let asker = Asker {
        caller: caller.clone(),
        json: parsed.json,
        name: line.split_whitespace().next().unwrap_or("").to_string(),
    };
    if let Err(denied) = authorize::authorize_identity(&caller.principal, &parsed.command) {
        return Route::Refused(asker, denied.into());
    }
    let Principal::Gateway(gateway) = &caller.principal else {
        return Route::Run(asker, parsed.command);
    };
    // As for users at every command: a gateway's connection must not outlive its key's
    // removal or revocation (a stolen gateway key, revoked on reload).
    if let Err(e) = gateway_still_holds(&app.catalog(), gateway, &caller.fingerprint) {
        return Route::Refused(asker, e);
    }
    match parsed.command {
        ControlCommand::Watch {
            since,
            epoch,
            after,
            max_grant,
        } => Route::Answered(Outcome::Watch(WatchFrom {
            gateway: gateway.clone(),
            since,
            epoch,
            after,
            max_grant: max_grant.unwrap_or(0),
            fingerprint: caller.fingerprint.clone(),
        })),
        ControlCommand::Report { seq, instance } => {
            Route::Answered(Outcome::Report { seq, instance })
        }
        ControlCommand::As {
            user,
            key,
            reach,
            words,
        } => relayed(app, asker, &user, &key, reach, &words),
        // Refused by `authorize_identity` above.
        command => Route::Run(asker, command),
    }
}

/// A user the gateway authenticated by certificate: it relays the login's binding instead of a
/// key's fingerprint, which holds while its CA is trusted and nothing it names is revoked.
fn certified_user(catalog: &portcullis_core::Catalog, user: &str, key: &str) -> bool {
    portcullis_core::user_ca::Binding::parse(key).is_some_and(|b| b.still_valid(catalog, user))
}

/// A command a gateway relays for a user it authenticated: the key it names must be one of
/// that user's (or the binding of a certificate login); the words then run as theirs, with
/// their own rights.
fn relayed(
    app: &Approver,
    gateway: Asker,
    user: &str,
    key: &str,
    reach: Option<String>,
    words: &[String],
) -> Route {
    let catalog = app.catalog();
    let key_ok = catalog.holds_fingerprint(&Principal::User(user.to_string()), key)
        || certified_user(&catalog, user, key);
    if !key_ok {
        let Principal::Gateway(name) = &gateway.caller.principal else {
            return Route::Refused(gateway, ApproverError::Forbidden("not a gateway".into()));
        };
        let e = ApproverError::Forbidden(format!(
            "gateway {name} relayed a command for {user} with a key that is not {user}'s"
        ));
        let gateway = Asker {
            json: false,
            name: "as".into(),
            ..gateway
        };
        return Route::Refused(gateway, e);
    }
    if let Some(json) = help::asked(words) {
        return Route::Answered(commands_for(app, user, reach.as_deref(), json));
    }
    let parsed = match command::parse_line(&command::join_words(words)) {
        Ok(p) => p,
        Err(e) => return Route::Answered(Outcome::Done(render::usage(&e))),
    };
    // A certificate login is shown by the fingerprint of the key it certifies.
    let fingerprint = portcullis_core::user_ca::Binding::parse(key)
        .map_or_else(|| key.to_string(), |b| b.key_fingerprint);
    let asker = Asker {
        caller: Caller {
            principal: Principal::User(user.to_string()),
            fingerprint,
            certificate: portcullis_core::user_ca::Binding::parse(key),
            // What the gateway says, or nothing: the approver's own address is no use to
            // someone who came through a gateway.
            reach,
        },
        json: parsed.json,
        name: words.first().cloned().unwrap_or_default(),
    };
    match parsed.command {
        ControlCommand::Watch { .. }
        | ControlCommand::As { .. }
        | ControlCommand::Report { .. } => {
            let e = ApproverError::Forbidden(format!("`{}` is not a user command", asker.name));
            Route::Refused(asker, e)
        }
        command => Route::Run(asker, command),
    }
}

/// The commands `user` may run, for someone who connected without one.
fn commands_for(app: &Approver, user: &str, reach: Option<&str>, json: bool) -> Outcome {
    let catalog = app.catalog();
    Outcome::Done(match catalog.users.get(user) {
        Some(u) => render::help::commands(user, reach, &help::entries(u, &catalog), json),
        None => error_reply(
            &ApproverError::Forbidden(format!("user {user} is no longer configured")),
            json,
        ),
    })
}

/// Run a user's command: the user as the catalog in force has them, the permission for the
/// command as a whole where it needs none of its object, then the handler of its area (which
/// asks [`authorize()`] about the object once it has it).
async fn run(
    app: &Arc<Approver>,
    asker: &Asker,
    command: ControlCommand,
) -> Result<Outcome, ApproverError> {
    let Principal::User(name) = &asker.caller.principal else {
        return Err(ApproverError::BadInput(
            "this command cannot run here".into(),
        ));
    };
    let catalog = app.catalog();
    let user = catalog
        .users
        .get(name)
        .ok_or_else(|| ApproverError::Forbidden(format!("user {name} is no longer configured")))?;
    // What the login rested on is checked against the catalog in force at every command, as
    // the gateway does at every use: a connection kept open (a ControlMaster) must not outlive
    // a revocation or the key's removal.
    match &asker.caller.certificate {
        Some(cert) if !cert.still_valid(&catalog, name) => {
            return Err(ApproverError::Forbidden(format!(
                "the certificate this connection logged in with (CA {}, serial {}) is no longer accepted; log in again",
                cert.ca, cert.serial
            )));
        }
        None if !catalog.holds_fingerprint(&asker.caller.principal, &asker.caller.fingerprint) => {
            return Err(ApproverError::Forbidden(format!(
                "the key this login rests on ({}) is no longer {name}'s, or is revoked; log in again",
                asker.caller.fingerprint
            )));
        }
        _ => {}
    }
    let json = asker.json;
    let reply = match command {
        ControlCommand::Request(args) => {
            permit(user, Action::Request, &catalog)?;
            decisions::request(app, user, args, asker.caller.reach.as_deref(), json).await?
        }
        ControlCommand::Requests { all, limit, .. } => {
            requests::list(app, user, &catalog, all, limit, json)?
        }
        ControlCommand::Approve(args) => decisions::decide(app, user, args, true, json).await?,
        ControlCommand::Deny(args) => decisions::decide(app, user, args, false, json).await?,
        ControlCommand::Wait { id } => return requests::wait_for(app, user, &catalog, id, json),
        ControlCommand::Cancel { id, reason } => {
            decisions::cancel(app, user, id, &reason, json).await?
        }
        ControlCommand::Grants {
            active,
            user: of,
            target,
            limit,
        } => {
            permit(user, Action::ListGrants { of: of.as_deref() }, &catalog)?;
            let filter = grants::GrantFilter {
                active,
                user: of,
                target,
            };
            grants::list(app, user, &catalog, filter, limit, json)?
        }
        ControlCommand::Revoke { grant, reason } => {
            grants::revoke(app, user, grant, &reason, json).await?
        }
        ControlCommand::Sessions { live, limit } => {
            permit(user, Action::Sessions, &catalog)?;
            return audit::sessions(app, live, limit, json).await;
        }
        ControlCommand::Kill { session } => {
            permit(user, Action::Kill, &catalog)?;
            audit::kill(app, &user.name, &session, json).await?
        }
        ControlCommand::Status => {
            permit(user, Action::OwnView, &catalog)?;
            own_view::status(app, user, json)
        }
        ControlCommand::Whoami => {
            permit(user, Action::OwnView, &catalog)?;
            own_view::whoami(app, &asker.caller.fingerprint, user, json)
        }
        ControlCommand::Targets => {
            permit(user, Action::OwnView, &catalog)?;
            own_view::targets(app, user, json)
        }
        ControlCommand::Reload => {
            permit(user, Action::Reload, &catalog)?;
            let summary = app.reload(&user.name).await?;
            render::audit::reloaded(&summary, json)
        }
        ControlCommand::Audit(a) => {
            permit(user, Action::Audit, &catalog)?;
            return audit::run(app, a, json).await;
        }
        // Refused by `authorize_identity` before they get here.
        ControlCommand::Watch { .. }
        | ControlCommand::As { .. }
        | ControlCommand::Report { .. } => {
            return Err(ApproverError::BadInput(
                "this command cannot run here".into(),
            ))
        }
    };
    Ok(Outcome::Done(reply))
}

/// [`authorize()`], its refusal as the error the caller reads.
fn permit(user: &User, action: Action<'_>, catalog: &Catalog) -> Result<(), ApproverError> {
    authorize(user, &action, catalog).map_err(ApproverError::from)
}

/// The reply for a failed command; a refusal for lack of permission is an audit event.
async fn failed(app: &Approver, asker: &Asker, e: ApproverError) -> Reply {
    if let ApproverError::Forbidden(msg) = &e {
        let (Principal::User(actor) | Principal::Gateway(actor)) = &asker.caller.principal;
        app.record_refusal(actor, asker.name.clone(), msg.clone())
            .await;
    }
    error_reply(&e, asker.json)
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
        Ok(notes) => render::audit::reports_acknowledged(&notes),
        Err(e) => error_reply(&e, false),
    }
}
