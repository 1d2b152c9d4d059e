//! `[[users]]`: who may log in, with which keys, in which groups. Owns the users' names, keys
//! and the groups they name; `[[groups]]` adds to both afterwards.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::catalog::{Gateway, User};

use super::groups::Groups;
use super::identity::KeyOwners;
use super::problems::Problems;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    pub name: String,
    #[serde(default)]
    pub keys: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
}

/// The users by name. A group a user names is created in `groups` with them as a member.
pub(super) fn validate(
    p: &mut Problems,
    owners: &mut KeyOwners,
    entries: &[UserEntry],
    gateways: &BTreeMap<String, Gateway>,
    groups: &mut Groups,
) -> BTreeMap<String, User> {
    let mut users = BTreeMap::new();
    for (i, u) in entries.iter().enumerate() {
        let field = format!("users[{i}]");
        p.name(&format!("{field}.name"), &u.name);
        if users.contains_key(&u.name) {
            p.push(
                format!("{field}.name"),
                format!("duplicate user {:?}", u.name),
            );
        }
        if gateways.contains_key(&u.name) {
            p.push(
                format!("{field}.name"),
                format!("{:?} is also a gateway's name", u.name),
            );
        }
        if u.keys.is_empty() {
            p.push(
                format!("{field} ({}).keys", u.name),
                "a user needs at least one public key",
            );
        }
        let mut keys = Vec::new();
        for (j, k) in u.keys.iter().enumerate() {
            let field = format!("{field} ({}).keys[{j}]", u.name);
            if let Some(norm) = owners.claim(p, &field, format!("user {}", u.name), k) {
                keys.push(norm);
            }
        }
        let mut user_groups = BTreeSet::new();
        for (j, g) in u.groups.iter().enumerate() {
            p.name(&format!("{field} ({}).groups[{j}]", u.name), g);
            groups.entry(g.clone()).or_default().insert(u.name.clone());
            user_groups.insert(g.clone());
        }
        users.insert(
            u.name.clone(),
            User {
                name: u.name.clone(),
                keys,
                groups: user_groups,
            },
        );
    }
    users
}
