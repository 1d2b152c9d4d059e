//! `[[groups]]`: groups declared on their own (possibly empty), and members added to them.
//! Owns the group table the catalog ends with: the built-in groups, those users name, those
//! declared here.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::catalog::{User, BUILTIN_GROUPS};

use super::problems::Problems;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupEntry {
    pub name: String,
    #[serde(default)]
    pub members: Vec<String>,
    pub description: Option<String>,
}

/// Group name → its members.
pub(super) type Groups = BTreeMap<String, BTreeSet<String>>;

/// The groups every deployment has, empty until users join them.
pub(super) fn builtin() -> Groups {
    BUILTIN_GROUPS
        .iter()
        .map(|g| (g.to_string(), BTreeSet::new()))
        .collect()
}

/// Adds the declared groups to `groups`, and each listed member (an existing user) to its
/// group, on both sides.
pub(super) fn validate(
    p: &mut Problems,
    entries: &[GroupEntry],
    users: &mut BTreeMap<String, User>,
    groups: &mut Groups,
) {
    let mut declared = BTreeSet::new();
    for (i, g) in entries.iter().enumerate() {
        let field = format!("groups[{i}]");
        p.name(&format!("{field}.name"), &g.name);
        if !declared.insert(g.name.clone()) {
            p.push(
                format!("{field}.name"),
                format!("duplicate group {:?}", g.name),
            );
        }
        groups.entry(g.name.clone()).or_default();
        for (j, m) in g.members.iter().enumerate() {
            match users.get_mut(m) {
                Some(u) => {
                    u.groups.insert(g.name.clone());
                    groups.entry(g.name.clone()).or_default().insert(m.clone());
                }
                None => p.push(
                    format!("{field} ({}).members[{j}]", g.name),
                    format!("unknown user {m:?}"),
                ),
            }
        }
    }
}
