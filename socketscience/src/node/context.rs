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
    /// Shared handlers: this run may have happened elsewhere too.
    takeover: bool,
}

impl Context {
    pub(crate) fn new(node: Node, sender: Sender) -> Context {
        Context {
            node,
            sender,
            asked: None,
            takeover: false,
        }
    }

    /// This context, for a shared job's run that may have happened in
    /// another instance too.
    pub(crate) fn taking_over(&self) -> Context {
        Context {
            takeover: true,
            ..self.clone()
        }
    }

    /// Whether this run of a shared handler (`#[handler(shared)]`,
    /// [`Node::register_shared`](crate::Node::register_shared)) may have
    /// happened in another instance too: the job was taken over from an
    /// instance that was gone before it confirmed it (it may have run it
    /// just before), or this node had just joined the share (the others
    /// may not have counted it yet). Each such run is counted in
    /// [`Stats::shared_takeovers`](crate::Stats::shared_takeovers). Always
    /// `false` for other handlers.
    pub fn is_takeover(&self) -> bool {
        self.takeover
    }

    /// This context, for a question with id `id` from the sender.
    pub(crate) fn asking(&self, id: u64) -> Context {
        let asker = self.sender.instance.clone();
        Context {
            node: self.node.clone(),
            sender: self.sender.clone(),
            asked: asker.map(|asker| super::ask::Asked { asker, id }),
            takeover: self.takeover,
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

    /// The node's value of type `T`, as given to
    /// [`NodeBuilder::state`](crate::NodeBuilder::state); `None` if the
    /// node was given none of that type. Handlers reach their node's own
    /// data this way, without statics:
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> socketscience::Result<()> {
    /// use socketscience::{message, Context, LocalChat, Node};
    ///
    /// #[message("state_doc_hello")]
    /// pub struct Hello;
    ///
    /// struct Config { greeting: String }
    ///
    /// let chat = LocalChat::new();
    /// let node = Node::builder("Henders/EC2")
    ///     .transport(chat.join("smokey"))
    ///     .state(Config { greeting: "hi".into() })
    ///     .start()
    ///     .await?;
    /// node.register(|_: Hello, cx: Context| {
    ///     let config: &Config = cx.state().expect("set by NodeBuilder::state");
    ///     println!("{}", config.greeting);
    /// });
    /// node.send(Hello).await?;
    /// node.shutdown().await
    /// # }
    /// ```
    pub fn state<T: 'static>(&self) -> Option<&T> {
        self.node.state::<T>()
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
