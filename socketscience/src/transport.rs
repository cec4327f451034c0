//! The [`Transport`] trait: how a node reaches a chat room.
//!
//! A transport does three things only: post text into the room, hand the
//! node every chat message it sees with its author, and say how long a chat
//! message may be. Framing, chunking, trust, decoding, deduplication,
//! dispatch and counting are the node's, written once for every transport.

#[cfg(any(feature = "irc", feature = "stackexchange", feature = "matrix"))]
mod backoff;
#[cfg(feature = "irc")]
pub(crate) mod irc;
pub(crate) mod local;
#[cfg(feature = "matrix")]
#[doc(hidden)] // documented as `socketscience::matrix`
pub mod matrix;
#[cfg(feature = "stackexchange")]
#[doc(hidden)] // documented as `socketscience::stackexchange`
pub mod stackexchange;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use tokio::sync::mpsc;

use crate::envelope::{
    assemble_into, assemble_msgpack_batch_into, grown_size, mergeable, overhead, Encoded, Signer,
};
use crate::error::{Error, Result};
use crate::node::NodeShared;
use crate::stats::Counters;
use crate::wire::{self, Codec, Lines};

/// A boxed, sendable future, as [`Transport::run`] returns.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// One message seen in the chat room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// The chat account that posted it, as the chat reports it (user id,
    /// nick, ...). Trust is decided on this.
    pub account: Arc<str>,
    /// The message's text, as posted (the node cleans it).
    pub text: Arc<str>,
}

impl ChatMessage {
    /// A chat message from `account` saying `text`.
    pub fn new(account: impl Into<Arc<str>>, text: impl Into<Arc<str>>) -> ChatMessage {
        ChatMessage {
            account: account.into(),
            text: text.into(),
        }
    }
}

/// A chat room connection a [`Node`](crate::Node) can use.
///
/// Implement it to plug in another chat. The node calls [`run`](Self::run)
/// once, on its own task; `run` posts each text that
/// [`TransportIo::next_post`] yields, hands every chat message it receives
/// to [`TransportIo::receive`], and returns once `next_post` gives `None`
/// (the node is shutting down and everything queued has been handed over).
///
/// A complete transport for a chat that is just a broadcast channel:
///
/// ```
/// use socketscience::{ChatMessage, Transport, TransportIo, transport::BoxFuture};
/// use tokio::sync::broadcast;
///
/// struct Channel { account: String, tx: broadcast::Sender<ChatMessage> }
///
/// impl Transport for Channel {
///     fn account(&self) -> &str { &self.account }
///     fn max_message_len(&self) -> usize { 4096 }
///     fn run(self: Box<Self>, mut io: TransportIo) -> BoxFuture<socketscience::Result<()>> {
///         Box::pin(async move {
///             let mut rx = self.tx.subscribe();
///             loop {
///                 tokio::select! {
///                     post = io.next_post() => match post {
///                         Some(text) => { let _ = self.tx.send(ChatMessage::new(self.account.as_str(), text)); }
///                         None => return Ok(()),
///                     },
///                     Ok(message) = rx.recv() => io.receive(message).await?,
///                 }
///             }
///         })
///     }
/// }
/// ```
pub trait Transport: Send + 'static {
    /// The chat account this transport posts as. A node trusts it by default.
    fn account(&self) -> &str;

    /// The longest text, in bytes, one chat message may carry. Longer frames
    /// are split into chunks by the node.
    fn max_message_len(&self) -> usize;

    /// Whether chat messages may hold a newline. Default: [`Lines::Multi`].
    /// Single-line chats (IRC) get frames without the leading `".\n"`.
    fn lines(&self) -> Lines {
        Lines::Multi
    }

    /// Checks the transport's settings before the node starts anything:
    /// [`NodeBuilder::start`](crate::NodeBuilder::start) fails with the error
    /// returned. Default: nothing to check. Return
    /// [`Error::InvalidOption`] naming the setting and what to change, so a
    /// setting that cannot work fails at start, not at the first post or at
    /// shutdown.
    fn check(&self) -> Result<()> {
        Ok(())
    }

    /// Runs the connection until [`TransportIo::next_post`] returns `None`.
    fn run(self: Box<Self>, io: TransportIo) -> BoxFuture<Result<()>>;
}

