//! `[[policies]]`: which targets a policy covers, who approves, and for how long.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyEntry {
    pub name: String,
    #[serde(rename = "match", default)]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub targets: Vec<String>,
    #[serde(default)]
    pub approvers: Vec<String>,
    pub approvals: Option<u32>,
    pub max_duration: String,
    pub default_duration: Option<String>,
    #[serde(default)]
    pub require_reason: bool,
    pub auto_approve: Option<AutoApproveEntry>,
    #[serde(default)]
    pub record_data: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoApproveEntry {
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub windows: Vec<String>,
}
