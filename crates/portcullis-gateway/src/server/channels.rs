//! A channel's place: one of its connection's `max_channels_per_connection`, and its part of
//! its user's `max_channel_memory_per_user` (`crate::channel_memory`), both given back when
//! the channel's work ends. A channel that finds no room is refused, logged, and (a session of
//! a recorded login, a forward) audited like any other refusal.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use russh::server::ChannelOpenHandle;
use russh::ChannelOpenFailure;

use super::UserConnection;
use crate::channel_memory::{Exhausted, Kind, Reservation};
use crate::refusals;
use crate::session::Holder;

/// A channel's place in its connection's count and its user's budget, given back when the
/// channel's work ends.
pub(super) struct ChannelSlot {
    open: Arc<AtomicUsize>,
    _memory: Reservation,
}

impl Drop for ChannelSlot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Why a channel found no room.
pub(super) enum NoRoom {
    /// Its connection holds `max_channels_per_connection`.
    Connection,
    /// Its user's channels would count for more than `max_channel_memory_per_user`.
    User(Exhausted),
}

impl UserConnection {
    /// A place for one more channel of `kind` for `who`, or why not (logged).
    pub(super) fn channel_slot(&self, who: &Holder, kind: Kind) -> Result<ChannelSlot, NoRoom> {
        let what = match kind {
            Kind::Forward => "forward",
            Kind::Recorded | Kind::Command => "channel",
        };
        let max = self.gw.settings().max_channels_per_connection;
        let taken = self
            .open_channels
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            });
        if taken.is_err() {
            tracing::info!(
                "{}: {what} refused, the connection holds its maximum",
                self.peer
            );
            return Err(NoRoom::Connection);
        }
        let open = self.open_channels.clone();
        match self.gw.channel_memory().reserve(&who.user, kind) {
            Ok(memory) => Ok(ChannelSlot {
                open,
                _memory: memory,
            }),
            Err(exhausted) => {
                open.fetch_sub(1, Ordering::SeqCst);
                tracing::warn!("{}: {what} refused: {exhausted}", self.peer);
                Err(NoRoom::User(exhausted))
            }
        }
    }

    /// Refuse a channel that found no room, saying why; a session of a recorded login
    /// (`destination` its target) or a forward is audited too, off the handler (the spool's
    /// flush must not hold up the connection).
    pub(super) async fn no_room(
        &self,
        why: NoRoom,
        reply: ChannelOpenHandle,
        who: Holder,
        channel: &'static str,
        destination: Option<String>,
    ) {
        let (failure, reason, message) = match why {
            NoRoom::Connection => {
                let max = self.gw.settings().max_channels_per_connection;
                let message = format!("the connection holds its maximum of {max} channels");
                (
                    ChannelOpenFailure::ResourceShortage,
                    "channel_limit",
                    message,
                )
            }
            NoRoom::User(exhausted) => {
                let message = format!("portcullis: {exhausted}");
                // Resource shortage, with the reason: ssh prints both.
                let failure = ChannelOpenFailure::Other {
                    code: ChannelOpenFailure::ResourceShortage.code(),
                    reason: message.clone(),
                };
                (failure, "channel_memory", message)
            }
        };
        reply.reject(failure).await;
        let Some(destination) = destination else {
            return;
        };
        let gw = self.gw.clone();
        tokio::spawn(async move {
            refusals::record(&gw, &who, channel, &destination, reason, &message).await;
        });
    }
}
