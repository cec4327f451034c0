//! [`Node`]: one instance in the room. It frames, trusts, decodes,
//! deduplicates, dispatches and counts, once, for every transport.
//!
//! This file holds the node's handle and what its handles share; beside
//! it `builder.rs` (its options and start), `handler.rs` (what a handler
//! is, the registry), `context.rs` (what a handler is given),
//! `dispatch.rs` (running the handlers of an accepted envelope: the
//! receive path's `Deliver`), `default.rs` (the process's default node,
//! for `broadcast()`), and the node's side of presence (`presence.rs`),
//! failover (`failover.rs`) and questions (`ask.rs`). What the node's
//! tasks share with the transport and the receive path is its `Bus`
//! (`crate::send::Bus`).

pub(crate) mod ask;
mod builder;
mod context;
pub(crate) mod default;
mod dispatch;
mod failover;
pub(crate) mod handler;
mod presence;

pub use builder::NodeBuilder;
#[cfg(feature = "test-util")]
pub(crate) use builder::Parts;
pub use context::{Context, Sender};
#[cfg(feature = "test-util")]
pub(crate) use dispatch::Handlers;

use std::fmt;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::task::JoinHandle;
use tracing::{error, info};

use crate::error::{Error, Result};
use crate::message::Message;
use crate::send::envelope::{BodyWriter, Payload};
use crate::send::outbox::Refused;
use crate::send::Bus;
use crate::stats::Stats;
use crate::sync::lock;
use crate::wire::{Codec, RawValueRef};
use handler::{Handler, Registered, Registry};

/// One instance of the bot in the chat room.
///
/// Cheap to clone: every clone is the same node. Dropping the handles does
/// not stop it; [`shutdown`](Node::shutdown) does, after flushing.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> socketscience::Result<()> {
/// use socketscience::{message, Context, LocalChat, Node};
///
/// #[message("ping")]
/// #[derive(Debug)]
/// pub struct Ping { pub location: String, pub timestamp: f64 }
///
/// let chat = LocalChat::new();
/// let node = Node::builder("Henders/EC2").transport(chat.join("smokey")).start().await?;
/// node.register(|ping: Ping, cx: Context| {
///     println!("{} is alive (seen by {})", ping.location, cx.node().name());
/// });
/// node.send(Ping { location: "Henders/EC2".into(), timestamp: 1.0 }).await?;
/// node.shutdown().await?; // flushes, runs what is queued, then stops
/// assert_eq!(node.stats().dispatched, 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Node {
    pub(crate) shared: Arc<NodeShared>,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.bus().name)
            .field("account", &self.bus().account)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Node {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}
impl Eq for Node {}

/// What the node's handles share: its side of the bus (shared in turn
/// with the transport and the dispatcher), its handlers, its questions in
/// flight and its tasks.
pub(crate) struct NodeShared {
    pub(crate) bus: Arc<Bus>,
    /// The handlers, replaced whole when one is registered (copy on
    /// write); shared with the dispatcher's cache of it.
    pub(crate) registry: Arc<ArcSwap<Registry>>,
    tasks: Mutex<Option<Tasks>>,
    /// Questions: this node's questions in flight.
    pub(crate) asks: ask::Waiters,
}

impl NodeShared {
    pub(crate) fn read_registry(&self) -> Arc<Registry> {
        self.registry.load_full()
    }
}

struct Tasks {
    transport: JoinHandle<Result<()>>,
    dispatcher: JoinHandle<()>,
    presence: JoinHandle<()>,
}

impl Node {
    /// The node's side of the bus.
    #[inline]
    pub(crate) fn bus(&self) -> &Bus {
        &self.shared.bus
    }

    /// This instance's name.
    pub fn name(&self) -> &str {
        &self.bus().name
    }

    /// The chat account this node posts as.
    pub fn account(&self) -> &str {
        &self.bus().account
    }

    /// This process's session id: random per start, sent with every envelope.
    pub fn session(&self) -> u64 {
        self.bus().session
    }

    /// The codec this node writes.
    pub fn codec(&self) -> Codec {
        self.bus().codec
    }

    /// A snapshot of the node's counters.
    pub fn stats(&self) -> Stats {
        self.bus().counters.snapshot()
    }

