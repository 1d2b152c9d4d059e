//! `[[gateways]]`: the gateways the approver accepts and streams to, each by its client key.
//! Owns their names and keys; must not touch `[gateway]`, one gateway's own settings.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::catalog::Gateway;

use super::identity::KeyOwners;
use super::problems::Problems;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayEntry {
    pub name: String,
    pub key: String,
}

/// The gateways by name; one whose key does not parse is left out (and is a problem).
pub(super) fn validate(
    p: &mut Problems,
    owners: &mut KeyOwners,
    entries: &[GatewayEntry],
) -> BTreeMap<String, Gateway> {
    let mut gateways = BTreeMap::new();
    for (i, g) in entries.iter().enumerate() {
        let field = format!("gateways[{i}]");
        p.name(&format!("{field}.name"), &g.name);
        let key = owners.claim(
            p,
            &format!("{field} ({}).key", g.name),
            format!("gateway {}", g.name),
            &g.key,
        );
        if gateways.contains_key(&g.name) {
            p.push(
                format!("{field}.name"),
                format!("duplicate gateway {:?}", g.name),
            );
        }
        if let Some(key) = key {
            gateways.insert(
                g.name.clone(),
                Gateway {
                    name: g.name.clone(),
                    key,
                },
            );
        }
    }
    gateways
}
