//! [`NodeBuilder`]: a node's transport and options, checked, and the
//! node's parts built and started.
//!
//! This file holds the builder and what it builds (`Parts`); beside it
//! `options.rs` (each option's default and setter, and the check of the
//! codec) and `start.rs` (the options checked together, the presence
//! budget resolved, the node's parts built, its tasks spawned).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::dispatch::Handlers;
use super::Node;
use crate::presence;
use crate::receive::{ReassemblyLimits, Receiver};
use crate::transport::{Transport, TransportIo};
use crate::wire::{BodyLimits, Codec};

mod options;
mod start;

/// A node's parts, built and not started ([`NodeBuilder::build`]): what
/// `start` spawns, or what the test harness drives by hand.
pub(crate) struct Parts {
    pub(crate) node: Node,
    pub(crate) transport: Box<dyn Transport>,
    pub(crate) io: TransportIo,
    pub(crate) receiver: Receiver<Handlers>,
}

/// Builds a [`Node`]: its transport and options. From [`Node::builder`].
#[must_use = "a builder does nothing until `.start().await`"]
pub struct NodeBuilder {
    name: String,
    transport: Option<Box<dyn Transport>>,
    trust: Vec<String>,
    codec: Option<Codec>,
    python_peers: bool,
    seed: Option<u64>,
    outgoing_capacity: usize,
    inbound_capacity: usize,
    max_envelope_bytes: usize,
    body_limits: BodyLimits,
    reassembly: ReassemblyLimits,
    make_default: bool,
    secrets: Vec<Vec<u8>>,
    /// Set by [`NodeBuilder::unsigned`]: no secret, whatever the environment.
    unsigned: bool,
    max_skew: Duration,
    presence: presence::Options,
    /// Shared handlers: the bounds on jobs held for takeover.
    shared: crate::shared::Options,
    /// Failover (see `failover`).
    failover: Option<crate::failover::Failover>,
    /// What handlers reach with `cx.state::<T>()`.
    state: super::state::State,
    shutdown_timeout: Duration,
    /// Set by [`NodeBuilder::read_only`].
    read_only: bool,
    /// Set by [`NodeBuilder::observe`].
    observer: Option<Arc<super::dispatch::Observer>>,
    /// Presence: what the node says about itself, as canonical JSON (or
    /// why it cannot be sent, said at start).
    meta: Option<std::result::Result<String, String>>,
}

impl fmt::Debug for NodeBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeBuilder")
            .field("name", &self.name)
            .field("has_transport", &self.transport.is_some())
            .field("trust", &self.trust)
            .field("codec", &self.codec)
            .field("secrets", &self.secrets.len())
            .field("unsigned", &self.unsigned)
            .field("state", &self.state.type_names())
            .finish_non_exhaustive()
    }
}
