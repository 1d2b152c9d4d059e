//! `[[targets]]`: what can be reached, how, and the labels policies match on.

use std::collections::BTreeMap;

use serde::Deserialize;

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
