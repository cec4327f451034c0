//! Questions with answers: a message kind that names its reply kind
//! ([`Question`], `#[message("kind", reply = Reply)]`), a handler that
//! returns the reply, and [`Node::ask`] gathering the typed replies.
//!
//! On the wire a question is an ordinary envelope of its kind, preceded in
//! that envelope by the reserved entry `_ask` (the question's id), and a
//! reply is an envelope of the reply kind preceded by `_re`
//! (`[asker, id]`). Every node runs its handlers for the question (the
//! asker too); a handler's reply is posted addressed to the asker; the
//! other nodes see it in the room and ignore it. See `docs/wire-format.md`,
//! "Questions and replies".

use std::collections::HashMap;
use std::fmt::Display;
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::trace;

use super::{Context, Node, NodeShared, Sender};
use crate::core::envelope::{BodyWriter, Payload};
use crate::core::outbox::Refused;
use crate::core::Core;
use crate::error::{Error, Result};
use crate::message::Message;
use crate::wire::{RawValueRef, KEY_ASK, KEY_REPLY_TO};

/// A message kind that expects replies of kind [`Reply`](Question::Reply):
/// implemented by `#[message("kind", reply = Reply)]`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` declares no reply kind",
    label = "not a question",
    note = "declare the reply kind with `#[message(\"kind\", reply = Reply)]` above `{Self}`, \
            or make the handler return `()` or `Result<(), E>`"
)]
pub trait Question: Message {
    /// The kind of the replies.
    type Reply: Message;
}

/// What a handler of a [`Question`] returns: the reply, `Option` of it (no
/// answer), or `Result` of either (an error is logged and counted like any
/// handler's).
#[diagnostic::on_unimplemented(
    message = "this handler answers with `{Self}`, but the question's reply kind is `{R}`",
    label = "return `{R}`, `Option<{R}>` or `Result<{R}, E>` here",
    note = "the reply kind is the one named in the question's `#[message(\"kind\", reply = ..)]`"
)]
pub trait IntoReply<R> {
    /// The reply, none, or the failure as text.
    fn into_reply(self) -> std::result::Result<Option<R>, String>;
}

impl<R> IntoReply<R> for R {
    fn into_reply(self) -> std::result::Result<Option<R>, String> {
        Ok(Some(self))
    }
}

impl<R> IntoReply<R> for Option<R> {
    fn into_reply(self) -> std::result::Result<Option<R>, String> {
        Ok(self)
    }
}

impl<R, E: Display> IntoReply<R> for std::result::Result<R, E> {
    fn into_reply(self) -> std::result::Result<Option<R>, String> {
        self.map(Some).map_err(|e| e.to_string())
    }
}

impl<R, E: Display> IntoReply<R> for std::result::Result<Option<R>, E> {
    fn into_reply(self) -> std::result::Result<Option<R>, String> {
        self.map_err(|e| e.to_string())
    }
}

/// One reply to a question: who answered, and the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer<R> {
    /// The answering node (its instance and chat account).
    pub sender: Sender,
    /// The reply.
    pub reply: R,
}

/// The question a handler is running for, in its [`Context`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Asked {
    pub(crate) asker: Arc<str>,
    pub(crate) id: u64,
}

