//! The one error type of the crate.

use crate::wire::Codec;

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, each variant saying what to do about it.
#[derive(Debug, thiserror::Error)]
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

    /// The chat transport failed.
    #[error("the chat transport failed: {0}")]
    Transport(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    /// Wraps any error of a transport.
    pub fn transport(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
        Error::Transport(e.into())
    }
}