/// The node's side of a transport: what to post, where to deliver.
pub struct TransportIo {
    pub(crate) inbound: mpsc::Sender<ChatMessage>,
    pub(crate) shared: Arc<NodeShared>,
    pub(crate) max_len: usize,
    pub(crate) lines: Lines,
    pub(crate) rng: fastrand::Rng,
    pub(crate) pending: VecDeque<String>,
    /// The body being framed, kept for the next post.
    pub(crate) body: Vec<u8>,
    /// The envelopes of the post being made (kept for its allocation).
    pub(crate) group: Vec<Encoded>,
    /// Envelopes taken from the outbox that did not fit the last post:
    /// they go first in the next.
    pub(crate) carry: VecDeque<Encoded>,
    /// The compressed body being tried (kept for its allocation).
    pub(crate) packed: Vec<u8>,
    /// The envelopes posted, kept to post again when asked.
    pub(crate) history: crate::repair::History,
}

/// What [`TransportIo::gather`] found.
enum Gathered {
    /// Envelopes to post.
    Envelopes,
    /// Presence or repair traffic to post.
    Control,
    /// The node shut down and nothing waits.
    Closed,
}

/// Most envelopes one post carries.
const MAX_GROUP: usize = 1_024;
/// Most kinds one merged MessagePack map carries (receivers refuse more
/// than their `max_kinds`, 64 by default).
const MAX_MERGED_KINDS: usize = 32;
/// How many times a post's room the envelopes gathered for it may take
/// before compression: a group of small, similar envelopes deflates to a
/// fifth to a tenth of its size (BENCHMARKS.md, "Messages per post").
const GATHER_FACTOR: usize = 12;

impl TransportIo {
    /// Waits for the next text to post, framed (or one chunk of a frame)
    /// and no longer than [`Transport::max_message_len`]. `None` once the
    /// node shuts down and everything it queued has been handed over.
    ///
    /// When several envelopes are waiting (the transport was throttled, or
    /// the program sends faster than the chat takes posts), one post
    /// carries as many as fit, in order: with the JSON codec as a batch,
    /// with MessagePack as one merged map while no kind repeats; except on
    /// a node with [`NodeBuilder::python_peers`](crate::NodeBuilder::python_peers),
    /// which posts each envelope alone. Call it only when the chat
    /// will take a post: envelopes wait in the node meanwhile.
    ///
    /// Cancel-safe: dropping the future before it completes loses nothing,
    /// so it can sit in a `tokio::select!` beside the chat's reader.
    pub async fn next_post(&mut self) -> Option<String> {
        let post = match self.pending.pop_front() {
            Some(chunk) => chunk,
            None => loop {
                let mut group = std::mem::take(&mut self.group);
                let gathered = std::future::poll_fn(|cx| self.gather(cx, &mut group)).await;
                match gathered {
                    Gathered::Envelopes => {}
                    Gathered::Control => {
                        self.group = group;
                        self.control();
                        match self.pending.pop_front() {
                            Some(post) => break post,
                            None => continue,
                        }
                    }
                    Gathered::Closed => {
                        self.group = group;
                        return None;
                    }
                }
                let body = self.assemble(&mut group);
                let shared = &self.shared;
                if let Some(last) = group.last() {
                    let presence = &shared.presence;
                    presence
                        .posted_end
                        .store(last.seq + 1, std::sync::atomic::Ordering::Relaxed);
                    // A copy kept for repair.
                    self.history.keep(&group, presence.coarse_ms());
                }
                let post = self.frame(&body);
                if body.capacity() <= 64 << 10 {
                    self.body = body;
                }
                self.group = group;
                break post;
            },
        };
        Counters::add_owned(&self.shared.counters.posts, 1);
        Some(post)
    }

    /// The body bytes most one post carries (a frame is 8 characters
    /// around the base64 of its body).
    fn room(&self) -> usize {
        self.max_len.saturating_sub(8) / 4 * 3
    }