type Deliver = Box<dyn Fn(&str, RawValueRef<'_>, &Sender) + Send + Sync>;

/// A node's questions in flight, by id.
#[derive(Default)]
pub(crate) struct Waiters {
    by_id: Mutex<HashMap<u64, Deliver>>,
}

impl Waiters {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Deliver>> {
        crate::sync::lock(&self.by_id)
    }

    /// A reply of `kind` to question `id` of this node arrived.
    pub(crate) fn deliver(&self, id: u64, kind: &str, raw: RawValueRef<'_>, sender: &Sender) {
        if let Some(deliver) = self.lock().get(&id) {
            deliver(kind, raw, sender);
        }
    }
}

/// What an `_ask` or `_re` entry says of the message after it.
#[derive(Debug)]
pub(crate) enum Tag {
    /// The next message is a question with this id.
    Ask(u64),
    /// The next message is a reply to question `id` of this node.
    Mine(u64),
    /// The next message is a reply to another node: ignored.
    Other,
}

/// Reads an `_ask` or `_re` entry (`kind`); `None` for other reserved
/// kinds and unreadable values.
pub(crate) fn read_tag(kind: &str, raw: RawValueRef<'_>, own_name: &str) -> Option<Tag> {
    match kind {
        KEY_ASK => raw.decode::<u64>().ok().map(Tag::Ask),
        KEY_REPLY_TO => match raw.decode::<(String, u64)>() {
            Ok((asker, id)) if asker == own_name => Some(Tag::Mine(id)),
            Ok(_) => Some(Tag::Other),
            Err(_) => Some(Tag::Other),
        },
        _ => None,
    }
}

/// Posts a reply to the question `cx` runs for (what a question handler's
/// expansion calls, through [`Answering`]). Without a question (the
/// message was broadcast, not asked) there is nobody to answer: nothing is
/// posted.
fn reply<Q: Question, O: IntoReply<Q::Reply>>(
    out: O,
    cx: &Context,
) -> std::result::Result<(), String> {
    let Some(reply) = out.into_reply()? else {
        return Ok(());
    };
    let Some(asked) = cx.asked() else {
        trace!(node = %cx.node().name(), kind = Q::KIND, "a reply to a message nobody asked: not posted");
        return Ok(());
    };
    let node = cx.node();
    let writer = encode(node.core(), |w| {
        w.message(KEY_REPLY_TO, &(&*asked.asker, asked.id))?;
        reply.write_messages(w)
    })
    .map_err(|e| e.to_string())?;
    let core = node.core();
    match core.outbox.try_push(writer, &core.counters.sent) {
        Ok(()) => Ok(()),
        Err(Refused::Full(..)) => Err(format!(
            "the reply to {} could not be queued: the outgoing queue is full",
            asked.asker
        )),
        Err(Refused::Closed) => Err("the node is shutting down: the reply was not sent".into()),
    }
}

/// A question type answered by a handler returning `O`: what `#[handler]`
/// calls for a handler that returns something. Implemented for every
/// [`Question`] whose reply `O` gives ([`IntoReply`]); not public API.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "a handler of `{Self}` returns `{O}`, but `{Self}` is not a question answered with `{O}`",
    label = "a handler returns `()` or `Result<(), E>`, or answers a question",
    note = "a handler returns `()` or `Result<(), E>` where `E: Display`; a handler of a question \
            (`#[message(\"kind\", reply = Reply)]`) returns `Reply`, `Option<Reply>` or `Result` of either"
)]
pub trait Answering<O> {
    #[doc(hidden)]
    fn answer(out: O, cx: &Context) -> std::result::Result<(), String>;
}

impl<Q: Question, O: IntoReply<Q::Reply>> Answering<O> for Q {
    fn answer(out: O, cx: &Context) -> std::result::Result<(), String> {
        reply::<Q, O>(out, cx)
    }
}

/// Calls [`Answering::answer`] (the expansion names the return type first,
/// so that errors point at it).
#[doc(hidden)]
pub fn answer_with<O, Q: Answering<O>>(out: O, cx: &Context) -> std::result::Result<(), String> {
    Q::answer(out, cx)
}

/// A new envelope written by `write`, checked as every envelope is
/// ([`Bus::check`]: its size, and with Python peers what they can read).
fn encode(core: &Core, write: impl FnOnce(&mut BodyWriter) -> Result<()>) -> Result<BodyWriter> {
    let mut writer = BodyWriter::new(core.codec);
    write(&mut writer)?;
    core.check(&writer)?;
    Ok(writer)
}

