//! Sizes and counts bounded where they enter: what one user can make the approver store,
//! flush and send back. Everything a user types ends up in the permanent audit log and in
//! other people's listings, and is relayed by a gateway that must not be made to hold it.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use portcullis_core::command;

use crate::app::Approver;
use crate::errors::ApproverError;
use crate::locks;

/// Commands one user may have running at once, over all their connections and those a
/// gateway relays for them: a gateway's one connection to the approver carries every user's
/// commands, and one user's `wait`s must not take all of its places.
pub(crate) const COMMANDS_PER_USER: usize = 16;

/// Commands running per user.
#[derive(Debug, Default)]
pub(crate) struct Running {
    by_user: Mutex<HashMap<String, usize>>,
}

/// A running command's place, given back when dropped.
pub(crate) struct RunningCommand<'a> {
    running: &'a Running,
    user: String,
}

impl Running {
    fn map(&self) -> MutexGuard<'_, HashMap<String, usize>> {
        locks::lock(&self.by_user)
    }

    /// A place for one more command of `user`, or why there is none.
    pub fn start(&self, user: &str) -> Result<RunningCommand<'_>, ApproverError> {
        let mut map = self.map();
        let n = map.entry(user.to_string()).or_insert(0);
        if *n >= COMMANDS_PER_USER {
            return Err(ApproverError::Conflict(format!(
                "{user} already has {COMMANDS_PER_USER} commands running, the most one user may — end one (a `wait`, say) first"
            )));
        }
        *n += 1;
        Ok(RunningCommand {
            running: self,
            user: user.to_string(),
        })
    }
}

impl Drop for RunningCommand<'_> {
    fn drop(&mut self) {
        let mut map = self.running.map();
        if let Some(n) = map.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.user);
            }
        }
    }
}

/// The longest reason or note kept, in bytes: room for a ticket id and a sentence or two.
pub(crate) const MAX_TEXT: usize = 1024;

/// Free text (`--reason`, `--note`) as [`command::text`] joins it, refused over
/// [`MAX_TEXT`] before anything is written.
pub(crate) fn text(words: &[String], what: &str) -> Result<Option<String>, ApproverError> {
    let text = command::text(words);
    match &text {
        Some(t) if t.len() > MAX_TEXT => Err(ApproverError::BadInput(format!(
            "the {what} is {} bytes; at most {MAX_TEXT} are kept — put the details in the ticket it names",
            t.len()
        ))),
        _ => Ok(text),
    }
}

/// Refuse a new pending request from `user` who already has the most allowed
/// (`max_pending_requests_per_user`). Called by the writer, whose commits keep
/// [`crate::live::Live`] current, so two requests at once cannot both pass.
pub(crate) fn may_add_pending(app: &Approver, user: &str) -> Result<(), ApproverError> {
    let max = app.settings.max_pending_requests_per_user;
    let pending = app.live.pending_of(user);
    if pending >= max {
        return Err(ApproverError::Conflict(format!(
            "{user} has {} pending, the most one user may have (max_pending_requests_per_user) — wait for a decision, or let one lapse",
            crate::render::words::count(pending as u64, "request", "requests")
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_runs_at_most_so_many_commands_at_once() {
        let running = Running::default();
        let held: Vec<_> = (0..COMMANDS_PER_USER)
            .map(|_| running.start("alice").unwrap())
            .collect();
        assert!(running.start("alice").is_err());
        let other = running.start("bob");
        assert!(other.is_ok(), "a budget of one's own");
        drop(held);
        assert!(running.start("alice").is_ok());
        drop(other);
        assert!(running.map().len() <= 1);
    }

    #[test]
    fn text_over_the_limit_is_refused_with_its_size() {
        let fits = vec!["x".repeat(MAX_TEXT)];
        assert_eq!(text(&fits, "reason").unwrap().unwrap().len(), MAX_TEXT);
        let over = vec!["x".repeat(MAX_TEXT - 1), "y".into()];
        let e = text(&over, "note").unwrap_err().to_string();
        assert!(e.contains("the note is 1025 bytes; at most 1024"), "{e}");
        assert_eq!(text(&[], "reason").unwrap(), None);
    }
}
