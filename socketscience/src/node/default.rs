//! The process's default node, behind `broadcast()`.
//!
//! One instance per process is how bots are deployed, so the first node
//! started becomes the default. [`Node::scope`](crate::Node::scope)
//! overrides it for one task, which is how tests running in parallel in one
//! process keep their broadcasts apart.

use std::future::Future;
use std::sync::RwLock;

use crate::error::{Error, Result};
use crate::node::Node;

static DEFAULT: RwLock<Option<Node>> = RwLock::new(None);

tokio::task_local! {
    static SCOPED: Node;
}

/// The node `broadcast()` sends through: the task's scoped node, else the
/// process's default.
pub(crate) fn current() -> Result<Node> {
    if let Ok(node) = SCOPED.try_with(Node::clone) {
        return Ok(node);
    }
    crate::sync::read(&DEFAULT)
        .clone()
        .ok_or(Error::NoDefaultNode)
}

/// Makes `node` the default if there is none.
pub(crate) fn offer(node: &Node) {
    let mut default = crate::sync::write(&DEFAULT);
    if default.is_none() {
        *default = Some(node.clone());
    }
}

/// Makes `node` the default.
pub(crate) fn replace(node: &Node) {
    *crate::sync::write(&DEFAULT) = Some(node.clone());
}

/// Clears the default if it is `node`.
pub(crate) fn withdraw(node: &Node) {
    let mut default = crate::sync::write(&DEFAULT);
    if default.as_ref() == Some(node) {
        *default = None;
    }
}

pub(crate) async fn scope<F: Future>(node: Node, future: F) -> F::Output {
    SCOPED.scope(node, future).await
}

/// Sends `message` through the default node: what `#[message]`'s
/// `broadcast()` calls.
pub(crate) fn broadcast<M: crate::message::Message>(message: M) -> Result<()> {
    current()?.try_send(message)
}