    /// Sends a message, or an [`Envelope`](crate::Envelope) of several, to
    /// every node in the room, this one included. Waits while the outgoing
    /// queue is full; returns once the envelope is queued (it is posted,
    /// and this node's own handlers run, in order, soon after).
    pub async fn send(&self, payload: impl Payload) -> Result<()> {
        let bus = self.bus();
        let mut writer = BodyWriter::new(bus.codec);
        self.encode(&payload, &mut writer)?;
        match bus.outbox.push(writer, &bus.counters.sent).await {
            Ok(()) => Ok(()),
            Err(_) => Err(self.stopped()),
        }
    }

    /// Like [`send`](Node::send) but never waits: fails with
    /// [`Error::QueueFull`] when the outgoing queue is full. This is what
    /// `broadcast()` uses; it works from sync code.
    pub fn try_send(&self, payload: impl Payload) -> Result<()> {
        let bus = self.bus();
        let mut writer = BodyWriter::new(bus.codec);
        self.encode(&payload, &mut writer)?;
        match bus.outbox.try_push(writer, &bus.counters.sent) {
            Ok(()) => Ok(()),
            Err(Refused::Full(..)) => Err(Error::QueueFull {
                name: bus.name.to_string(),
                capacity: bus.outbox.capacity(),
            }),
            Err(Refused::Closed) => Err(self.stopped()),
        }
    }

    fn stopped(&self) -> Error {
        Error::NodeStopped {
            name: self.bus().name.to_string(),
        }
    }

    /// Encodes the messages into `writer` (the metadata follows when the
    /// outbox numbers the envelope), and checks that receivers take them.
    /// (The writer stays where the caller made it, rather than moving out
    /// in a `Result`: 21 instructions fewer per MessagePack roundtrip.)
    #[inline]
    fn encode(&self, payload: &impl Payload, writer: &mut BodyWriter) -> Result<()> {
        payload.write_messages(writer)?;
        self.bus().check(writer)
    }

    /// Registers a handler at run time, like SocketScience's
    /// `register(kind, callback)`: a closure or function taking the message
    /// and optionally a [`Context`], sync or async, returning `()` or
    /// `Result<(), E: Display>`. It runs for messages this node reads from
    /// now on.
    pub fn register<M, Args, H>(&self, handler: H)
    where
        M: Message,
        Args: 'static,
        H: Handler<M, Args>,
    {
        let name = std::any::type_name::<H>();
        let call = Arc::new(move |raw: RawValueRef<'_>, cx: &Context| {
            handler::call::<M, Args, H>(&handler, raw, cx)
        });
        self.register_erased(M::KIND, name, call);
    }

    /// Adds an erased handler of `kind` to the registry (`register`, and
    /// `answer` of questions).
    pub(crate) fn register_erased(
        &self,
        kind: &'static str,
        name: &'static str,
        call: Arc<handler::ErasedFn>,
    ) {
        self.shared.registry.rcu(|registry| {
            let mut updated = Registry::clone(registry);
            updated.add(
                kind,
                Registered {
                    name: name.into(),
                    call: call.clone(),
                },
            );
            updated
        });
    }

    /// Runs `future` with this node as the default node of `broadcast()`
    /// calls made inside it (on this task), whatever the process's default
    /// is. Tests that run in parallel in one process use it so their
    /// broadcasts do not cross.
    pub async fn scope<F: std::future::Future>(&self, future: F) -> F::Output {
        default::scope(self.clone(), future).await
    }

    /// Makes this node the process's default node.
    pub fn make_default(&self) {
        default::replace(self);
    }

    /// Stops the node: refuses new sends, posts everything already queued,
    /// runs this node's handlers for everything already received, then
    /// returns. If this node was the process's default node, there is none
    /// afterwards (until another node starts). Calling it again does
    /// nothing. Returns the transport's error if it failed.
    pub async fn shutdown(&self) -> Result<()> {
        self.bus().outbox.close();
        default::withdraw(self);
        let tasks = lock(&self.shared.tasks).take();
        let Some(tasks) = tasks else {
            return Ok(());
        };
        let transport = tasks.transport.await;
        tasks.presence.abort();
        if let Err(e) = tasks.dispatcher.await {
            error!(node = %self.bus().name, error = %e, "the dispatcher task failed");
        }
        info!(node = %self.bus().name, "socketscience node stopped");
        match transport {
            Ok(result) => result,
            Err(e) => Err(Error::transport(e)),
        }
    }

    /// Kinds this node has handlers for, sorted.
    pub fn handled_kinds(&self) -> Vec<&'static str> {
        let mut kinds = self.shared.read_registry().kinds();
        kinds.sort_unstable();
        kinds
    }
}
