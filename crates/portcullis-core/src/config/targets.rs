//! `[[targets]]`: what can be reached, how, and the labels policies match on. Owns what a
//! target of each kind needs; must not touch policies, which only refer to targets by name.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::catalog::{Target, TargetKind};
use crate::keys;

use super::problems::Problems;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetEntry {
    pub name: String,
    pub kind: String,
    pub address: String,
    pub login: Option<String>,
    pub host_key: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub record_data: bool,
    pub description: Option<String>,
}

/// Split `HOST:PORT` (or `[v6]:PORT`).
pub fn split_host_port(addr: &str) -> Result<(String, u16), String> {
    let err = || format!("{addr:?} is not HOST:PORT");
    let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
        let (h, p) = rest.split_once("]:").ok_or_else(err)?;
        (h, p)
    } else {
        addr.rsplit_once(':').ok_or_else(err)?
    };
    if host.is_empty() || host.contains(':') && !addr.starts_with('[') {
        return Err(err());
    }
    let port: u16 = port.parse().map_err(|_| err())?;
    if port == 0 {
        return Err(err());
    }
    Ok((host.to_string(), port))
}

/// The targets by name.
pub(super) fn validate(p: &mut Problems, entries: &[TargetEntry]) -> BTreeMap<String, Target> {
    let mut targets = BTreeMap::new();
    for (i, t) in entries.iter().enumerate() {
        p.name(&format!("targets[{i}].name"), &t.name);
        if targets.contains_key(&t.name) {
            p.push(
                format!("targets[{i}].name"),
                format!("duplicate target {:?}", t.name),
            );
        }
        targets.insert(
            t.name.clone(),
            target(p, &format!("targets[{i}] ({})", t.name), t),
        );
    }
    targets
}

fn target(p: &mut Problems, field: &str, t: &TargetEntry) -> Target {
    // An unknown kind is already a problem; tcp stands in for it so that the checks after it
    // still run.
    let kind = p
        .choice(&format!("{field}.kind"), &t.kind)
        .unwrap_or(TargetKind::Tcp);
    let (host, port) = match split_host_port(&t.address) {
        Ok(hp) => hp,
        Err(e) => {
            p.push(format!("{field}.address"), e);
            (String::new(), 0)
        }
    };
    match kind {
        TargetKind::Ssh => {
            if t.login.is_none() {
                p.push(
                    format!("{field}.login"),
                    "an ssh target needs the login the gateway uses on it",
                );
            }
            match &t.host_key {
                None => p.push(
                    format!("{field}.host_key"),
                    "an ssh target needs its pinned host key (ssh-keyscan -t ed25519 HOST)",
                ),
                Some(k) => {
                    if let Err(e) = keys::parse_public_key(k) {
                        p.push(format!("{field}.host_key"), e);
                    }
                }
            }
        }
        TargetKind::Tcp => {
            if t.login.is_some() || t.host_key.is_some() {
                p.push(field, "login and host_key only apply to kind = \"ssh\"");
            }
        }
    }
    Target {
        name: t.name.clone(),
        kind,
        address: t.address.clone(),
        host,
        port,
        login: t.login.clone(),
        host_key: t.host_key.clone(),
        labels: t.labels.clone(),
        record_data: t.record_data,
    }
}
