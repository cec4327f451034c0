//! A node's side of the bus: who it is, what it counts, what waits to be
//! posted ([`Outbox`] and the presence and repair traffic), who it has
//! heard ([`Presence`]) and its election. Shared by the node's tasks (the
//! transport's poster, the dispatcher, the presence and failover tasks) and
//! its handles; the send and receive paths see the node through it only.
//! (It lives in `send/` because the poster reads it for every post, and
//! it holds the outbox.)

use std::sync::Arc;

use super::envelope::{overhead, BodyWriter, Origin};
use super::outbox::Outbox;
use crate::error::{Error, Result};
use crate::failover::Election;
use crate::presence::{Presence, Queue};
use crate::security::Keys;
use crate::stats::Counters;
use crate::wire::Codec;

/// A node's side of the bus (see the module).
pub(crate) struct Bus {
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
    /// Failover: the node's election, when it takes part in one.
    pub(crate) election: Option<Arc<Election>>,
}

impl Bus {
    /// Refuses an envelope (`writer`'s messages, and this node's metadata)
    /// larger than receivers take; and, with
    /// [`python_peers`](crate::NodeBuilder::python_peers), one that Python
    /// instances could not read (every envelope a node posts comes here:
    /// messages, questions and answers).
    #[inline]
    pub(crate) fn check(&self, writer: &BodyWriter) -> Result<()> {
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

    /// Adds presence or repair traffic for the transport to post, and wakes
    /// it.
    pub(crate) fn push_control(&self, add: impl FnOnce(&mut Queue)) {
        if self.presence.push(add) {
            self.outbox.wake_transport();
        }
    }

    /// Asks the transport for a heartbeat now.
    pub(crate) fn announce(&self) {
        self.push_control(|q| q.heartbeat = true);
    }

    /// Failover: a peer's `_el` arrived (called by the dispatcher).
    pub(crate) fn election_heard(
        &self,
        instance: &Arc<str>,
        session: u64,
        codec: Codec,
        raw: &[u8],
    ) {
        if let Some(election) = &self.election {
            let (now, role_changed) = election.heard(instance, session, codec, raw);
            if role_changed {
                self.presence.role_changed();
            }
            if now {
                self.announce();
            }
        }
    }
}
