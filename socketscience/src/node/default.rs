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

/// The default node; or, once it shut down and until another takes its
/// place, its name (so that `broadcast()` can say what happened).
static DEFAULT: RwLock<Slot> = RwLock::new(Slot::None);

enum Slot {
    None,
    Running(Node),
    Stopped(String),
}

impl Slot {
    fn node(&self) -> Option<&Node> {
        match self {
            Slot::Running(node) => Some(node),
            _ => None,
        }
    }
}

tokio::task_local! {
    static SCOPED: Node;
}

/// The node `broadcast()` sends through: the task's scoped node, else the
/// process's default.
pub(crate) fn current() -> Result<Node> {
    if let Ok(node) = SCOPED.try_with(Node::clone) {
        return Ok(node);
    }
    match &*crate::sync::read(&DEFAULT) {
        Slot::Running(node) => Ok(node.clone()),
        Slot::Stopped(name) => Err(Error::DefaultNodeStopped { name: name.clone() }),
        Slot::None => Err(Error::NoDefaultNode),
    }
}

/// Makes `node` the default if there is none.
pub(crate) fn offer(node: &Node) {
    let mut default = crate::sync::write(&DEFAULT);
    if default.node().is_none() {
        *default = Slot::Running(node.clone());
    }
}

/// Makes `node` the default.
pub(crate) fn replace(node: &Node) {
    *crate::sync::write(&DEFAULT) = Slot::Running(node.clone());
}

/// Clears the default if it is `node`.
pub(crate) fn withdraw(node: &Node) {
    let mut default = crate::sync::write(&DEFAULT);
    if default.node() == Some(node) {
        *default = Slot::Stopped(node.name().to_owned());
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