    /// The body of a post of `group`'s envelopes: a single envelope as it
    /// is; several as a batch (or, in MessagePack where no kind repeats, a
    /// merged map), deflated if that is too long for one post. If even
    /// deflated it is too long, the last envelopes go back to wait for the
    /// next post (in `carry`) until it fits, or one envelope is left. (With
    /// `python_peers`, groups are of one envelope: posted as it is.)
    #[inline]
    fn assemble(&mut self, group: &mut Vec<Encoded>) -> Vec<u8> {
        let shared = &self.shared;
        let (codec, origin) = (shared.codec, shared.origin());
        let signer = Signer::now(&shared.config.keys);
        let room = self.room();
        let mut body = std::mem::take(&mut self.body);
        loop {
            if codec == Codec::MessagePack && group.len() > 1 && !mergeable(group, MAX_MERGED_KINDS)
            {
                assemble_msgpack_batch_into(&mut body, origin, group, signer);
            } else {
                assemble_into(&mut body, codec, origin, group, signer);
            }
            if group.len() == 1 || body.len() <= room {
                return body;
            }
            wire::deflate_body(&body, &mut self.packed);
            if self.packed.len() <= room {
                std::mem::swap(&mut body, &mut self.packed);
                return body;
            }
            // Fewer envelopes, by the ratio seen (with a margin).
            let n = group.len();
            let keep = (n * room * 15 / 16 / self.packed.len()).clamp(1, n - 1);
            for e in group.drain(keep..).rev() {
                self.carry.push_front(e);
            }
        }
    }

    /// Frames the presence and repair traffic waiting into posts (queued
    /// in `pending`): one post of heartbeat, requests and ranges that
    /// cannot be repaired, and the envelopes asked for, posted again (at
    /// most once per repair window each), in as few posts as fit.
    #[cold]
    #[inline(never)]
    fn control(&mut self) {
        let shared = self.shared.clone();
        let presence = &shared.presence;
        let queue = presence.take();
        presence.tick();
        let posted = presence
            .posted_end
            .load(std::sync::atomic::Ordering::Relaxed);
        let (picked, gone) = self.history.select(
            &queue.serve,
            presence.coarse_ms(),
            presence.options.repair_window.as_millis() as u64,
        );
        let mut unrepairable = queue.unrepairable;
        for (first, end) in gone {
            if unrepairable.len() < crate::presence::MAX_QUEUED {
                unrepairable.push((shared.name.to_string(), shared.session, first, end));
            }
        }
        let codec = shared.codec;
        let origin = shared.origin();
        let mut body = Vec::new();
        let counters = &shared.counters;
        let election = shared.election.as_ref().map(|e| e.entry(codec));
        if queue.heartbeat || !queue.requests.is_empty() || !unrepairable.is_empty() {
            crate::repair::write_control_body(
                &mut body,
                codec,
                origin,
                posted,
                &queue.requests,
                &unrepairable,
                &[],
                election.as_deref(),
                Signer::now(&shared.config.keys),
            );
            self.frame_all(&body);
            if queue.requests.is_empty() && unrepairable.is_empty() {
                Counters::add_owned(&counters.heartbeats, 1);
            } else {
                Counters::add_owned(&counters.repair_posts, 1);
            }
        }
        // The envelopes asked for, as many per post as fit.
        let room = self.max_len.saturating_sub(8) / 4 * 3;
        let limit = room.saturating_sub(overhead(origin) + 32);
        let mut at = 0;
        while at < picked.len() {
            let mut group = Vec::new();
            let mut size = 0;
            while let Some(e) = picked.get(at) {
                let grown = size + e.bytes.len() + 24;
                if !group.is_empty() && (grown > limit || group.len() >= crate::repair::MAX_REPAIRS)
                {
                    break;
                }
                size = grown;
                group.push(e.clone());
                at += 1;
            }
            crate::repair::write_control_body(
                &mut body,
                codec,
                origin,
                posted,
                &[],
                &[],
                &group,
                election.as_deref(),
                Signer::now(&shared.config.keys),
            );
            let n = group.len() as u64;
            self.frame_all(&body);
            Counters::add_owned(&counters.repair_posts, 1);
            Counters::add_owned(&counters.resent, n);
        }
    }

