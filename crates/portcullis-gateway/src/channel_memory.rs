//! What one user's open channels may make the gateway hold, all their connections together
//! (`[gateway] max_channel_memory_per_user`, default 128 MiB): each channel counts, from its
//! open to the end of its task, for the most its kind can make the gateway hold when the peer
//! or the target on one side stops reading, and a channel that would take its user past the
//! budget is refused with the reason (`server::channels`).
//!
//! Counts alone did not bound it. Caps: `max_connections_per_user` (32) connections of
//! `max_channels_per_connection` (64) channels each, 2,048 channels for one user. What a
//! channel can hold (P = [`MAX_PACKET`], 32 KiB, the largest channel data a client may send;
//! russh re-opens a window when data arrives, so queues bound it, not windows):
//!
//! - every channel: russh's queue of the client's data for a reader that waits on a stalled
//!   peer, [`CHANNEL_QUEUE`] (16) packets and the one the relay holds while its write waits:
//!   17 x P = 544 KiB; and its task, futures and small buffers, 64 KiB (`bench/run` measures
//!   58 KiB for an idle forward);
//! - a forward ([`Kind::Forward`]): and one read from the target waiting for the client's
//!   window, 64 KiB: 672 KiB in all;
//! - a recorded session ([`Kind::Recorded`]): and the target leg, a connection of its own,
//!   whose russh queue fills while the client does not read ([`CLIENT_CHANNEL_QUEUE`], 100
//!   packets, and one in hand: 3,232 KiB), that connection's buffers (a packet each way, up to
//!   256 KiB), the file-operation reader and the events waiting for the relay (350 KiB and
//!   at most 600 KiB more), and the recordings' buffers: 5.25 MiB in all;
//! - a session channel of a plain login ([`Kind::Command`]): and the approver's answer queued
//!   towards the user (32 pieces of a packet, 1 MiB): 1.6 MiB in all.
//!
//! So one ordinary user could make the gateway hold 2,048 x 672 KiB = 1.3 GiB with forwards,
//! and 2,048 x 5.25 MiB = 10.5 GiB with recorded sessions (15 GiB before the SFTP reader's
//! byte bound), a gateway's memory several times over. With the budget their channels hold at
//! most 128 MiB: 195 forwards, or 24 recorded sessions, or 80 command channels, or a mix.
//!
//! Apart from channels, each connection: when its client stops reading its socket, russh's
//! session, blocked writing, keeps what it last encrypted (up to 64 messages of up to 64 KiB:
//! 4 MiB), its handle's queue (10 messages, 640 KiB) and a packet being read (up to 256 KiB),
//! about 5 MiB; 32 connections, 160 MiB, bounded by `max_connections_per_user`. One user's
//! worst case at the defaults is so about 290 MiB, where it was over 10 GiB.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use portcullis_core::locks::lock;
use portcullis_core::words;
use portcullis_ssh::client::CLIENT_CHANNEL_QUEUE;
use portcullis_ssh::server::{CHANNEL_QUEUE, MAX_PACKET};

const KIB: u64 = 1024;
const PACKET: u64 = MAX_PACKET as u64;
/// The client's data russh queues for a channel whose reader waits, and the one in hand.
const CLIENT_SIDE: u64 = (CHANNEL_QUEUE as u64 + 1) * PACKET;
/// A session's task: its futures and small buffers.
const TASK: u64 = 64 * KIB;

/// What a channel is for, and so what it counts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// direct-tcpip.
    Forward,
    /// A session channel of a `user:target` login.
    Recorded,
    /// A session channel of a plain login: a command relayed to the approver.
    Command,
}

impl Kind {
    /// The most a channel of this kind can make the gateway hold (see the module comment).
    pub(crate) const fn bytes(self) -> u64 {
        match self {
            Kind::Forward => CLIENT_SIDE + crate::forward::READ_CHUNK as u64 + TASK,
            Kind::Recorded => {
                CLIENT_SIDE
                    + (CLIENT_CHANNEL_QUEUE as u64 + 1) * PACKET
                    + 2 * 256 * KIB
                    + 1024 * KIB
                    + TASK
            }
            Kind::Command => {
                CLIENT_SIDE + crate::command_relay::QUEUED_PIECES as u64 * PACKET + TASK
            }
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Forward => "a forward",
            Kind::Recorded => "a recorded session",
            Kind::Command => "a session channel",
        }
    }
}

