//! The short list of commands a user may run, for someone who connected without one.

use serde_json::json;

use super::{clean, out, Reply};

/// One command a user may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// How it is typed: `request TARGET [--for DUR] [--reason TEXT]`.
    pub usage: &'static str,
    /// What it does, for this user.
    pub about: &'static str,
}

/// `user`'s commands; `reach` (`ssh -p 2222 alice@10.0.0.2`) says how to run them.
pub fn commands(user: &str, reach: Option<&str>, entries: &[Entry], json: bool) -> Reply {
    let value = json!({
        "user": user,
        "reach": reach,
        "commands": entries.iter().map(|e| json!({
            "command": e.usage.split(' ').next().unwrap_or(""),
            "usage": e.usage,
            "about": e.about,
        })).collect::<Vec<_>>(),
    });
    let mut text = match reach {
        Some(r) => format!(
            "portcullis: commands {} may run, as `{} COMMAND`:\n",
            clean(user),
            clean(r)
        ),
        None => format!("portcullis: commands {} may run:\n", clean(user)),
    };
    let width = entries.iter().map(|e| e.usage.len()).max().unwrap_or(0);
    for e in entries {
        text.push_str(&format!("  {:<width$}  {}\n", e.usage, e.about));
    }
    text.push_str("COMMAND --help shows its options; --json gives one JSON document.\n");
    out(json, value, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_command_under_how_to_run_them() {
        let entries = [
            Entry {
                usage: "status",
                about: "your grants",
            },
            Entry {
                usage: "wait ID",
                about: "block",
            },
        ];
        let r = commands("alice", Some("ssh -p 2222 alice@10.0.0.2"), &entries, false);
        assert_eq!(
            r.out,
            "portcullis: commands alice may run, as `ssh -p 2222 alice@10.0.0.2 COMMAND`:\n  \
             status   your grants\n  \
             wait ID  block\n\
             COMMAND --help shows its options; --json gives one JSON document.\n"
        );
        assert_eq!(r.code, 0);
        let j: serde_json::Value =
            serde_json::from_str(&commands("alice", None, &entries, true).out).unwrap();
        assert_eq!(j["commands"][1]["command"], "wait");
    }
}
