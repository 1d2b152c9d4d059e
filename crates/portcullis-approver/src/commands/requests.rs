//! Requests as their requesters and approvers see them: `requests` and `wait`. Creating and
//! deciding them is [`super::decisions`]'s (it writes); this module only reads.

use portcullis_core::catalog::{Catalog, User};
use portcullis_core::model::{Request, RequestState};
use serde_json::json;

use super::{authorize, error_reply, out, permit, Action, Outcome, Reply};
use crate::app::Approver;
use crate::errors::ApproverError;
use crate::render::{self, clean};

/// `requests [--pending | --all]`: those `user` may see, oldest first, the newest `limit`.
pub(super) fn list(
    app: &Approver,
    user: &User,
    catalog: &Catalog,
    all: bool,
    limit: u64,
    json: bool,
) -> Result<Reply, ApproverError> {
    let now = app.now();
    // Pending ones from the in-memory mirror; only `--all` reads the store.
    let candidates = if all {
        app.store.requests()?
    } else {
        app.live
            .read()
            .map(|l| l.pending.values().cloned().collect())
            .unwrap_or_default()
    };
    let mut list: Vec<Request> = candidates
        .into_iter()
        .filter(|r| authorize(user, &Action::SeeRequest(r.into()), catalog).is_ok())
        .collect();
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

/// `wait ID`: whether `user` may wait on it; the server then blocks in [`wait`].
pub(super) fn wait_for(
    app: &Approver,
    user: &User,
    catalog: &Catalog,
    id: u64,
    json: bool,
) -> Result<Outcome, ApproverError> {
    let req = app
        .store
        .request(id)?
        .ok_or_else(|| not_found_request(id))?;
    permit(user, Action::Wait((&req).into()), catalog)?;
    Ok(Outcome::Wait { id, json })
}

pub(super) fn not_found_request(id: u64) -> ApproverError {
    ApproverError::NotFound(format!(
        "no request {id} that you can see — `requests --all` lists yours and those you may decide"
    ))
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
