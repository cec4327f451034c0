//! The [`Transport`] trait: how a node reaches a chat room.
//!
//! A transport does three things only: post text into the room, hand the
//! node every chat message it sees with its author, and say how long a chat
//! message may be. Framing, chunking, trust, decoding, deduplication,
//! dispatch and counting are the node's, written once for every transport.

#[cfg(any(feature = "irc", feature = "stackexchange", feature = "matrix"))]
mod backoff;
#[cfg(feature = "irc")]
pub(crate) mod irc;
pub(crate) mod local;
#[cfg(feature = "matrix")]
#[doc(hidden)] // documented as `socketscience::matrix`
pub mod matrix;
#[cfg(feature = "stackexchange")]
#[doc(hidden)] // documented as `socketscience::stackexchange`
pub mod stackexchange;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

pub use crate::core::ChatMessage;
use crate::core::Core;
use crate::error::{Error, Result};
pub use crate::receive::ReassemblyLimits;
use crate::send::Poster;
pub use crate::wire::LineMode;
#[cfg(feature = "irc")]
#[cfg_attr(docsrs, doc(cfg(feature = "irc")))]
pub use irc::IrcStatus;
pub use local::LocalTransport;

/// A boxed, sendable future, as [`Transport::run`] returns.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A chat room connection a [`Node`](crate::Node) can use.
///
/// Implement it to plug in another chat. The node calls [`run`](Self::run)
/// once, on its own task; `run` posts each text that
/// [`TransportIo::next_post`] yields, hands every chat message it receives
/// to [`TransportIo::receive`], and returns once `next_post` gives `None`
/// (the node is shutting down and everything queued has been handed over).
///
/// A complete transport for a chat that is just a broadcast channel:
///
/// ```
/// use socketscience::transport::BoxFuture;
/// use socketscience::transport::{ChatMessage, Transport, TransportIo};
/// use tokio::sync::broadcast;
///
/// struct Channel { account: String, tx: broadcast::Sender<ChatMessage> }
///
/// impl Transport for Channel {
///     fn account(&self) -> &str { &self.account }
///     fn max_message_len(&self) -> usize { 4096 }
///     fn run(self: Box<Self>, mut io: TransportIo) -> BoxFuture<socketscience::Result<()>> {
///         Box::pin(async move {
///             let mut rx = self.tx.subscribe();
///             loop {
///                 tokio::select! {
///                     post = io.next_post() => match post {
///                         Some(text) => { let _ = self.tx.send(ChatMessage::new(self.account.as_str(), text)); }
///                         None => return Ok(()),
///                     },
///                     Ok(message) = rx.recv() => io.receive(message).await?,
///                 }
///             }
///         })
///     }
/// }
/// ```
pub trait Transport: Send + 'static {
    /// The chat account this transport posts as. A node trusts it by default.
    fn account(&self) -> &str;

    /// The longest text, in bytes, one chat message may carry. Longer frames
    /// are split into chunks by the node.
    fn max_message_len(&self) -> usize;

    /// Whether chat messages may hold a newline. Default: [`LineMode::Multi`].
    /// Single-line chats (IRC) get frames without the leading `".\n"`.
    fn lines(&self) -> LineMode {
        LineMode::Multi
    }

    /// Whether this transport's account usually differs from one instance
    /// of a fleet to the next (an IRC nick, a Matrix user), so that a node
    /// without [`NodeBuilder::trust`](crate::NodeBuilder::trust), trusting
    /// only its own account, is most likely a mistake: the node warns at
    /// start. Default: `false`.
    fn account_per_instance(&self) -> bool {
        false
    }

    /// Checks the transport's settings before the node starts anything:
    /// [`NodeBuilder::start`](crate::NodeBuilder::start) fails with the error
    /// returned. Default: nothing to check. Return
    /// [`Error::InvalidOption`] naming the setting and what to change, so a
    /// setting that cannot work fails at start, not at the first post or at
    /// shutdown.
    fn check(&self) -> Result<()> {
        Ok(())
    }

    /// How many posts a minute the room takes from this transport's
    /// account, when the transport knows (a throttle it was told, or the
    /// chat's known limit); the fleet's presence takes an eighth of it by
    /// default ([`NodeBuilder::presence_budget`](crate::NodeBuilder::presence_budget)).
    /// Default: `None`, presence is not bounded.
    fn posts_per_minute(&self) -> Option<f64> {
        None
    }

    /// Whether [`NodeBuilder::start`](crate::NodeBuilder::start) waits for
    /// the transport's first connection. If so, [`run`](Self::run) reports
    /// how it went with [`TransportIo::connected`], and `start` fails with
    /// the error reported (a certificate that does not verify, a login
    /// refused), or with the error `run` returns if it ends before
    /// reporting. Default: `false`, `start` returns at once.
    fn connects_before_start(&self) -> bool {
        false
    }

    /// Runs the connection until [`TransportIo::next_post`] returns `None`.
    fn run(self: Box<Self>, io: TransportIo) -> BoxFuture<Result<()>>;
}