/// What each user's open channels count for, against the budget.
pub(crate) struct ChannelMemory {
    max: u64,
    held: Arc<Mutex<HashMap<String, u64>>>,
}

/// One channel's part of its user's budget, given back when dropped (with the channel's task).
pub(crate) struct Reservation {
    held: Arc<Mutex<HashMap<String, u64>>>,
    user: String,
    bytes: u64,
}

/// A channel refused: its user's channels already count for most of the budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Exhausted {
    pub user: String,
    pub kind: Kind,
    pub held: u64,
    pub max: u64,
}

impl fmt::Display for Exhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}'s open channels may already hold {} of the {} one user may have the gateway hold (max_channel_memory_per_user), and {} needs {}: close some and try again",
            self.user,
            words::bytes(self.held),
            words::bytes(self.max),
            self.kind.name(),
            words::bytes(self.kind.bytes()),
        )
    }
}

impl ChannelMemory {
    pub(crate) fn new(max: u64) -> ChannelMemory {
        ChannelMemory {
            max,
            held: Arc::default(),
        }
    }

    /// Count a channel of `kind` against `user`'s budget, or say why it does not fit.
    pub(crate) fn reserve(&self, user: &str, kind: Kind) -> Result<Reservation, Exhausted> {
        let mut held = lock(&self.held);
        let now = held.get(user).copied().unwrap_or(0);
        let bytes = kind.bytes();
        if now.saturating_add(bytes) > self.max {
            return Err(Exhausted {
                user: user.to_string(),
                kind,
                held: now,
                max: self.max,
            });
        }
        held.insert(user.to_string(), now + bytes);
        Ok(Reservation {
            held: self.held.clone(),
            user: user.to_string(),
            bytes,
        })
    }

    #[cfg(test)]
    fn held(&self, user: &str) -> u64 {
        lock(&self.held).get(user).copied().unwrap_or(0)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut held = lock(&self.held);
        if let Some(n) = held.get_mut(&self.user) {
            *n = n.saturating_sub(self.bytes);
            if *n == 0 {
                held.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn each_kind_counts_for_what_the_module_comment_says() {
        assert_eq!(Kind::Forward.bytes(), 672 * KIB);
        assert_eq!(Kind::Recorded.bytes(), 5376 * KIB);
        assert_eq!(Kind::Command.bytes(), 1632 * KIB);
        // The least budget a file may set leaves room for the largest kind.
        assert!(Kind::Recorded.bytes() <= portcullis_core::config::MIN_CHANNEL_MEMORY_PER_USER);
        let d = portcullis_core::config::DEFAULT_MAX_CHANNEL_MEMORY_PER_USER;
        assert_eq!(
            [Kind::Forward, Kind::Recorded, Kind::Command].map(|k| d / k.bytes()),
            [195, 24, 80]
        );
    }

    #[test]
    fn a_user_past_the_budget_is_refused_until_a_channel_ends() {
        let m = ChannelMemory::new(16 * MIB);
        let sessions: Vec<Reservation> = (0..3)
            .map(|_| m.reserve("alice", Kind::Recorded).unwrap())
            .collect();
        let refused = m.reserve("alice", Kind::Recorded).err().unwrap();
        assert_eq!(refused.held, 3 * Kind::Recorded.bytes());
        assert_eq!(
            refused.to_string(),
            "alice's open channels may already hold 15.8 MiB of the 16.0 MiB one user may have the gateway hold (max_channel_memory_per_user), and a recorded session needs 5.2 MiB: close some and try again"
        );
        // Smaller channels may still fit; other users have budgets of their own.
        let forward = m.reserve("alice", Kind::Forward);
        assert!(forward.is_err(), "15.75 + 0.66 > 16");
        assert!(m.reserve("bob", Kind::Recorded).is_ok());
        drop(sessions);
        assert_eq!(m.held("alice"), 0);
        assert!(m.reserve("alice", Kind::Recorded).is_ok());
    }
}