impl Node {
    /// Asks every node in the room (this one included) `question`; say for
    /// how long with [`within`](Ask::within), then `.await` the answers:
    ///
    /// ```
    /// # use socketscience::{handler, message, Context, LocalChat, Node};
    /// # use std::time::Duration;
    /// #[message("where_are_you", reply = Location)]
    /// pub struct WhereAreYou;
    ///
    /// #[message("location")]
    /// pub struct Location { pub name: String }
    ///
    /// #[handler]
    /// fn answer(_: WhereAreYou, cx: Context) -> Location {
    ///     Location { name: cx.node().name().into() }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> socketscience::Result<()> {
    /// let chat = LocalChat::new();
    /// let node = Node::builder("Henders/EC2").transport(chat.join("smokey")).start().await?;
    /// let answers = node.ask(WhereAreYou).within(Duration::from_millis(200)).await?;
    /// assert_eq!(answers[0].reply.name, "Henders/EC2");
    /// # node.shutdown().await }
    /// ```
    ///
    /// The answers are those that arrive before the deadline, in the order
    /// they arrive; nobody answering is an empty list, not an error. It
    /// ends sooner, as soon as every instance it waits for answered: this
    /// node if it handles the question's kind, and the live peers
    /// ([`peers`](Node::peers)) whose heartbeats say they handle it
    /// ([`Peer::kinds`](crate::peers::Peer::kinds)). It waits the whole deadline
    /// when it cannot know whom to wait for: a live peer never said its
    /// kinds (an older version, a Python instance), or this node has run
    /// for less than a peer timeout (it may not have heard every live
    /// instance yet). A handler that answers `None` is waited for until
    /// the deadline. The instances waited for that did not answer are
    /// named by [`Answers::silent`] (the [`stream`](Within::stream) form). A
    /// deadline shorter than the chat's throttle (Stack Exchange allows an
    /// account a post every few seconds) leaves no time for the answers to
    /// be posted: give the chat a few of its intervals. Questions and
    /// replies share posts with everything else the nodes send.
    pub fn ask<Q: Question + Sync>(&self, question: Q) -> Ask<'_, Q> {
        Ask {
            node: self,
            question,
        }
    }
}

impl Node {
    /// Registers, at run time, a handler that answers question `Q`: a
    /// closure taking the question and the [`Context`] and returning the
    /// reply, `Option` of it or `Result` of either (as a `#[handler]` of a
    /// question does). The reply is posted to the asker.
    ///
    /// ```
    /// # use socketscience::{message, Context, LocalChat, Node};
    /// # use std::time::Duration;
    /// #[message("version_please", reply = Version)]
    /// pub struct VersionPlease;
    ///
    /// #[message("version")]
    /// pub struct Version(pub String);
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> socketscience::Result<()> {
    /// let chat = LocalChat::new();
    /// let node = Node::builder("Henders/EC2").transport(chat.join("smokey")).start().await?;
    /// node.answer(|_: VersionPlease, _cx: Context| Version("1.2.3".into()));
    /// let answers = node.ask(VersionPlease).within(Duration::from_millis(200)).await?;
    /// assert_eq!(answers[0].reply.0, "1.2.3");
    /// # node.shutdown().await }
    /// ```
    pub fn answer<Q, O, F>(&self, answer: F)
    where
        Q: Question,
        O: IntoReply<Q::Reply> + 'static,
        F: Fn(Q, Context) -> O + Send + Sync + 'static,
    {
        let name = std::any::type_name::<F>();
        let call = Arc::new(move |raw: RawValueRef<'_>, cx: &Context| {
            let question: Q = raw.decode()?;
            let out = answer(question, cx.clone());
            Ok(super::handler::Call::Ready(reply::<Q, O>(out, cx)))
        });
        self.register_erased(Q::KIND, name, call, super::handler::HandlerMode::Every);
    }
}

/// A question about to be asked, from [`Node::ask`].
#[must_use = "a question is asked by `.within(deadline).await`"]
#[derive(Debug)]
pub struct Ask<'n, Q> {
    node: &'n Node,
    question: Q,
}