/// The node's side of a transport: what to post, where to deliver.
pub struct TransportIo {
    pub(crate) inbound: mpsc::Sender<ChatMessage>,
    /// The node's core.
    pub(crate) core: Arc<Core>,
    /// What waits to be posted, grouped, framed and chunked (`send/`).
    pub(crate) poster: Poster,
    /// Where `start` waits for the first connection
    /// ([`Transport::connects_before_start`]).
    pub(crate) connected: Option<oneshot::Sender<Result<()>>>,
}

impl TransportIo {
    /// Waits for the next text to post, framed (or one chunk of a frame)
    /// and no longer than [`Transport::max_message_len`]. `None` once the
    /// node shuts down and everything it queued has been handed over.
    ///
    /// When several envelopes are waiting (the transport was throttled, or
    /// the program sends faster than the chat takes posts), one post
    /// carries as many as fit, in order: with the JSON codec as a batch,
    /// with MessagePack as one merged map while no kind repeats; except on
    /// a node with [`NodeBuilder::python_peers`](crate::NodeBuilder::python_peers),
    /// which posts each envelope alone. Call it only when the chat
    /// will take a post: envelopes wait in the node meanwhile.
    ///
    /// Cancel-safe: dropping the future before it completes loses nothing,
    /// so it can sit in a `tokio::select!` beside the chat's reader.
    // (The send path's future itself, not wrapped in another.)
    #[inline]
    pub fn next_post(&mut self) -> impl Future<Output = Option<String>> + Send + '_ {
        self.poster.next_post(&self.core)
    }

    /// How many envelopes the last post [`next_post`](Self::next_post)
    /// gave held (the frame of its last chunk): for a transport that gives
    /// a post up and logs what it held.
    pub fn last_post_envelopes(&self) -> usize {
        self.poster.last_post_envelopes()
    }

    /// Tells [`NodeBuilder::start`](crate::NodeBuilder::start) how the
    /// first connection went, for a transport that
    /// [`connects_before_start`](Transport::connects_before_start): `Ok`
    /// lets `start` return the node, an error fails `start` with it (the
    /// transport should then return from `run`). Only the first call
    /// counts.
    pub fn connected(&mut self, outcome: Result<()>) {
        if let Some(tx) = self.connected.take() {
            let _ = tx.send(outcome);
        }
    }

    /// Hands the node a chat message seen in the room. Waits while the
    /// node's inbound queue is full; fails once the node has stopped.
    pub async fn receive(&self, message: ChatMessage) -> Result<()> {
        self.inbound
            .send(message)
            .await
            .map_err(|_| Error::NodeStopped {
                name: self.core.name.to_string(),
            })
    }

    /// Whether the node is shutting down: it takes no more envelopes, and
    /// [`next_post`](Self::next_post) gives `None` once the queue is empty.
    /// A transport that cannot post right now (disconnected) checks it to
    /// decide between waiting and giving up.
    pub fn is_closing(&self) -> bool {
        self.core.outbox.is_closed()
    }

    /// The bound on the node's shutdown
    /// ([`NodeBuilder::shutdown_timeout`](crate::NodeBuilder::shutdown_timeout)):
    /// past it, the node stops the transport, whatever it still holds.
    /// A transport that has its own flushing steps may use it to give up
    /// in time, with its own log.
    pub fn shutdown_timeout(&self) -> std::time::Duration {
        self.core.shutdown_timeout
    }

    /// From now on, a post counts as posted only when the transport says
    /// so ([`confirm_through`](Self::confirm_through)), not when it asks
    /// for the next: for a transport that takes posts ahead of writing
    /// them (IRC's queue, which a send rate drains). What `shutdown` could
    /// not get posted within its bound is then counted right
    /// ([`Stats::unposted`](crate::Stats::unposted)).
    pub fn confirm_explicitly(&mut self) {
        self.poster.confirm_explicitly();
    }

    /// The mark to hand [`confirm_through`](Self::confirm_through) once the
    /// post [`next_post`](Self::next_post) gave last is posted (marks grow
    /// with the posts).
    pub fn post_through(&self) -> u64 {
        self.poster.through()
    }

    /// The posts marked up to `through` (from
    /// [`post_through`](Self::post_through)) are posted.
    pub fn confirm_through(&self, through: u64) {
        self.core.confirm_through(through);
    }

    /// Counts a mishap only the transport sees in the node's
    /// [`Stats`](crate::Stats).
    pub fn count(&self, mishap: Mishap) {
        count(&self.core, mishap);
    }

    /// The sending node's instance name (for a transport's logs).
    pub fn node_name(&self) -> &str {
        &self.core.name
    }

    /// What the transport's own tasks may keep of the node (its reader,
    /// its poster): whether it is closing, and its counters.
    pub fn link(&self) -> NodeLink {
        NodeLink(self.core.clone())
    }
}

