//! The test bastion's config: its users and keys (made by `ssh-keygen`), the standard
//! policies, and targets added to them.

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// The users every test config has, with their groups.
pub const USERS: &[(&str, &[&str])] = &[
    ("alice", &["dev"]),
    ("bob", &["dba"]),
    ("carol", &["dba"]),
    ("dave", &["dev"]),
    ("ada", &["admins"]),
    ("audrey", &["auditors"]),
];

/// Today's weekday name, counted from the clock, offset by `days`.
pub fn weekday(days: i64) -> &'static str {
    const NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let day = secs / 86_400 + days;
    NAMES[((day + 3).rem_euclid(7)) as usize]
}

pub fn keygen(dir: &Path, name: &str) -> String {
    let path = dir.join(format!("{name}_key"));
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .status()
        .expect("ssh-keygen");
    assert!(st.success());
    std::fs::read_to_string(path.with_extension("pub"))
        .unwrap()
        .trim()
        .to_string()
}

/// The standard test policies; `extra` is appended (more targets or policies).
pub fn standard_config(env_dir: &Path, port: u16, request_ttl: &str, extra: &str) -> String {
    let mut t = format!(
        r#"
[approver]
listen = "127.0.0.1:{port}"
data_dir = "{dir}/approver"
request_ttl = "{request_ttl}"

[gateway]
data_dir = "{dir}/gateway"

[[gateways]]
name = "gw-1"
key = "{gw}"
"#,
        dir = env_dir.display(),
        gw = gateway_client_key(env_dir),
    );
    for (name, groups) in USERS {
        let key = std::fs::read_to_string(env_dir.join(format!("{name}_key.pub"))).unwrap();
        t.push_str(&format!(
            "\n[[users]]\nname = \"{name}\"\nkeys = [\"{}\"]\ngroups = [{}]\n",
            key.trim(),
            groups
                .iter()
                .map(|g| format!("\"{g}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    t.push_str(&format!(
        r#"
[[targets]]
name = "pg-prod"
kind = "tcp"
address = "127.0.0.1:15432"
labels = {{ env = "prod" }}

[[targets]]
name = "pg-staging"
kind = "tcp"
address = "127.0.0.1:25432"
labels = {{ env = "staging" }}

[[targets]]
name = "pg-weekend"
kind = "tcp"
address = "127.0.0.1:35432"
labels = {{ env = "weekend" }}

[[targets]]
name = "lonely"
kind = "tcp"
address = "127.0.0.1:45432"

[[policies]]
name = "prod"
match = {{ env = "prod" }}
approvers = ["dba"]
approvals = 2
max_duration = "4h"
default_duration = "1h"
require_reason = true

[[policies]]
name = "staging"
match = {{ env = "staging" }}
auto_approve = {{ groups = ["dev"], windows = ["{in_from}-{in_to} 00:00-24:00 UTC"] }}
max_duration = "8h"
default_duration = "2h"

[[policies]]
name = "weekend-only"
match = {{ env = "weekend" }}
auto_approve = {{ groups = ["dev"], windows = ["{out_day} 00:00-24:00 UTC"] }}
max_duration = "8h"
{extra}"#,
        in_from = weekday(-1),
        in_to = weekday(1),
        out_day = weekday(3),
    ));
    t
}

pub(super) fn gateway_client_key(dir: &Path) -> String {
    // `portcullis keys` makes it; read it back from the .pub file.
    std::fs::read_to_string(dir.join("gateway/client_key.pub"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// A `[[targets]]` entry for a TCP service on loopback, labelled `env = "staging"` (which the
/// standard policies auto-approve for the dev group).
pub fn tcp_target(name: &str, port: u16) -> String {
    format!(
        "\n[[targets]]\nname = \"{name}\"\nkind = \"tcp\"\naddress = \"127.0.0.1:{port}\"\nlabels = {{ env = \"staging\" }}\n"
    )
}