impl<'n, Q: Question + Sync> Ask<'n, Q> {
    /// How long to wait for the answers.
    pub fn within(self, deadline: Duration) -> Within<'n, Q> {
        Within {
            ask: self,
            deadline,
            first: None,
        }
    }
}

/// A question with its deadline: `.await` it for every answer that arrives
/// in time, or stop sooner with [`first`](Within::first), or take the
/// answers one by one with [`stream`](Within::stream).
#[must_use = "a question is asked when awaited"]
#[derive(Debug)]
pub struct Within<'n, Q> {
    ask: Ask<'n, Q>,
    deadline: Duration,
    first: Option<usize>,
}

impl<'n, Q: Question + Sync> Within<'n, Q> {
    /// Stops at the first `n` answers (or the deadline, if sooner).
    pub fn first(mut self, n: usize) -> Within<'n, Q> {
        self.first = Some(n);
        self
    }

    /// Posts the question and gives the answers as they arrive, until the
    /// deadline (or the first `n`).
    pub async fn stream(self) -> Result<Answers<Q::Reply>> {
        let node = self.ask.node;
        let shared = &node.shared;
        let id = fastrand::u64(..);
        let (tx, rx) = mpsc::unbounded_channel();
        shared.asks.insert(
            id,
            Box::new(move |kind: &str, raw: RawValueRef<'_>, sender: &Sender| {
                if kind != <Q::Reply as Message>::KIND {
                    return;
                }
                match raw.decode::<Q::Reply>() {
                    Ok(reply) => {
                        let _ = tx.send(Answer {
                            sender: sender.clone(),
                            reply,
                        });
                    }
                    Err(e) => {
                        tracing::warn!(kind, error = %e, "a reply does not fit its message type")
                    }
                }
            }),
        );
        let guard = Registration {
            shared: shared.clone(),
            id,
        };
        let question = &self.ask.question;
        let writer = encode(&shared.core, |w| {
            w.message(KEY_ASK, &id)?;
            question.write_messages(w)
        })?;
        if shared
            .core
            .outbox
            .push(writer, &shared.core.counters.sent)
            .await
            .is_err()
        {
            return Err(Error::NodeStopped {
                name: node.name().to_owned(),
            });
        }
        let (waiting, early) = waited_for(node, <Q as Message>::KIND);
        Ok(Answers {
            rx,
            deadline: Box::pin(tokio::time::sleep(self.deadline)),
            left: self.first,
            waiting,
            early,
            registration: guard,
            _reply: PhantomData,
        })
    }
}

impl<'n, Q: Question + Sync> IntoFuture for Within<'n, Q> {
    type Output = Result<Vec<Answer<Q::Reply>>>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'n>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let mut answers = self.stream().await?;
            let mut all = Vec::new();
            while let Some(answer) = answers.next().await {
                all.push(answer);
            }
            Ok(all)
        })
    }
}

/// Whom a question of `kind` waits for: this node if it handles the kind,
/// and the live peers that said they do (`_pk`); and whether it may end
/// as soon as they all answered: only when every live peer said which
/// kinds it handles (older versions and Python instances do not) and the
/// node has run for a peer timeout (before, it may not have heard every
/// live instance yet).
fn waited_for(node: &Node, kind: &str) -> (Vec<String>, bool) {
    let presence = &node.core().presence;
    let mut waiting = Vec::new();
    if node.shared.read_registry().get(kind).is_some() {
        waiting.push(node.name().to_owned());
    }
    let mut all_known = true;
    for peer in node.peers() {
        all_known &= peer.kinds_known();
        if peer.handles(kind) {
            waiting.push(peer.instance().to_owned());
        }
    }
    let settled = !presence.options.heartbeat.is_zero()
        && presence.started().elapsed() >= presence.peer_timeout();
    (waiting, all_known && settled)
}

