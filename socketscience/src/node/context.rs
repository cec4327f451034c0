//! What a handler is given: the [`Context`] of the message it handles and
//! its [`Sender`].

use std::sync::Arc;

use super::Node;

/// What a handler knows about the message it handles.
#[derive(Clone, Debug)]
pub struct Context {
    node: Node,
    sender: Sender,
    /// Questions: the question the handler runs for, if it was asked.
    asked: Option<super::ask::Asked>,
}

impl Context {
    pub(crate) fn new(node: Node, sender: Sender) -> Context {
        Context {
            node,
            sender,
            asked: None,
        }
    }

    /// This context, for a question with id `id` from the sender.
    pub(crate) fn asking(&self, id: u64) -> Context {
        let asker = self.sender.instance.clone();
        Context {
            node: self.node.clone(),
            sender: self.sender.clone(),
            asked: asker.map(|asker| super::ask::Asked { asker, id }),
        }
    }

    pub(crate) fn asked(&self) -> Option<&super::ask::Asked> {
        self.asked.as_ref()
    }

    /// The node running the handler; send through it with `cx.node().send(..)`.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Who sent the message.
    pub fn sender(&self) -> &Sender {
        &self.sender
    }
}

/// The sender of a message: its chat account and, when the envelope names
/// it, its instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sender {
    account: Arc<str>,
    instance: Option<Arc<str>>,
    own: bool,
}

impl Sender {
    pub(crate) fn new(account: Arc<str>, instance: Option<Arc<str>>) -> Sender {
        Sender {
            account,
            instance,
            own: false,
        }
    }

    pub(crate) fn own(account: Arc<str>, instance: Arc<str>) -> Sender {
        Sender {
            account,
            instance: Some(instance),
            own: true,
        }
    }

    /// The chat account that posted the envelope.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The sending instance's name, if the envelope carries one (Python
    /// SocketScience's do not).
    pub fn instance(&self) -> Option<&str> {
        self.instance.as_deref()
    }

    /// Whether this node itself sent the message.
    pub fn is_self(&self) -> bool {
        self.own
    }

    /// Whether this is another node's `account` and `instance` (the same
    /// shared names, as usual, are recognised without comparing text).
    pub(crate) fn is(&self, account: &str, instance: Option<&str>) -> bool {
        let same = |a: &str, b: &str| std::ptr::eq(a, b) || a == b;
        !self.own
            && same(&self.account, account)
            && match (self.instance.as_deref(), instance) {
                (Some(a), Some(b)) => same(a, b),
                (None, None) => true,
                _ => false,
            }
    }
}
