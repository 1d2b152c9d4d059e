//! `[[policies]]`: which targets a policy covers, who approves, and for how long. Owns the
//! rules a policy must obey on its own and against the targets and groups already validated;
//! must not change those.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::catalog::{AutoApprove, Policy, Selector, Target};
use crate::window::Window;

use super::defaults::{DEFAULT_APPROVALS, DEFAULT_DURATION_CAP};
use super::groups::Groups;
use super::problems::Problems;

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

/// The policies in file order (the order evaluation tries them in).
pub(super) fn validate(
    p: &mut Problems,
    entries: &[PolicyEntry],
    targets: &BTreeMap<String, Target>,
    groups: &Groups,
) -> Vec<Policy> {
    let mut policies: Vec<Policy> = Vec::new();
    for (i, pe) in entries.iter().enumerate() {
        p.name(&format!("policies[{i}].name"), &pe.name);
        if policies.iter().any(|q| q.name == pe.name) {
            p.push(
                format!("policies[{i}].name"),
                format!("duplicate policy {:?}", pe.name),
            );
        }
        let field = format!("policies[{i}] ({})", pe.name);
        policies.push(policy(p, &field, pe, targets, groups));
    }
    policies
}

fn policy(
    p: &mut Problems,
    field: &str,
    pe: &PolicyEntry,
    targets: &BTreeMap<String, Target>,
    groups: &Groups,
) -> Policy {
    if pe.match_labels.is_empty() && pe.targets.is_empty() {
        p.push(
            field,
            "needs `match = { label = \"value\" }` or `targets = [\"name\"]` to say what it covers",
        );
    }
    for (j, t) in pe.targets.iter().enumerate() {
        if !targets.contains_key(t) {
            p.push(
                format!("{field}.targets[{j}]"),
                format!("unknown target {t:?}"),
            );
        }
    }
    known_groups(p, &format!("{field}.approvers"), &pe.approvers, groups);
    let (max_duration, default_duration) = durations(p, field, pe);
    let approvals = approvals(p, field, pe);
    let auto_approve = pe
        .auto_approve
        .as_ref()
        .map(|a| auto_approve(p, &format!("{field}.auto_approve"), a, groups));
    if pe.approvers.is_empty() && auto_approve.is_none() {
        p.push(
            field,
            "can never grant anything: give it `approvers` or `auto_approve`",
        );
    }
    Policy {
        name: pe.name.clone(),
        selector: Selector {
            labels: pe.match_labels.clone(),
            targets: pe.targets.clone(),
        },
        approvers: pe.approvers.clone(),
        approvals,
        max_duration,
        default_duration,
        require_reason: pe.require_reason,
        auto_approve,
        record_data: pe.record_data,
    }
}

/// Every group in `names` must exist; a problem lists those that do.
fn known_groups(p: &mut Problems, field: &str, names: &[String], groups: &Groups) {
    for (j, g) in names.iter().enumerate() {
        if !groups.contains_key(g) {
            let known = groups.keys().cloned().collect::<Vec<_>>().join(", ");
            p.push(
                format!("{field}[{j}]"),
                format!("unknown group {g:?} (known groups: {known})"),
            );
        }
    }
}

/// `max_duration` and `default_duration`, the latter defaulted and within the former.
fn durations(p: &mut Problems, field: &str, pe: &PolicyEntry) -> (Duration, Duration) {
    let max = p.duration(&format!("{field}.max_duration"), &pe.max_duration);
    let default = pe
        .default_duration
        .as_ref()
        .and_then(|d| p.duration(&format!("{field}.default_duration"), d));
    // A bad max_duration is already a problem; the cap stands in for it so that the checks
    // after it still run.
    let max_duration = max.unwrap_or(DEFAULT_DURATION_CAP);
    let default_duration = default.unwrap_or(max_duration.min(DEFAULT_DURATION_CAP));
    if default_duration > max_duration {
        p.push(
            format!("{field}.default_duration"),
            "is longer than max_duration",
        );
    }
    (max_duration, default_duration)
}

fn approvals(p: &mut Problems, field: &str, pe: &PolicyEntry) -> u32 {
    match (pe.approvals, pe.approvers.is_empty()) {
        (Some(0), _) => {
            p.push(format!("{field}.approvals"), "must be at least 1");
            DEFAULT_APPROVALS
        }
        (Some(n), true) => {
            p.push(
                format!("{field}.approvals"),
                format!("asks for {n} approvals but `approvers` names no group"),
            );
            n
        }
        (Some(n), false) => n,
        (None, _) => DEFAULT_APPROVALS,
    }
}

fn auto_approve(
    p: &mut Problems,
    field: &str,
    a: &AutoApproveEntry,
    groups: &Groups,
) -> AutoApprove {
    known_groups(p, &format!("{field}.groups"), &a.groups, groups);
    let mut windows = Vec::new();
    for (j, w) in a.windows.iter().enumerate() {
        match Window::parse(w) {
            Ok(w) => windows.push(w),
            Err(e) => p.push(format!("{field}.windows[{j}]"), e),
        }
    }
    AutoApprove {
        groups: a.groups.clone(),
        windows,
    }
}
