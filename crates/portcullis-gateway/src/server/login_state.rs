//! Who a connection's login proves to be: a configured user's key or a certificate of a
//! trusted CA (decided after the signature, never at the offer), the user's connection cap,
//! and what the login is for. The russh handler in the parent module calls these.

use portcullis_core::keys;
use portcullis_core::user_ca::Binding;
use portcullis_ssh::login::{Reason, Refusal};
use portcullis_ssh::server::Standing;
use russh::server::Auth;

use super::{split_login, Mode, UserConnection};
use crate::session::Holder;

impl UserConnection {
    /// The user a verified (or offered) key proves for this login, if any.
    /// A key any user CA revoked is nobody's.
    pub(super) fn identify(&self, login: &str, key: &russh::keys::PublicKey) -> Option<String> {
        let catalog = self.gw.catalog()?;
        let (name, _) = split_login(login);
        let user = catalog.users.get(name)?;
        catalog
            .user_holds_key(&user.name, &keys::normalize(key))
            .then(|| user.name.clone())
    }

    /// Why `identify` found nobody, for the refusals' metric.
    pub(super) fn why_unknown(&self, login: &str, key: &russh::keys::PublicKey) -> &'static str {
        let Some(catalog) = self.gw.catalog() else {
            return "no_catalog";
        };
        let norm = keys::normalize(key);
        // Scanned whether or not the user exists, so that an unknown user's refusal takes as
        // long as a known one's (the refusal floor is only 1 ms: AUTH_REFUSAL_FLOOR).
        let held = catalog.users.values().any(|u| u.keys.contains(&norm));
        let revoked = catalog.key_revoked(&keys::fingerprint(key)).is_some();
        if !catalog.users.contains_key(split_login(login).0) {
            "unknown_user"
        } else if revoked {
            "revoked"
        } else if held {
            "wrong_user"
        } else {
            "unknown_key"
        }
    }

    /// How the user reaches this gateway, for the commands we suggest: `-p PORT USER@HOST`.
    pub(super) fn reach(&self, user: &str) -> String {
        match self.local {
            Some(a) => format!("ssh -p {} {user}@{}", a.port(), a.ip()),
            None => format!("ssh {user}@bastion"),
        }
    }

    /// A verified login of `name`, by its key (normalised) or by a certificate (its binding):
    /// counted against the user's cap, then held for the connection's channels.
    pub(super) fn logged_in(
        &mut self,
        login: &str,
        name: String,
        key: String,
        public: &russh::keys::PublicKey,
    ) -> Auth {
        let fingerprint = keys::fingerprint(public);
        if let Err(why) = self.admit(&name) {
            tracing::warn!("{}: {name} ({fingerprint}) refused: {why}", self.peer);
            let why = Reason::Admission(why.reason(), why.to_string());
            Refusal::new(login, public, why, true).keep(&mut self.refused);
            return Auth::reject();
        }
        let how = Binding::parse(&key)
            .map(|b| {
                format!(
                    ", certificate of CA {} serial {} key id {:?}",
                    b.ca, b.serial, b.key_id
                )
            })
            .unwrap_or_default();
        tracing::info!("{}: authenticated {name} ({fingerprint}{how})", self.peer);
        self.mode = match split_login(login).1 {
            Some(target) => Mode::Recorded(target.to_string()),
            None => Mode::Commands,
        };
        // The handle comes with the first channel; until then there is nothing to hold.
        self.holder = Some(Holder {
            reach: self.reach(&name),
            user: name,
            key,
            fingerprint,
            client: self.peer.to_string(),
            conn: self.id,
            handle: None,
        });
        Auth::Accept
    }

    /// Count the connection against the user's cap; admins may use the reserve.
    pub(super) fn admit(&self, user: &str) -> Result<(), portcullis_ssh::server::Refused> {
        let admin = self
            .gw
            .catalog()
            .and_then(|c| c.users.get(user).map(|u| u.is_admin()))
            .unwrap_or(false);
        let standing = if admin {
            Standing::Reserved
        } else {
            Standing::Ordinary
        };
        self.state.authenticate(user, standing)
    }
}
