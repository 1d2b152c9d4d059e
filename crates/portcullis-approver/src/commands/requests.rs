//! Requests as their requesters and approvers see them: `requests` and `wait`. Creating and
//! deciding them is [`super::decisions`]'s (it writes); this module only reads.

use portcullis_core::catalog::{Catalog, User};
use portcullis_core::model::{Request, RequestState};

use super::{authorize, error_reply, permit, Action, Outcome, Reply};
use crate::app::Approver;
use crate::errors::ApproverError;
use crate::render;

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
        app.live.get().pending.values().cloned().collect()
    };
    let mut list: Vec<Request> = candidates
        .into_iter()
        .filter(|r| authorize(user, &Action::SeeRequest(r.into()), catalog).is_ok())
        .collect();
    list.sort_by_key(|r| r.id);
    Ok(render::requests::list(list, all, limit, now, json))
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
/// own request's notification and checks the in-memory mirror (see `crate::live`); the store is
/// read once, for the answer.
pub(crate) async fn wait(app: &Approver, id: u64, json: bool) -> Reply {
    let waiting = app.waiters.register(id);
    waiting
        .until(|| app.live.get().pending.contains_key(&id))
        .await;
    let req = match app.store.request(id) {
        Ok(Some(r)) => r,
        Ok(None) => return error_reply(&not_found_request(id), json),
        Err(e) => return error_reply(&ApproverError::Store(e), json),
    };
    // The grant's end, where it can be read: the answer is still right without it.
    let until = match &req.state {
        RequestState::Approved { grant } => app
            .store
            .grant(*grant)
            .ok()
            .flatten()
            .and_then(|g| g.signed.grant().ok())
            .map(|g| g.expires_at),
        _ => None,
    };
    render::requests::waited(&req, until, app.now(), json)
}
