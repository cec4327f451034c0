//! [`Node`]: one instance in the room. It frames, trusts, decodes,
//! deduplicates, dispatches and counts, once, for every transport.
//!
//! This file holds the node's handle and what its handles share; beside
//! it `builder/` (its options and start), `handler.rs` (what a handler
//! is, the registry), `context.rs` (what a handler is given),
//! `dispatch.rs` (running the handlers of an accepted envelope: the
//! receive path's `Deliver`), `default.rs` (the process's default node,
//! for `broadcast()`), and the node's side of presence (`presence.rs`),
//! failover (`failover.rs`) and questions (`ask.rs`). What the node's
//! tasks share with the transport and the receive path is its `Core`
//! (`crate::core::Core`).

pub(crate) mod ask;
mod builder;
mod context;
pub(crate) mod default;
mod dispatch;
mod failover;
pub(crate) mod handler;
#[cfg(feature = "metrics")]
mod metrics;
mod mismatch;
mod presence;
mod shared;
mod state;

pub use builder::NodeBuilder;
#[cfg(feature = "test-util")]
pub(crate) use builder::Parts;
pub use context::{Context, Sender};
#[cfg(feature = "test-util")]
pub(crate) use dispatch::Handlers;
pub use dispatch::Observed;
pub use mismatch::{Mismatch, MAX_MISMATCHES};

use std::fmt;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::core::envelope::{BodyWriter, Payload};
use crate::core::outbox::Refused;
use crate::core::Core;
use crate::error::{Error, Result};
use crate::message::Message;
use crate::stats::{Counters, Stats};
use crate::sync::lock;
use crate::wire::{Codec, RawValueRef};
use handler::{Handler, HandlerMode, Registered, Registry};

/// How long the handlers of what was received may still run when the
/// transport used all of the shutdown timeout.
const HANDLERS_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

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
            .field("name", &self.core().name)
            .field("account", &self.core().account)
            .field("state", &self.shared.state.type_names())
            .finish_non_exhaustive()
    }
}

impl PartialEq for Node {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}
impl Eq for Node {}

/// What the node's handles share: its core (shared in turn with the
/// transport and the dispatcher), its handlers, its questions in flight
/// and its tasks.
pub(crate) struct NodeShared {
    pub(crate) core: Arc<Core>,
    /// The handlers, replaced whole when one is registered (copy on
    /// write); shared with the dispatcher's cache of it.
    pub(crate) registry: Arc<ArcSwap<Registry>>,
    tasks: Mutex<Option<Tasks>>,
    /// Questions: this node's questions in flight.
    pub(crate) asks: ask::Waiters,
    /// What handlers reach with `cx.state::<T>()`.
    pub(crate) state: state::State,
    /// Kinds and values from the room this node could not use.
    pub(crate) mismatches: mismatch::Mismatches,
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
    /// The node's core.
    #[inline]
    pub(crate) fn core(&self) -> &Core {
        &self.shared.core
    }

    /// This instance's name.
    pub fn name(&self) -> &str {
        &self.core().name
    }

    /// The chat account this node posts as.
    pub fn account(&self) -> &str {
        &self.core().account
    }

    /// This process's session id: random per start, sent with every envelope.
    pub fn session(&self) -> u64 {
        self.core().session
    }

    /// The codec this node writes.
    pub fn codec(&self) -> Codec {
        self.core().codec
    }

