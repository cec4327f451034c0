//! Typed messages between the instances of one chat bot, through the chat
//! room they already share.
//!
//! socketscience is the typed, declarative Rust successor of SmokeDetector's
//! SocketScience. Instances of a bot on different hosts talk to each other
//! by posting small framed envelopes into a chat room they are all in: no
//! host opens a port, the chat is the bus. A struct marked `#[message]` is a
//! kind of message; a function marked `#[handler]` runs, on every instance,
//! for every message of its kind.
//!
//! ```
//! use socketscience::{handler, message, Context, LocalChat, Node};
//!
//! #[message("ping")]
//! #[derive(Debug, Clone, PartialEq)]
//! pub struct Ping { pub location: String, pub timestamp: f64 }
//!
//! #[handler]
//! fn log_ping(ping: Ping, cx: Context) {
//!     println!("{} saw {} alive at {}", cx.node().name(), ping.location, ping.timestamp);
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> socketscience::Result<()> {
//! let chat = LocalChat::new(); // a chat room inside the process
//! let henders = Node::builder("Henders/EC2").transport(chat.join("smokey")).start().await?;
//! let teward = Node::builder("teward/vps").transport(chat.join("smokey")).start().await?;
//!
//! henders.scope(async {
//!     Ping { location: "Henders/EC2".into(), timestamp: 1.0 }.broadcast()
//! }).await?;
//!
//! henders.shutdown().await?; // posts what is queued
//! teward.shutdown().await?;  // runs what it received
//! assert_eq!(henders.stats().dispatched, 1); // the sender runs its own handlers
//! assert_eq!(teward.stats().dispatched, 1);
//! # Ok(()) }
//! ```
//!
//! # Types inside a message
//!
//! A struct or enum that a message holds in a field needs serde too: mark
//! it `#[data]`, which derives serde through socketscience as `#[message]`
//! does (no serde dependency, `#[serde(...)]` attributes keep working).
//!
//! ```
//! use socketscience::{data, message, LocalChat, Node};
//!
//! #[data]
//! #[derive(Debug, Clone, PartialEq)]
//! pub struct Location { pub host: String, pub region: Region }
//!
//! #[data]
//! #[serde(rename_all = "lowercase")]
//! #[derive(Debug, Clone, Copy, PartialEq)]
//! pub enum Region { Eu, Us }
//!
//! #[message("where")]
//! #[derive(Debug, Clone, PartialEq)]
//! pub struct Where { pub location: Location, pub previous: Vec<Location> }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> socketscience::Result<()> {
//! let chat = LocalChat::new();
//! let node = Node::builder("Henders/EC2").transport(chat.join("smokey")).start().await?;
//! let here = Location { host: "Henders/EC2".into(), region: Region::Eu };
//! node.register(move |w: Where| assert_eq!(w.location.region, Region::Eu));
//! node.send(Where { location: here, previous: Vec::new() }).await?;
//! node.shutdown().await?;
//! assert_eq!(node.stats().dispatched, 1);
//! # Ok(()) }
//! ```
//!
//! # Semantics, on every transport
//!
//! - Every node in the room, the sender included, runs every handler for
//!   each kind in an envelope.
//! - A node trusts only envelopes posted by its own chat account unless told
//!   otherwise ([`NodeBuilder::trust`]); anything else is ignored and counted.
//! - Unknown kinds are counted; a value that does not fit its type is logged
//!   with the kind and the serde error and counted; the envelope's other
//!   kinds still run.
//! - A handler's error or panic is caught, logged with the handler's name
//!   and counted; the node goes on.
//! - Envelopes from one sender are dispatched in the order they were sent.
//!   A node runs its handlers one at a time: spawn long work.
//! - What a node misses (it was cut off, the chat dropped a post) is asked
//!   for again and posted again by its sender, within the sender's repair
//!   history; what cannot be repaired is counted in [`Stats::lost`] and
//!   logged ([`NodeBuilder::heartbeat`], [`Node::peers`];
//!   [`guide::reliability`]).
//! - [`Node::shutdown`] posts everything queued and runs everything received
//!   before it returns.
//!
//! # The default node
//!
//! `broadcast()` sends through the process's default node: the first node
//! started (while there is none), or the one [`Node::make_default`] names.
//! When it shuts down there is no default until another node starts, and
//! `broadcast()` fails with [`Error::DefaultNodeStopped`] (naming it). Inside
//! [`Node::scope`], `broadcast()` uses that node instead: tests that run in
//! parallel in one process use it (or `node.send`) to keep apart.
//!
//! # Coordination
//!
//! - Failover: [`NodeBuilder::failover`] with a [`Failover`] makes the
//!   node take part in electing one active instance among the live ones
//!   ([`Node::role`], [`Node::watch_role`], [`Node::force_role`],
//!   [`Peer::role`]), and [`Node::fencing_token`] lets a service the
//!   active writes to refuse a stale active. See [`guide::coordination`]
//!   for the rule, the properties and what a chat-only election can
//!   promise in a partition.
//! - Questions with answers: `#[message("kind", reply = Reply)]` declares
//!   a [`Question`]; a `#[handler]` for it returns the reply;
//!   [`Node::ask`] gathers the typed [`Answer`]s within a deadline.
//!
//! # Wire
//!
//! Each envelope is one chat message, `".\n\x02" DDDD BODY "\x03"`, where
//! `BODY` is base64 of a JSON object (default) or a MessagePack map (as
//! Python SocketScience writes) of kinds to values; keys starting with `_`
//! carry the sender's instance name and sequence number. See [`wire`].
//!
//! # Features
//!
//! - `irc` (default): [`IrcChat`], the IRC transport (tokio's TCP only).
//! - `stackexchange`: [`StackExchangeChat`] and the [`stackexchange`]
//!   module, the Stack Exchange chat transport (an HTTP and websocket stack
//!   with rustls).
//! - `matrix`: [`MatrixChat`] and the [`matrix`] module, the Matrix
//!   transport (an HTTP stack and ruma's types).
//! - `metrics`: every counter of [`Stats`] (as `socketscience_<counter>`)
//!   and the gauges that matter (`socketscience_peers`, `_active`, `_term`,
//!   `_queue_depth`, `_held`), labelled `node="<instance>"`, published
//!   through the [`metrics`](https://docs.rs/metrics) facade once a second
//!   and when the node shuts down; the program installs the exporter
//!   (`metrics-exporter-prometheus`; `examples/irc_node.rs --metrics
//!   127.0.0.1:9100` serves them).
//! - `test-util`: [`harness`], a node's send and receive paths driven
//!   synchronously, for benches, fuzzing and property tests (and, hidden
//!   from the documentation, the [`wire`] pieces tests build bodies and
//!   frames with); not for production.
//!
//! [`LocalChat`], the chat room inside one process, needs no feature.
//!
//! socketscience turns on serde_json's `float_roundtrip` feature, and so
//! (features unify) for every crate of a build that has socketscience in
//! it: their serde_json reads floats correctly rounded, a little slower.
//! The wire needs it: JSON is the default codec between Rust instances,
//! and without it serde_json reads about three in ten `f64`s one unit in
//! the last place off (`1722016499.2289793`, a `time.time()` timestamp,
//! reads back `1722016499.228979`), so a float sent would not be the float
//! received. serde_json parses a number before any visitor sees it, also
//! inside a `serde_json::Value` a message holds, so the crate cannot read
//! the floats some other way.
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

extern crate self as socketscience;

mod clock;
mod core;
mod error;
mod failover;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod harness;
mod message;
mod node;
mod presence;
mod rate;
mod receive;
mod repair;
mod security;
mod send;
mod shared;
mod stats;
mod sync;
pub mod transport;
pub mod wire;

// What a first program names.
pub use crate::core::envelope::{Envelope, Payload};
pub use error::{Error, Result};
pub use failover::{Failover, Role};
pub use message::Message;
pub use node::{stop_signal, Context, Node, NodeBuilder};
pub use stats::Stats;
#[cfg(feature = "irc")]
#[cfg_attr(docsrs, doc(cfg(feature = "irc")))]
pub use transport::irc::IrcChat;
pub use transport::local::LocalChat;
#[cfg(feature = "matrix")]
#[cfg_attr(docsrs, doc(cfg(feature = "matrix")))]
#[doc(inline)]
pub use transport::matrix;
#[cfg(feature = "matrix")]
#[cfg_attr(docsrs, doc(cfg(feature = "matrix")))]
pub use transport::matrix::MatrixChat;
#[cfg(feature = "stackexchange")]
#[cfg_attr(docsrs, doc(cfg(feature = "stackexchange")))]
#[doc(inline)]
pub use transport::stackexchange;
#[cfg(feature = "stackexchange")]
#[cfg_attr(docsrs, doc(cfg(feature = "stackexchange")))]
pub use transport::stackexchange::StackExchangeChat;
pub use wire::Codec;

/// Questions with answers: [`Node::ask`] and what it gives back.
pub mod ask {
    pub use crate::node::ask::{Answer, Answers, Ask, IntoReply, Question, Within};
}

/// Who else is in the room: [`Node::peers`], [`Node::peer_events`].
pub mod peers {
    pub use crate::presence::{Peer, PeerChange, PeerEvent, PeerEvents, MAX_META_BYTES};
}

/// Handlers and the messages they take: what a handler returns, who sent
/// an envelope, the kinds this program declares, and the envelopes of a
/// known kind that did not read as it.
pub mod handlers {
    pub use crate::message::{message_types, MessageType};
    pub use crate::node::handler::{Handler, HandlerResult};
    pub use crate::node::{Mismatch, Observed, Sender, MAX_MISMATCHES};
}

/// Who may steer the fleet: the shared secret's environment variables and
/// the untrusted accounts a node heard.
pub mod trust {
    pub use crate::security::{UntrustedAccount, PREVIOUS_SECRET_ENV, SECRET_ENV};
}

// The root paths of 0.1 for the names above that now live in modules:
// kept for code written against them, hidden from the docs.
#[doc(hidden)]
pub use ask::{Answer, Answers, Ask, IntoReply, Question, Within};
#[doc(hidden)]
pub use handlers::{
    message_types, Handler, HandlerResult, MessageType, Mismatch, Observed, Sender, MAX_MISMATCHES,
};
#[doc(hidden)]
pub use peers::{Peer, PeerChange, PeerEvent, PeerEvents, MAX_META_BYTES};
#[doc(hidden)]
#[cfg(feature = "irc")]
pub use transport::IrcStatus;
#[doc(hidden)]
pub use transport::{
    ChatMessage, LineMode, LocalTransport, ReassemblyLimits, Transport, TransportIo,
};
#[doc(hidden)]
pub use trust::{UntrustedAccount, PREVIOUS_SECRET_ENV, SECRET_ENV};

pub use socketscience_macros::{data, handler, message};

/// Not public API: what the macros' expansions name. It may change in any
/// release.
#[doc(hidden)]
pub mod __private {
    pub use crate::message::MessageType;
    pub use crate::node::ask::{answer_with, Answering};
    pub use crate::node::handler::{Call, HandlerMode, StaticHandler};
    pub use crate::node::Context;
    pub use crate::wire::RawValueRef;
    pub use inventory;
    pub use serde;

    /// What `broadcast()` calls.
    pub fn broadcast<M: crate::Message>(message: M) -> crate::Result<()> {
        crate::node::default::broadcast(message)
    }
}

/// The guides: what the API docs do not say in one place, with examples
/// (compiled and run as doc tests).
pub mod guide {
    #[doc = include_str!("../guide/reliability.md")]
    pub mod reliability {}
    #[doc = include_str!("../guide/coordination.md")]
    pub mod coordination {}
    #[doc = include_str!("../guide/operating.md")]
    pub mod operating {}
    #[doc = include_str!("../guide/irc.md")]
    pub mod irc {}
    #[doc = include_str!("../guide/matrix.md")]
    pub mod matrix {}
    #[doc = include_str!("../guide/stackexchange.md")]
    pub mod stackexchange {}
}

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
