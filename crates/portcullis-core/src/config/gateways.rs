//! `[[gateways]]`: the gateways the approver accepts and streams to.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayEntry {
    pub name: String,
    pub key: String,
}
