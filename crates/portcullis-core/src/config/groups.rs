//! `[[groups]]`: groups declared on their own (possibly empty), and members added to them.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupEntry {
    pub name: String,
    #[serde(default)]
    pub members: Vec<String>,
    pub description: Option<String>,
}