    /// Frames a body into `pending`: one frame, or its chunks.
    fn frame_all(&mut self, body: &[u8]) {
        let mut frame = String::with_capacity(wire::frame_len(self.lines, body.len()));
        wire::write_frame_of(&mut frame, self.lines, self.rng.u16(0..10_000), body);
        if frame.len() <= self.max_len {
            self.pending.push_back(frame);
            return;
        }
        let start = self.lines.frame_start().len() + 4;
        let b64 = &frame[start..frame.len() - 1];
        let chunks = wire::split_into_chunks(self.lines, self.rng.u32(..), b64, self.max_len)
            .unwrap_or_default();
        self.pending.extend(chunks);
    }

    /// Takes the next envelope waiting into `group` (after giving back the
    /// last post's), with those behind it that fit one post with it; or
    /// says that presence or repair traffic waits.
    #[inline]
    fn gather(
        &mut self,
        cx: &mut std::task::Context<'_>,
        group: &mut Vec<Encoded>,
    ) -> Poll<Gathered> {
        if self.shared.presence.is_pending() {
            return Poll::Ready(Gathered::Control);
        }
        match self.gather_envelopes(cx, group) {
            Poll::Ready(true) => Poll::Ready(Gathered::Envelopes),
            Poll::Ready(false) => Poll::Ready(Gathered::Closed),
            // Looked at again after the outbox registered the waker (see
            // `Outbox::wake_transport`).
            Poll::Pending if self.shared.presence.is_pending() => Poll::Ready(Gathered::Control),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Takes the next envelope waiting into `group` (after giving back the
    /// last post's), with those behind it that fit one post with it.
    /// `Ready(false)` once the node has shut down and nothing waits.
    fn gather_envelopes(
        &mut self,
        cx: &mut std::task::Context<'_>,
        group: &mut Vec<Encoded>,
    ) -> Poll<bool> {
        let room = self.room();
        let shared = &self.shared;
        // Enough to fill a post once deflated (see `assemble`, which checks
        // what fits exactly), within what receivers inflate.
        let limit = (room * GATHER_FACTOR)
            .saturating_sub(overhead(shared.origin()))
            .min(shared.config.max_envelope_bytes / 2);
        let mut size = 0;
        // With Python peers, each envelope goes alone, as it was sent (so
        // never in a batch, never deflated).
        let alone = shared.config.python_peers.is_some();
        shared
            .outbox
            .poll_posts(cx, group, &mut self.carry, |group, next| {
                if group.is_empty() {
                    // The first goes whatever its size (in chunks if need be).
                    size = grown_size(0, next);
                    return true;
                }
                if alone {
                    return false;
                }
                let grown = grown_size(size, next);
                let fits = group.len() < MAX_GROUP && grown <= limit;
                if fits {
                    size = grown;
                }
                fits
            })
    }

    /// Frames a body; queues its chunks and returns the first if it is too long.
    #[inline]
    fn frame(&mut self, body: &[u8]) -> String {
        // Sized at once (`write_frame_of` reserves what it writes).
        let mut frame = String::with_capacity(wire::frame_len(self.lines, body.len()));
        wire::write_frame_of(&mut frame, self.lines, self.rng.u16(0..10_000), body);
        if frame.len() <= self.max_len {
            return frame;
        }
        // The base64 body sits between the start and the `\x03`.
        let start = self.lines.frame_start().len() + 4;
        let b64 = &frame[start..frame.len() - 1];
        // The node checked at start that chunks fit this transport.
        let chunks = wire::split_into_chunks(self.lines, self.rng.u32(..), b64, self.max_len)
            .unwrap_or_default();
        self.pending.extend(chunks);
        self.pending.pop_front().unwrap_or(frame)
    }

    /// Hands the node a chat message seen in the room. Waits while the
    /// node's inbound queue is full; fails once the node has stopped.
    pub async fn receive(&self, message: ChatMessage) -> Result<()> {
        self.inbound
            .send(message)
            .await
            .map_err(|_| Error::NodeStopped {
                name: self.shared.name.to_string(),
            })
    }

    /// Whether the node is shutting down: it takes no more envelopes, and
    /// [`next_post`](Self::next_post) gives `None` once the queue is empty.
    /// A transport that cannot post right now (disconnected) checks it to
    /// decide between waiting and giving up.
    pub fn is_closing(&self) -> bool {
        self.shared.outbox.is_closed()
    }

    /// The sending node's instance name (for a transport's logs).
    pub fn node_name(&self) -> &str {
        &self.shared.name
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}