    /// The value of type `T` given to
    /// [`NodeBuilder::state`](crate::NodeBuilder::state), if any (what
    /// handlers reach with [`Context::state`]).
    pub fn state<T: 'static>(&self) -> Option<&T> {
        self.shared.state.get::<T>()
    }

    /// The chat accounts whose envelopes this node ignored because it does
    /// not trust them ([`NodeBuilder::trust`](crate::NodeBuilder::trust)),
    /// most envelopes first, with the instance each claimed: the usual
    /// reason a fleet does not see itself. At most 64 accounts are listed
    /// (they come from the room); the rest are counted in
    /// [`Stats::untrusted_unlisted`]. Each account's first envelope is also
    /// logged at WARN with the `.trust(..)` that would admit it.
    pub fn untrusted_accounts(&self) -> Vec<crate::security::UntrustedAccount> {
        self.core().untrusted.list()
    }

    /// The kinds this node could not use, per kind and sender: values that
    /// do not fit their message type and kinds no handler here takes (as
    /// during a rolling upgrade: [`guide::coordination`](crate::guide::coordination)). [`Stats::bad_values`] and [`Stats::unknown_kinds`]
    /// hold the totals; this list holds at most [`MAX_MISMATCHES`] pairs.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> socketscience::Result<()> {
    /// use socketscience::{message, LocalChat, Node};
    ///
    /// #[message("shiny")]
    /// pub struct Shiny(pub u8);
    ///
    /// let chat = LocalChat::new();
    /// let a = Node::builder("a").transport(chat.join("smokey")).start().await?;
    /// let b = Node::builder("b").transport(chat.join("smokey")).start().await?;
    /// // No handler at b takes it (as if b ran an older build).
    /// a.send(Shiny(1)).await?;
    /// a.shutdown().await?;
    /// b.shutdown().await?;
    /// let m = &b.mismatches()[0];
    /// assert_eq!((m.kind.as_str(), m.sender.as_str(), m.unknown), ("shiny", "a", 1));
    /// # Ok(()) }
    /// ```
    pub fn mismatches(&self) -> Vec<Mismatch> {
        self.shared.mismatches.list()
    }

    /// A snapshot of the node's counters.
    pub fn stats(&self) -> Stats {
        self.core().counters.snapshot()
    }

    /// Sends a message, or an [`Envelope`](crate::Envelope) of several, to
    /// every node in the room, this one included. Waits while the outgoing
    /// queue is full; returns once the envelope is queued (it is posted,
    /// and this node's own handlers run, in order, soon after).
    pub async fn send(&self, payload: impl Payload) -> Result<()> {
        let core = self.core();
        let mut writer = BodyWriter::new(core.codec);
        self.encode(&payload, &mut writer)?;
        match core.outbox.push(writer, &core.counters.sent).await {
            Ok(()) => Ok(()),
            Err(_) => Err(self.stopped()),
        }
    }

    /// Like [`send`](Node::send) but never waits: fails with
    /// [`Error::QueueFull`] when the outgoing queue is full. This is what
    /// `broadcast()` uses; it works from sync code.
    pub fn try_send(&self, payload: impl Payload) -> Result<()> {
        let core = self.core();
        let mut writer = BodyWriter::new(core.codec);
        self.encode(&payload, &mut writer)?;
        match core.outbox.try_push(writer, &core.counters.sent) {
            Ok(()) => Ok(()),
            Err(Refused::Full(..)) => Err(Error::QueueFull {
                name: core.name.to_string(),
                capacity: core.outbox.capacity(),
            }),
            Err(Refused::Closed) => Err(self.stopped()),
        }
    }

    fn stopped(&self) -> Error {
        Error::NodeStopped {
            name: self.core().name.to_string(),
        }
    }

    /// Encodes the messages into `writer` (the metadata follows when the
    /// outbox numbers the envelope), and checks that receivers take them.
    /// (The writer stays where the caller made it, rather than moving out
    /// in a `Result`: this runs for every message sent.)
    #[inline]
    fn encode(&self, payload: &impl Payload, writer: &mut BodyWriter) -> Result<()> {
        payload.write_messages(writer)?;
        self.core().check(writer)
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
        self.register_erased(M::KIND, name, call, HandlerMode::Every);
    }

    /// Registers a handler at run time, like [`register`](Node::register),
    /// that runs only while this node is the active instance of its
    /// election ([`NodeBuilder::failover`](crate::NodeBuilder::failover),
    /// [`Node::role`]); on a standby, the messages of its kind are read and
    /// left. The run-time form of `#[handler(active)]`: "only the active
    /// instance serves the coffee".
    ///
    /// Fails with [`Error::InvalidOption`] on a node that takes no part in
    /// an election (built without `.failover(..)`): such a node is always
    /// active, and a handler meant for one instance of the fleet would run
    /// in every one of them.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> socketscience::Result<()> {
    /// use std::time::Duration;
    /// use socketscience::{message, Failover, LocalChat, Node};
    ///
    /// #[message("register_active_doc_tea")]
    /// pub struct Tea;
    ///
    /// let chat = LocalChat::new();
    /// let node = Node::builder("Henders/EC2")
    ///     .transport(chat.join("smokey"))
    ///     .heartbeat(Duration::from_millis(100))
    ///     .failover(Failover::new())
    ///     .start()
    ///     .await?;
    /// node.register_active(|_: Tea| println!("served by the active instance"))?;
    /// # node.shutdown().await?;
    ///
    /// let alone = Node::builder("alone").transport(chat.join("smokey")).start().await?;
    /// assert!(alone.register_active(|_: Tea| ()).is_err()); // no failover
    /// # alone.shutdown().await
    /// # }
    /// ```
    pub fn register_active<M, Args, H>(&self, handler: H) -> Result<()>
    where
        M: Message,
        Args: 'static,
        H: Handler<M, Args>,
    {
        let name = std::any::type_name::<H>();
        if self.core().election.is_none() {
            return Err(no_election(self.name(), name, "node.register_active(..)"));
        }
        let call = handler::active_only(move |raw: RawValueRef<'_>, cx: &Context| {
            handler::call::<M, Args, H>(&handler, raw, cx)
        });
        self.register_erased(M::KIND, name, call, HandlerMode::Active);
        Ok(())
    }

    /// Registers a handler at run time, like [`register`](Node::register),
    /// whose work is shared by the fleet: for each envelope of its kind,
    /// one live instance among those with a shared handler for the kind
    /// runs it; the others do not (ordinary handlers of the kind still run
    /// everywhere). The run-time form of `#[handler(shared)]`.
    ///
    /// The choice costs no post: every instance computes the same hash of
    /// the envelope's identity (sender session and sequence number) over
    /// the live instances that say, in their heartbeats, that they take
    /// their share of the kind, so the jobs spread evenly. The others hold
    /// each job until the chosen instance confirms it (in its heartbeats,
    /// at most every half heartbeat interval while it has something to
    /// confirm); if it is gone first (not heard within the peer timeout),
    /// the next choice runs the job, and [`Context::is_takeover`] says it
    /// may have run twice (counted in [`Stats::shared_takeovers`](crate::Stats::shared_takeovers)).
    /// A node takes its share one heartbeat interval after it started, and
    /// gives it up when it shuts down; until then it holds jobs like the
    /// others. Jobs held are bounded ([`NodeBuilder::shared_held`]).
    ///
    /// Fails with [`Error::InvalidOption`] on a node without heartbeats
    /// (`.heartbeat(Duration::ZERO)`) or a read-only one: it could not
    /// confirm what it ran.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> socketscience::Result<()> {
    /// use socketscience::{message, Context, LocalChat, Node};
    ///
    /// #[message("register_shared_doc_tea")]
    /// pub struct Tea;
    ///
    /// let chat = LocalChat::new();
    /// let node = Node::builder("Henders/EC2").transport(chat.join("smokey")).start().await?;
    /// node.register_shared(|_: Tea, cx: Context| {
    ///     println!("one instance serves the tea (takeover: {})", cx.is_takeover());
    /// })?;
    /// # node.shutdown().await
    /// # }
    /// ```
    pub fn register_shared<M, Args, H>(&self, handler: H) -> Result<()>
    where
        M: Message,
        Args: 'static,
        H: Handler<M, Args>,
    {
        let name = std::any::type_name::<H>();
        let core = self.core();
        if core.presence.options.heartbeat.is_zero() || core.read_only {
            return Err(no_heartbeats(self.name(), name, "node.register_shared(..)"));
        }
        let call = Arc::new(move |raw: RawValueRef<'_>, cx: &Context| {
            handler::call::<M, Args, H>(&handler, raw, cx)
        });
        self.register_erased(M::KIND, name, call, HandlerMode::Shared);
        Ok(())
    }

    /// Adds an erased handler of `kind` to the registry (`register`, and
    /// `answer` of questions).
    pub(crate) fn register_erased(
        &self,
        kind: &'static str,
        name: &'static str,
        call: Arc<handler::ErasedFn>,
        mode: HandlerMode,
    ) {
        self.shared.registry.rcu(|registry| {
            let mut updated = Registry::clone(registry);
            updated.add(
                kind,
                Registered {
                    name: name.into(),
                    call: call.clone(),
                    mode,
                },
            );
            updated
        });
        // The kinds it handles go with its next heartbeat.
        let registry = self.shared.read_registry();
        let presence = &self.core().presence;
        presence.set_kinds(registry.kinds_sorted(), registry.shared_kinds_sorted());
        if mode == HandlerMode::Shared {
            // Said at once: until the others hear it, what it runs may
            // run elsewhere too (marked as takeovers).
            self.core().shared.rejoin();
            self.core().announce();
        }
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
    ///
    /// It returns within [`NodeBuilder::shutdown_timeout`] (30 s by
    /// default) and a little more, whatever the chat does: what is not
    /// posted by then is dropped, logged, counted in
    /// [`Stats::unposted`](crate::Stats::unposted), and `shutdown` returns
    /// [`Error::Unposted`] saying how many envelopes.
    pub async fn shutdown(&self) -> Result<()> {
        let core = self.core();
        // Shared handlers: gives up its share, saying how far it got, in a
        // last heartbeat (posted before the queue closes).
        core.shared.leave();
        if core.presence.set_shared_open(false) && !core.outbox.is_closed() {
            core.announce();
        }
        core.outbox.close();
        default::withdraw(self);
        let tasks = lock(&self.shared.tasks).take();
        let Some(mut tasks) = tasks else {
            return Ok(());
        };
        let deadline = tokio::time::Instant::now() + core.shutdown_timeout;
        let transport = match tokio::time::timeout_at(deadline, &mut tasks.transport).await {
            Ok(joined) => Some(joined),
            Err(_) => {
                // Its own tasks go with it (the transports abort them on drop).
                tasks.transport.abort();
                let _ = (&mut tasks.transport).await;
                None
            }
        };
        tasks.presence.abort();
        // Handlers of what was received get what is left of the bound (at
        // least a moment: the transport may have used it all).
        let handlers_until = deadline.max(tokio::time::Instant::now() + HANDLERS_GRACE);
        match tokio::time::timeout_at(handlers_until, &mut tasks.dispatcher).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => error!(node = %core.name, error = %e, "the dispatcher task failed"),
            Err(_) => {
                tasks.dispatcher.abort();
                warn!(
                    node = %core.name,
                    timeout = ?core.shutdown_timeout,
                    "handlers still running at the shutdown timeout were stopped"
                );
            }
        }
        let unposted = core.unposted();
        if unposted > 0 {
            // `shutdown` runs this once (the tasks are taken): one writer.
            Counters::add_owned(&core.counters.unposted, unposted);
            error!(
                node = %core.name,
                unposted,
                timeout = ?core.shutdown_timeout,
                "socketscience node stopped with envelopes not posted: dropped"
            );
        } else {
            info!(node = %core.name, "socketscience node stopped");
        }
        #[cfg(feature = "metrics")]
        metrics::publish(self);
        match transport {
            // The transport's own failure says most (the count is logged).
            Some(Ok(Err(e))) => Err(e),
            Some(Err(e)) => Err(Error::transport(e)),
            _ if unposted > 0 => Err(Error::Unposted {
                name: core.name.to_string(),
                unposted,
                timeout: core.shutdown_timeout,
            }),
            Some(Ok(Ok(()))) => Ok(()),
            None => {
                warn!(
                    node = %core.name,
                    timeout = ?core.shutdown_timeout,
                    "the chat transport had posted everything but did not stop within the \
                     shutdown timeout; it was stopped"
                );
                Ok(())
            }
        }
    }

    /// Waits for `signal`, then [`shutdown`](Node::shutdown)s the node. With
    /// [`stop_signal`](crate::stop_signal) it stops the node when the
    /// service manager says so (SIGTERM) or on Ctrl-C:
    ///
    /// ```no_run
    /// # async fn run(node: socketscience::Node) -> socketscience::Result<()> {
    /// node.shutdown_on(socketscience::stop_signal()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn shutdown_on(&self, signal: impl std::future::Future) -> Result<()> {
        signal.await;
        info!(node = %self.core().name, "stop signal: shutting down");
        self.shutdown().await
    }

    /// Kinds this node has handlers for, sorted.
    pub fn handled_kinds(&self) -> Vec<&'static str> {
        self.shared.read_registry().kinds_sorted()
    }
}