/// Removes a question's waiter when its answers are dropped.
struct Registration {
    shared: Arc<NodeShared>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.shared.asks.lock().remove(&self.id);
    }
}

/// The answers to a question as they arrive, from [`Within::stream`]:
/// [`next`](Answers::next) gives each, then `None` at the deadline (or
/// after the first `n`). Also a [`futures_util::Stream`]-compatible
/// `poll_next`. Dropping it stops listening.
pub struct Answers<R> {
    rx: mpsc::UnboundedReceiver<Answer<R>>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    left: Option<usize>,
    /// The instances waited for that have not answered yet.
    waiting: Vec<String>,
    /// Whether it ends once `waiting` is empty.
    early: bool,
    registration: Registration,
    _reply: PhantomData<R>,
}

impl<R> std::fmt::Debug for Answers<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answers")
            .field("left", &self.left)
            .finish_non_exhaustive()
    }
}

impl<R> Answers<R> {
    /// The next answer; `None` once the deadline passed (or the first `n`
    /// arrived).
    pub async fn next(&mut self) -> Option<Answer<R>> {
        std::future::poll_fn(|cx| self.poll_next_answer(cx)).await
    }

    /// Polls for the next answer (what [`next`](Answers::next) awaits).
    pub fn poll_next_answer(&mut self, cx: &mut TaskContext<'_>) -> Poll<Option<Answer<R>>> {
        if self.left == Some(0) {
            return Poll::Ready(None);
        }
        if let Poll::Ready(Some(answer)) = self.rx.poll_recv(cx) {
            if let Some(left) = &mut self.left {
                *left -= 1;
            }
            if let Some(instance) = answer.sender.instance() {
                self.waiting.retain(|w| w != instance);
            }
            return Poll::Ready(Some(answer));
        }
        if self.early && self.waiting.is_empty() {
            // Everyone it waited for answered.
            self.left = Some(0);
            return Poll::Ready(None);
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.left = Some(0);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<R> Answers<R> {
    /// The live instances that handle the question's kind (as they said in
    /// their heartbeats: [`Peer::kinds`](crate::peers::Peer::kinds)), this node
    /// included, and have not answered: once the answers ended at the
    /// deadline, those that stayed silent. Instances that never said which
    /// kinds they handle (older versions, Python) are not named; nor are
    /// those that stopped being live (not heard within the peer timeout).
    ///
    /// ```
    /// # use socketscience::{message, Context, LocalChat, Node};
    /// # use std::time::Duration;
    /// #[message("silent_doc_version", reply = Version)]
    /// pub struct VersionPlease;
    ///
    /// #[message("silent_doc_reply")]
    /// pub struct Version(pub String);
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> socketscience::Result<()> {
    /// let chat = LocalChat::new();
    /// let node = Node::builder("Henders/EC2").transport(chat.join("smokey")).start().await?;
    /// // Answers `None` (no answer): waited for, and silent.
    /// node.answer(|_: VersionPlease, _cx: Context| None::<Version>);
    /// let mut answers = node.ask(VersionPlease).within(Duration::from_millis(200)).stream().await?;
    /// while let Some(a) = answers.next().await { println!("{}", a.reply.0); }
    /// assert_eq!(answers.silent(), ["Henders/EC2"]);
    /// # node.shutdown().await }
    /// ```
    pub fn silent(&self) -> Vec<String> {
        let shared = &self.registration.shared;
        let live = shared.core.presence.peers();
        self.waiting
            .iter()
            .filter(|w| **w == *shared.core.name || live.iter().any(|p| p.instance() == w.as_str()))
            .cloned()
            .collect()
    }
}

impl<R> futures_util::Stream for Answers<R> {
    type Item = Answer<R>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Answer<R>>> {
        // Unpin: every field is.
        Pin::into_inner(self).poll_next_answer(cx)
    }
}

impl<R> Unpin for Answers<R> {}

impl Waiters {
    fn insert(&self, id: u64, deliver: Deliver) {
        self.lock().insert(id, deliver);
    }
}
