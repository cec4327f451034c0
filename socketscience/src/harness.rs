//! For benchmarks and fuzzing (feature `test-util`, off by default): a
//! node's send and receive paths driven synchronously, without tasks. Not
//! for production; it may change in any release.

use crate::core::envelope::Payload;
use crate::error::{Error, Result};
use crate::node::{Handlers, Node, NodeBuilder, Parts};
use crate::receive::Receiver;
use crate::transport::local::LocalChat;
use crate::transport::{ChatMessage, TransportIo};

/// A node whose paths run on the caller's thread.
pub struct Harness {
    node: Node,
    io: TransportIo,
    receiver: Receiver<Handlers>,
}

impl Harness {
    /// Builds the node (its transport gives the account and the message
    /// length; it is not run).
    pub fn new(builder: NodeBuilder) -> Result<Harness> {
        let Parts {
            node, io, receiver, ..
        } = builder.build()?;
        Ok(Harness { node, io, receiver })
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
        self.node.core().outbox.discard_own();
        once(self.io.next_post())
            .flatten()
            .ok_or_else(|| Error::NodeStopped {
                name: self.node.name().to_owned(),
            })
    }

    /// Runs the receive path for one chat message: trust, framing,
    /// signature, decoding, deduplication and the sync handlers. (An async
    /// handler that does not finish at its first poll is dropped.)
    pub fn receive(&mut self, message: ChatMessage) {
        once(self.receiver.receive(message));
    }
}

/// Polls `future` once, where it stands (not moved into a combinator, as
/// `now_or_never` would: the receive path's future is large).
fn once<F: std::future::Future>(future: F) -> Option<F::Output> {
    let future = std::pin::pin!(future);
    match future.poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
        std::task::Poll::Ready(output) => Some(output),
        std::task::Poll::Pending => None,
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
