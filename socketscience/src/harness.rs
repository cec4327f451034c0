//! Not public API: a node's send and receive paths driven synchronously,
//! without tasks, for benchmarks and fuzzing. It may change in any release.

use futures_util::FutureExt as _;

use crate::dispatch::Dispatcher;
use crate::envelope::Payload;
use crate::error::{Error, Result};
use crate::local::LocalChat;
use crate::node::{Node, NodeBuilder};
use crate::transport::{ChatMessage, TransportIo};

/// A node whose paths run on the caller's thread.
pub struct Harness {
    node: Node,
    io: TransportIo,
    dispatcher: Dispatcher,
}

impl Harness {
    /// Builds the node (its transport gives the account and the message
    /// length; it is not run).
    pub fn new(builder: NodeBuilder) -> Result<Harness> {
        let (node, _transport, io, dispatcher) = builder.build()?;
        Ok(Harness {
            node,
            io,
            dispatcher,
        })
    }

    /// The node.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Sends `payload` as `node.try_send` does and returns the text of the
    /// post the transport would make (its first chunk, if it needs several).
    /// The node's own dispatch of it is skipped.
    pub fn post(&mut self, payload: impl Payload) -> Result<String> {
        self.node.try_send(payload)?;
        self.dispatcher.discard_own();
        self.io
            .next_post()
            .now_or_never()
            .flatten()
            .ok_or_else(|| Error::NodeStopped {
                name: self.node.name().to_owned(),
            })
    }

    /// Runs the receive path for one chat message: trust, framing,
    /// signature, decoding, deduplication and the sync handlers. (An async
    /// handler that does not finish at its first poll is dropped.)
    pub fn receive(&mut self, message: ChatMessage) {
        let _ = self.dispatcher.chat(message).now_or_never();
    }
}

/// The benchmarks' fleet: one node per name, all of the account `smokey`
/// in `chat`, none the process's default.
pub async fn fleet(chat: &LocalChat, names: &[&str]) -> Result<Vec<Node>> {
    let mut nodes = Vec::new();
    for name in names {
        let node = Node::builder(*name)
            .transport(chat.join("smokey"))
            .default_node(false)
            .start()
            .await?;
        nodes.push(node);
    }
    Ok(nodes)
}