/// The error of a handler that runs only on the active instance, in a
/// node that takes part in no election.
pub(crate) fn no_election(node: &str, handler: &str, registered_by: &str) -> Error {
    Error::InvalidOption {
        option: "failover",
        reason: format!(
            "the handler `{handler}` ({registered_by}) runs only while its node is the active \
             instance, and node `{node}` takes part in no election (without failover every \
             node is active, so it would run in every instance): add \
             `.failover(Failover::new())` (and a `.heartbeat(..)`) to the builder, or register \
             it as an ordinary handler (`#[handler]`, `node.register(..)`)"
        ),
    }
}

/// The error of a shared handler in a node that posts no heartbeats (it
/// could not confirm what it runs).
pub(crate) fn no_heartbeats(node: &str, handler: &str, registered_by: &str) -> Error {
    Error::InvalidOption {
        option: "heartbeat",
        reason: format!(
            "the handler `{handler}` ({registered_by}) shares its jobs with the fleet, and node \
             `{node}` posts no heartbeats (heartbeat zero, or read-only), in which it would \
             confirm what it ran: give it a `.heartbeat(..)`, or register it as an ordinary \
             handler (`#[handler]`, `node.register(..)`)"
        ),
    }
}

/// Completes when the process is told to stop: SIGTERM (what systemd,
/// Docker and Kubernetes send) or SIGINT (Ctrl-C) on Unix, Ctrl-C
/// elsewhere. For [`Node::shutdown_on`].
pub async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
                return;
            }
            Err(e) => warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the node"),
        }
    }
    if let Err(e) = tokio::signal::ctrl_c().await {
        warn!(error = %e, "cannot listen for Ctrl-C either; the node stops only when told to");
        std::future::pending::<()>().await;
    }
}
