//! The send path: a message written into an envelope (`envelope.rs`),
//! queued in the node's outbox (`outbox.rs`), then taken by the transport,
//! grouped into posts, framed and chunked (`post.rs`; presence and repair
//! bodies are written by `wire::write_control_body`), and kept to be
//! posted again when asked (`history.rs`).

pub(crate) mod envelope;
mod history;
pub(crate) mod outbox;
mod post;

pub(crate) use history::History;
pub(crate) use post::Poster;

use std::sync::Arc;

use crate::failover::Election;
use crate::presence::Presence;
use crate::security::Keys;
use crate::stats::Counters;
use crate::wire::Codec;
use envelope::Origin;
use outbox::Outbox;

/// What the send path reads of the node it posts for: implemented by the
/// node's `Bus` (`bus.rs`), so that the send path does not import the node.
pub(crate) trait Host {
    /// The node's instance name.
    fn name(&self) -> &Arc<str>;
    /// The node's session.
    fn session(&self) -> u64;
    /// The codec it writes.
    fn codec(&self) -> Codec;
    /// The metadata of its envelopes.
    fn origin(&self) -> &Origin;
    /// The secrets it signs with (none: unsigned).
    fn keys(&self) -> &Keys;
    /// The largest envelope receivers take.
    fn max_envelope_bytes(&self) -> usize;
    /// With Python peers: the most body bytes one post carries.
    fn python_peers(&self) -> Option<usize>;
    /// Its counters.
    fn counters(&self) -> &Counters;
    /// What waits to be posted.
    fn outbox(&self) -> &Outbox;
    /// The presence and repair traffic waiting, and the coarse clock.
    fn presence(&self) -> &Presence;
    /// Failover: its election, when it takes part in one.
    fn election(&self) -> Option<&Election>;
}
