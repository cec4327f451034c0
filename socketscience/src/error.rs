//! The one error type of the crate.

use crate::wire::Codec;

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, each variant saying what to do about it.
///
/// Its `Debug` is its `Display` text (what went wrong and what to do), so
/// that `main() -> socketscience::Result<()>` prints that rather than the
/// variant's fields:
///
/// ```
/// let err = socketscience::Error::NodeStopped { name: "C1".into() };
/// assert_eq!(format!("{err:?}"), err.to_string());
/// ```
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `broadcast()` was called with no node running in this process.
    #[error(
        "no socketscience node is running in this process: start one with \
         `Node::builder(name).transport(..).start().await` before calling `broadcast()`, \
         or send through a node with `node.send(..)`"
    )]
    NoDefaultNode,

    /// The node has shut down.
    #[error("node `{name}` has shut down and sends nothing more; start a new node to send")]
    NodeStopped {
        /// The node's instance name.
        name: String,
    },

    /// `broadcast()` was called after the process's default node shut
    /// down, and no other node became the default since.
    #[error(
        "the default node `{name}` has shut down, so `broadcast()` has no node to send \
         through; broadcast before `shutdown()`, or start another node (or call \
         `node.make_default()` on a running one) and broadcast through it"
    )]
    DefaultNodeStopped {
        /// The instance name of the default node that shut down.
        name: String,
    },

    /// [`Node::wait_for_peers`](crate::Node::wait_for_peers) timed out.
    #[error(
        "node `{name}` heard {} other instance(s) within {timeout:?} ({}), not the {wanted} it \
         waited for: check that the others run and share this room, and that this node trusts \
         their chat accounts (`.trust(..)`; `node.untrusted_accounts()` lists who it ignores)",
        heard.len(),
        if heard.is_empty() { "none".to_string() } else { heard.join(", ") }
    )]
    PeersNotHeard {
        /// The node's instance name.
        name: String,
        /// How many other instances it waited for.
        wanted: usize,
        /// The instances it heard.
        heard: Vec<String>,
        /// How long it waited.
        timeout: std::time::Duration,
    },

    /// Two Rust types claim one kind.
    #[error(
        "two message types claim the kind `{kind}`: `{first}` and `{second}`; \
         give one of them another kind in its `#[message(\"...\")]`"
    )]
    DuplicateKind {
        /// The kind both claim.
        kind: String,
        /// One type.
        first: String,
        /// The other type.
        second: String,
    },

    /// The builder was started without a transport.
    #[error(
        "node `{name}` has no transport: call `.transport(chat.join(\"account\"))` \
         (or another transport) on the builder before `start()`"
    )]
    NoTransport {
        /// The node's instance name.
        name: String,
    },

    /// A builder option is out of range.
    #[error("invalid option `{option}`: {reason}")]
    InvalidOption {
        /// The builder method.
        option: &'static str,
        /// What is wrong with the value.
        reason: String,
    },

    /// One envelope was given the same kind twice.
    #[error(
        "the kind `{kind}` is already in this envelope (an envelope is a map, one value per kind); \
         send the second `{kind}` in another envelope"
    )]
    KindRepeated {
        /// The repeated kind.
        kind: &'static str,
    },

    /// A message could not be serialised.
    #[error("could not encode the `{kind}` message as {codec}: {reason}")]
    Encode {
        /// The kind that failed.
        kind: &'static str,
        /// The codec in use.
        codec: Codec,
        /// What serde said.
        reason: String,
    },

    /// The envelope can never be sent: it is larger than the node allows.
    #[error(
        "the envelope is {size} bytes encoded, over this node's limit of {max} bytes; \
         send its messages in smaller envelopes, or raise `max_envelope_bytes` on every node"
    )]
    TooLarge {
        /// Its encoded size.
        size: usize,
        /// The limit.
        max: usize,
    },

    /// A node with [`NodeBuilder::python_peers`](crate::NodeBuilder::python_peers)
    /// refuses an envelope that Python SocketScience instances in the room
    /// could not take whole: one that needs chunks, or that would make
    /// SmokeDetector's receive path raise (which stops that instance from
    /// reading the room).
    #[error(
        "node `{name}` shares its room with Python SocketScience instances (`python_peers()`) \
         and does not send this envelope: {reason}"
    )]
    NotForPython {
        /// The node's instance name.
        name: String,
        /// Why, and what to do.
        reason: String,
    },

    /// The outgoing queue is full and the caller cannot wait.
    #[error(
        "the outgoing queue of node `{name}` is full ({capacity} envelopes): the chat is not \
         keeping up; use `node.send(..).await` to wait for room, or raise `outgoing_capacity`"
    )]
    QueueFull {
        /// The node's instance name.
        name: String,
        /// The queue's capacity.
        capacity: usize,
    },

    /// [`Node::shutdown`](crate::Node::shutdown) reached its bound
    /// ([`NodeBuilder::shutdown_timeout`](crate::NodeBuilder::shutdown_timeout))
    /// before the chat took everything queued: the rest is dropped (and
    /// counted in [`Stats::unposted`](crate::Stats::unposted)).
    #[error(
        "node `{name}` stopped with {unposted} envelope(s) not posted: the chat did not take \
         them within the shutdown timeout of {timeout:?}, so they are dropped; check the chat \
         connection (a server down, a room in timeout), or raise `shutdown_timeout`"
    )]
    Unposted {
        /// The node's instance name.
        name: String,
        /// How many envelopes were not posted.
        unposted: u64,
        /// The bound that passed.
        timeout: std::time::Duration,
    },

    /// The chat transport failed.
    #[error("the chat transport failed: {0}")]
    Transport(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl std::fmt::Debug for Error {
    /// The `Display` text: what went wrong and what to do (see the type's docs).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl Error {
    /// Wraps any error of a transport.
    pub fn transport(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
        Error::Transport(e.into())
    }
}
