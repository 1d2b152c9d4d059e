//! The approver's one answer to a poisoned lock: it is taken over.
//!
//! A lock is poisoned when a thread panicked while holding it. Everything the approver keeps
//! under a std lock (the catalog in force, the signing key, the `Live` mirror, the deadlines,
//! the waiters, refusal and command budgets) is whole after each statement that changes it, so
//! what a panic leaves is usable. The other answers are worse: skipping the update (`if let
//! Ok`, `.ok()`) leaves the mirror or the deadlines behind what was committed, reading a
//! default instead shows an empty list or refuses a user for nothing, and failing takes the
//! daemon down for a panic elsewhere. Every lock in this crate goes through these three, the same helpers the gateway, ssh
//! and store crates use (one policy for the whole bastion).

pub(crate) use portcullis_core::locks::{lock, read, write};
