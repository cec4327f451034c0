//! The node's core, below both paths: who the node is, what it counts,
//! what waits to be posted ([`Outbox`], and the presence and repair
//! traffic), who it has heard ([`Presence`]) and its election. Shared by
//! the node's tasks (the transport's poster, the receive path's
//! dispatcher, the presence and failover tasks) and its handles; the send
//! path (`send/`) and the receive path (`receive/`) see the node through
//! it only, and neither sees the other.
//!
//! Also here: a message written into an envelope (`envelope.rs`, which
//! [`Core::check`] measures) and the outbox (`outbox.rs`), and
//! [`ChatMessage`], what a transport reads from the room.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub(crate) mod envelope;
pub(crate) mod outbox;

use crate::error::{Error, Result};
use crate::failover::Election;
use crate::presence::{Presence, Queue};
use crate::security::Keys;
use crate::stats::Counters;
use crate::wire::Codec;
use envelope::{overhead, BodyWriter, Origin};
use outbox::Outbox;

/// One message seen in the chat room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// The chat account that posted it, as the chat reports it (user id,
    /// nick, ...). Trust is decided on this. Empty when the chat does not
    /// vouch for the sender: such a message is never trusted.
    pub account: Arc<str>,
    /// The message's text, as posted (the node cleans it).
    pub text: Arc<str>,
}

impl ChatMessage {
    /// A chat message from `account` saying `text`.
    pub fn new(account: impl Into<Arc<str>>, text: impl Into<Arc<str>>) -> ChatMessage {
        ChatMessage {
            account: account.into(),
            text: text.into(),
        }
    }
}

/// The node's core (see the module).
pub(crate) struct Core {
    pub(crate) name: Arc<str>,
    pub(crate) account: Arc<str>,
    pub(crate) session: u64,
    pub(crate) origin: Origin,
    pub(crate) codec: Codec,
    /// The secrets it signs with and checks against (none: unsigned).
    pub(crate) keys: Keys,
    pub(crate) max_envelope_bytes: usize,
    /// With [`NodeBuilder::python_peers`](crate::NodeBuilder::python_peers):
    /// the most body bytes one post carries (each envelope goes alone,
    /// whole, in one post).
    pub(crate) python_peers: Option<usize>,
    pub(crate) counters: Counters,
    pub(crate) outbox: Outbox,
    pub(crate) presence: Presence,
    /// Shared handlers: this node's candidacy and confirmations.
    pub(crate) shared: crate::shared::Shared,
    /// Failover: the node's election, when it takes part in one.
    pub(crate) election: Option<Arc<Election>>,
    /// The untrusted accounts heard (filled by the receive path).
    pub(crate) untrusted: crate::security::UntrustedAccounts,
    /// One past the highest sequence number whose post the transport is
    /// done with (see `Poster::through`): what `shutdown` did not get
    /// posted is the outbox's numbered envelopes past it.
    pub(crate) confirmed_end: AtomicU64,
    /// Envelopes from the room held until the ones missing before them
    /// are repaired or given up, as of the receive path's last tick (a
    /// gauge of feature `metrics`).
    pub(crate) held: AtomicU64,
    /// The bound on `shutdown` ([`NodeBuilder::shutdown_timeout`](crate::NodeBuilder::shutdown_timeout)).
    pub(crate) shutdown_timeout: Duration,
    /// [`NodeBuilder::read_only`](crate::NodeBuilder::read_only): posts nothing.
    pub(crate) read_only: bool,
    /// Failover: a peer's claim is to be answered with a heartbeat. The
    /// failover task posts it, at most once per half the heartbeat
    /// interval: others cannot drive this node's posting.
    pub(crate) answer_due: AtomicBool,
}

impl Core {
    /// Refuses an envelope (`writer`'s messages, and this node's metadata)
    /// larger than receivers take; and, with
    /// [`python_peers`](crate::NodeBuilder::python_peers), one that Python
    /// instances could not read (every envelope a node posts comes here:
    /// messages, questions and answers).
    #[inline]
    pub(crate) fn check(&self, writer: &BodyWriter) -> Result<()> {
        if self.read_only {
            return Err(self.read_only_error());
        }
        let size = writer.len() + overhead(&self.origin);
        if size > self.max_envelope_bytes {
            return Err(Error::TooLarge {
                size,
                max: self.max_envelope_bytes,
            });
        }
        match self.python_peers {
            Some(room) => self.check_for_python(writer, room),
            None => Ok(()),
        }
    }

    #[cold]
    fn read_only_error(&self) -> Error {
        Error::InvalidOption {
            option: "read_only",
            reason: format!(
                "node `{}` is read-only (NodeBuilder::read_only): it posts nothing",
                self.name
            ),
        }
    }

    /// With Python peers: refuses what they could not read whole from one
    /// post of at most `room` body bytes.
    #[inline(never)]
    fn check_for_python(&self, writer: &BodyWriter, room: usize) -> Result<()> {
        let signed = !self.keys.is_empty();
        writer
            .check_for_python(&self.origin, signed, room)
            .map_err(|reason| Error::NotForPython {
                name: self.name.to_string(),
                reason,
            })
    }

    /// The transport is done with the envelopes numbered below `end`.
    pub(crate) fn confirm_through(&self, end: u64) {
        self.confirmed_end.fetch_max(end, Ordering::Relaxed);
    }

    /// Envelopes accepted by `send` that the transport is not done with.
    pub(crate) fn unposted(&self) -> u64 {
        self.outbox
            .numbered()
            .saturating_sub(self.confirmed_end.load(Ordering::Relaxed))
    }

    /// Adds presence or repair traffic for the transport to post, and wakes
    /// it.
    pub(crate) fn push_control(&self, add: impl FnOnce(&mut Queue)) {
        if self.read_only {
            return;
        }
        if self.presence.push(add) {
            self.outbox.wake_transport();
        }
    }

    /// Asks the transport for a heartbeat now.
    pub(crate) fn announce(&self) {
        self.push_control(|q| q.heartbeat = true);
    }

    /// Failover: a peer's `_el` arrived (called by the dispatcher);
    /// returns whether it was refused as absurd (a term beyond what was
    /// seen).
    pub(crate) fn election_heard(
        &self,
        instance: &Arc<str>,
        session: u64,
        codec: Codec,
        raw: &[u8],
    ) -> bool {
        let Some(election) = &self.election else {
            return false;
        };
        // A role change reaches the peer list (and its events) as the
        // dispatcher notes the post (`Presence::heard`).
        let heard = election.heard(instance, session, codec, raw);
        if heard.announce {
            // Answered by the failover task, rate-bounded (see `answer_due`).
            self.answer_due.store(true, Ordering::Relaxed);
        }
        heard.absurd
    }
}
