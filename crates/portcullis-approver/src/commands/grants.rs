//! Grants and their end: `grants` and `revoke`.
//!
//! A revocation is decided under the writer, against the catalog in force, and re-signs the
//! grant with `revoked` set so that the gateways cut its sessions; nothing here touches a
//! session directly.

use std::sync::Arc;

use portcullis_core::audit_event::{AuditEvent, EventKind};
use portcullis_core::catalog::{Catalog, User};
use portcullis_core::model::{Grant, Revocation};

use super::{authorize, permit, Action, Reply};
use crate::app::Approver;
use crate::errors::ApproverError;
use crate::limits;
use crate::render;

/// `grants [--active] [--user U] [--target T]`: what to list.
pub(super) struct GrantFilter {
    pub active: bool,
    pub user: Option<String>,
    pub target: Option<String>,
}

/// The grants `user` may see that `filter` asks for, oldest first, the newest `limit`.
/// Asking for another user's is checked by the caller ([`Action::ListGrants`]).
pub(super) fn list(
    app: &Approver,
    user: &User,
    catalog: &Catalog,
    filter: GrantFilter,
    limit: u64,
    json: bool,
) -> Result<Reply, ApproverError> {
    let now = app.now();
    // Live ones from the in-memory mirror; only a full listing reads the store.
    let all: Vec<Grant> =
        if filter.active {
            app.live.get().grants.iter().cloned().collect()
        } else {
            let mut v = Vec::new();
            for (_, rec) in app.store.grants()? {
                v.push(rec.signed.grant().map_err(|e| {
                    ApproverError::Conflict(format!("unreadable grant record: {e}"))
                })?);
            }
            v
        };
    let mut list: Vec<Grant> = all
        .into_iter()
        .filter(|g| {
            authorize(user, &Action::SeeGrant(g.into()), catalog).is_ok()
                && filter.user.as_ref().is_none_or(|u| &g.user == u)
                && filter.target.as_ref().is_none_or(|t| &g.target == t)
                && (!filter.active || g.is_active(now))
        })
        .collect();
    list.sort_by_key(|g| g.id);
    Ok(render::grants::list(list, limit, now, json))
}

/// `revoke GRANT_ID`: end the grant now, under the writer and the catalog in force.
pub(super) async fn revoke(
    app: &Arc<Approver>,
    user: &User,
    id: u64,
    reason: &[String],
    json: bool,
) -> Result<Reply, ApproverError> {
    let reason = limits::text(reason, "reason")?;
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
    Ok(render::grants::revoked(&grant, app.now(), json))
}