/// What a transport's tasks may keep of the node (cheap to clone), from
/// [`TransportIo::link`]: whether it is closing, and the counters only a
/// transport can keep. The transports of this crate see the node through
/// this and [`TransportIo`] only.
#[derive(Clone)]
pub struct NodeLink(Arc<Core>);

impl std::fmt::Debug for NodeLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("NodeLink").field(&self.0.name).finish()
    }
}

impl NodeLink {
    /// Whether the node is shutting down (see [`TransportIo::is_closing`]).
    pub fn is_closing(&self) -> bool {
        self.0.outbox.is_closed()
    }

    /// Counts a mishap only the transport sees (see [`TransportIo::count`]).
    pub fn count(&self, mishap: Mishap) {
        count(&self.0, mishap);
    }
}

/// What a transport counts in the node's [`Stats`](crate::Stats): the
/// mishaps only it sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mishap {
    /// The chat answered that the room is in timeout, and the transport
    /// waits it out: [`Stats::room_timeouts`](crate::Stats::room_timeouts).
    RoomTimeout,
    /// A post given up after its tries of real failures (throttle answers
    /// are not failures): [`Stats::posts_given_up`](crate::Stats::posts_given_up).
    PostGivenUp,
    /// A chat message seen whose full text could not be read, so that its
    /// envelopes did not reach the node:
    /// [`Stats::sources_lost`](crate::Stats::sources_lost).
    SourceLost,
    /// A gap in the room's history the transport could not read back
    /// whole, so that messages may have been missed:
    /// [`Stats::history_gaps`](crate::Stats::history_gaps).
    HistoryGap,
}

fn count(core: &Core, mishap: Mishap) {
    let counters = &core.counters;
    let counter = match mishap {
        Mishap::RoomTimeout => &counters.room_timeouts,
        Mishap::PostGivenUp => &counters.posts_given_up,
        Mishap::SourceLost => &counters.sources_lost,
        Mishap::HistoryGap => &counters.history_gaps,
    };
    counter.add_shared(1);
}
