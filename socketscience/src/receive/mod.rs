//! The receive path: one task per node reading its own envelopes and the
//! room's messages in order, checking them cheapest test first (trust,
//! framing, size, signature, body, age, duplicates), and running handlers
//! one at a time.
//!
//! This file holds the pipeline (the dispatcher); beside it `senders.rs`
//! (the sender table and the check that admits an envelope), `window.rs`
//! (each sender session's replay window), `gaps.rs`
//! (holding, releasing and repair traffic), `reassembly.rs` (chunks made
//! whole again) and `drops.rs` (what is refused, counted and logged).

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use tokio::sync::mpsc;
use tracing::{debug, error, trace, warn};

use crate::handler::{Call, Registered, Registry};
use crate::node::{Context, Node, NodeShared, Sender};
use crate::repair;
use crate::security::Verdict;
use crate::stats::{Counter, Counters};
use crate::transport::ChatMessage;
use crate::wire::{self, BodyLimits, ChatText, Codec, Control, Messages, Meta, WireError};
use window::{Admit, Gap, HeldBody, Track};

mod drops;
mod gaps;
mod reassembly;
mod senders;
mod window;

pub use reassembly::ReassemblyLimits;

use drops::{not_a_frame, DropLog, Refusal};
use reassembly::{Added, Reassembly};
use senders::SenderState;

/// Most messages taken from one queue before the other gets a turn.
const BURST: usize = 64;

/// What the receive path does with a body from the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Accept {
    /// Dispatch it now; then release held envelopes that follow it.
    Now { release: bool },
    /// Hold it until the envelopes before it arrive.
    Hold,
    /// Nothing to dispatch (presence or repair traffic only).
    Skip,
    /// Dropped (stale, own echo, duplicate).
    Reject,
}

/// A question to the room: how far did a replaced session go?
#[derive(Debug)]
struct Probe {
    instance: Arc<str>,
    session: u64,
    first: u64,
    ask_at: tokio::time::Instant,
}

/// The node's receive path.
pub(crate) struct Dispatcher {
    node: Node,
    /// This node's own envelopes taken from the outbox, to run.
    own_batch: VecDeque<Vec<u8>>,
    /// Those run, to give back to the outbox for reuse.
    own_done: Vec<Vec<u8>>,
    in_rx: mpsc::Receiver<ChatMessage>,
    /// The node's registry as last taken (see `refresh_registry`).
    registry: Arc<Registry>,
    /// The node's registry, looked at (one atomic load) before each body.
    registry_cache: arc_swap::Cache<Arc<arc_swap::ArcSwap<Registry>>, Arc<Registry>>,
    senders: foldhash::HashMap<Box<str>, SenderState>,
    heard: u64,
    reassembly: Reassembly,
    buf: Vec<u8>,
    /// The list a body's messages are read into, kept for its allocation.
    messages: Messages<'static>,
    /// The context of this node's own envelopes.
    own_cx: Context,
    /// The context of the last envelope accepted from the room, kept while
    /// the same sender goes on (no reference counting per envelope). It
    /// starts as `own_cx`, which no sender from the room matches.
    room_cx: Context,
    /// How this node's own multi-envelope JSON posts start, in base64
    /// (whole groups of three bytes), to drop their echoes undecoded.
    own_prefix_b64: String,
    drops: DropLog,
    /// Whether this node warned that a Python instance shares its room.
    warned_python: bool,
    /// Jitter of repair requests.
    rng: fastrand::Rng,
    /// Sessions replaced by a restart, to ask the room about.
    probes: Vec<Probe>,
    /// Sessions with held envelopes that may now be due.
    to_release: Vec<(Arc<str>, u64)>,
    /// Ranges of this node's envelopes asked for since the last tick: posted
    /// again together at the next (several receivers' requests in one post).
    to_serve: Vec<(u64, u64)>,
}

impl Dispatcher {
    pub(crate) fn new(node: Node, in_rx: mpsc::Receiver<ChatMessage>) -> Dispatcher {
        let shared = &node.shared;
        let config = &shared.config;
        let own_cx = Context::new(
            node.clone(),
            Sender::own(shared.account.clone(), shared.name.clone()),
        );
        Dispatcher {
            registry: shared.read_registry(),
            registry_cache: arc_swap::Cache::new(shared.registry.clone()),
            senders: foldhash::HashMap::default(),
            heard: 0,
            reassembly: Reassembly::new(
                config.reassembly,
                config.max_envelope_bytes.div_ceil(3) * 4,
            ),
            buf: Vec::new(),
            messages: Vec::new(),
            own_cx: own_cx.clone(),
            room_cx: own_cx,
            own_prefix_b64: {
                let prefix = wire::batch_prefix(shared.origin());
                let mut b64 = String::new();
                wire::encode_base64(&prefix[..prefix.len() / 3 * 3], &mut b64);
                b64
            },
            drops: DropLog::new(),
            warned_python: false,
            own_batch: VecDeque::new(),
            own_done: Vec::new(),
            rng: fastrand::Rng::new(),
            probes: Vec::new(),
            to_release: Vec::new(),
            to_serve: Vec::new(),
            in_rx,
            node,
        }
    }

    pub(crate) async fn run(mut self) {
        let tick = Duration::from_secs(5).min(self.node.shared.presence.options.tick());
        let mut expiry = tokio::time::interval(tick);
        expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let shared = self.node.shared.clone();
        let mut own_open = true;
        let mut in_open = true;
        while own_open || in_open {
            tokio::select! {
                biased;
                // A burst at a time: one lock and at most one wake-up.
                more = std::future::poll_fn(|cx| shared.outbox.poll_own(cx, &mut self.own_batch, BURST, &mut self.own_done)), if own_open => {
                    if more {
                        while let Some(body) = self.own_batch.pop_front() {
                            self.run_own(&body).await;
                            self.own_done.push(body);
                        }
                    } else {
                        own_open = false;
                    }
                },
                message = self.in_rx.recv(), if in_open => match message {
                    Some(message) => {
                        self.receive(message).await;
                        for _ in 0..BURST {
                            let Ok(message) = self.in_rx.try_recv() else { break };
                            self.receive(message).await;
                        }
                    }
                    None => in_open = false,
                },
                _ = expiry.tick() => {
                    let dropped = self.reassembly.expire(Instant::now());
                    self.count(&self.node.shared.counters.partials_dropped, dropped);
                    self.drops.note(&self.node);
                    self.repair_tick().await;
                }
            }
        }
        self.drops.flush(&self.node);
    }

    fn count(&self, counter: &Counter, n: u64) {
        if n > 0 {
            Counters::add_owned(counter, n);
        }
    }

    pub(crate) async fn run_own(&mut self, body: &[u8]) {
        let limits = BodyLimits {
            max_kinds: usize::MAX,
            max_depth: usize::MAX,
        };
        let mut messages = self.take_messages();
        match self.read(body, limits, &mut messages) {
            Ok(meta) => self.dispatch(&messages, meta.count, &self.own_cx).await,
            // The node wrote it; this would be a bug.
            Err(e) => error!(node = %self.node.name(), error = %e, "cannot read own envelope"),
        }
        self.keep(messages);
    }

    /// Reads `body` with the current registry into `messages`, the list
    /// kept from body to body ([`take_messages`](Self::take_messages),
    /// [`keep`](Self::keep)).
    fn read<'b>(
        &mut self,
        body: &'b [u8],
        limits: BodyLimits,
        messages: &mut Messages<'b>,
    ) -> Result<Meta<'b>, WireError> {
        self.refresh_registry();
        wire::parse_body_with(body, limits, messages, |key| self.registry.kind_of(key))
    }

    /// The list of messages kept from body to body, emptied.
    fn take_messages<'b>(&mut self) -> Messages<'b> {
        wire::recycle(std::mem::take(&mut self.messages))
    }

    /// Keeps the list of messages for the next body.
    fn keep(&mut self, messages: Messages<'_>) {
        self.messages = wire::recycle(messages);
    }

    // The node's shared state is borrowed afresh where it is used (the
    // borrow checker allows no longer), rather than cloned per message.
    pub(crate) async fn receive(&mut self, message: ChatMessage) {
        let shared = &self.node.shared;
        Counters::add_owned(&shared.counters.received, 1);
        if !shared.config.trust.allows(&message.account) {
            return self.untrusted(&message.account);
        }
        let text = wire::clean(&message.text);
        match wire::parse_chat_text(&text) {
            Ok(ChatText::Frame { body }) => self.read_frame(body, &message.account).await,
            Ok(ChatText::Chunk(chunk)) => {
                Counters::add_owned(&self.node.shared.counters.chunks, 1);
                let mut dropped = 0;
                let added =
                    self.reassembly
                        .add(&message.account, chunk, Instant::now(), &mut dropped);
                self.count(&self.node.shared.counters.partials_dropped, dropped);
                match added {
                    Added::Complete(body) => self.read_frame(&body, &message.account).await,
                    Added::Pending | Added::Duplicate => {}
                    Added::Rejected => self.refuse(
                        Refusal::Malformed,
                        &message.account,
                        &"a chunk that does not fit",
                    ),
                }
            }
            Err(WireError::NotAFrame) => not_a_frame(&self.node.shared, &message.account),
            Err(e) => self.refuse(Refusal::Malformed, &message.account, &e),
        }
    }

    /// A whole base64 body from the room.
    async fn read_frame(&mut self, body_b64: &str, account: &Arc<str>) {
        let shared = &self.node.shared;
        let max = shared.config.max_envelope_bytes;
        let size = body_b64.len() / 4 * 3;
        if size > max {
            let e = WireError::TooLarge {
                what: "the envelope",
                size,
                max,
            };
            return self.refuse(Refusal::TooLarge, account, &e);
        }
        // (Its first character tells a JSON body, which this prefix is of,
        // from a MessagePack one without comparing the rest.)
        if shared.config.keys.is_empty()
            && body_b64.as_bytes().first() == self.own_prefix_b64.as_bytes().first()
            && body_b64.starts_with(&self.own_prefix_b64)
        {
            // This node's own post of several envelopes, echoed by the chat
            // (its handlers ran at send time): not even decoded. Signed
            // echoes are verified first and dropped by `accept`.
            Counters::add_owned(&shared.counters.own_echoes, 1);
            return;
        }
        let mut buf = std::mem::take(&mut self.buf);
        if let Err(e) = wire::decode_base64(body_b64, &mut buf) {
            self.buf = buf;
            return self.refuse(Refusal::Malformed, account, &e);
        }
        // A compressed body is inflated, within the same bound.
        let mut inflated = Vec::new();
        let body = match wire::inflate_body(&buf, max, &mut inflated) {
            Ok(false) => &buf[..],
            Ok(true) => &inflated[..],
            Err(e) => {
                self.buf = buf;
                return self.refuse(Refusal::Compressed, account, &e);
            }
        };
        let keys = &self.node.shared.config.keys;
        let signed = !keys.is_empty();
        let verdict = if signed {
            keys.verify(body)
        } else {
            Verdict::Valid
        };
        match verdict {
            Verdict::Valid => {
                let mut messages = self.take_messages();
                match self.read(body, self.node.shared.config.body_limits, &mut messages) {
                    Ok(meta) => {
                        if meta.from.is_none() && !self.warned_python {
                            self.python_frame(body, account);
                        }
                        match self.accept(&meta, account, signed, !messages.is_empty()) {
                            Accept::Now { release: false } if meta.control.is_none() => {
                                self.dispatch(&messages, meta.count, &self.room_cx).await
                            }
                            accepted => {
                                Box::pin(
                                    self.read_frame_slow(accepted, &meta, &messages, account, body),
                                )
                                .await
                            }
                        }
                    }
                    Err(e @ WireError::TooLarge { .. }) => {
                        self.refuse(Refusal::TooLarge, account, &e)
                    }
                    Err(e) => self.refuse(Refusal::Malformed, account, &e),
                }
                self.keep(messages);
            }
            Verdict::Unsigned => self.refuse(Refusal::Unsigned, account, &"no signature"),
            Verdict::Forged => self.refuse(
                Refusal::BadSignature,
                account,
                &"the signature does not match",
            ),
        }
        if buf.capacity() <= 64 << 10 {
            self.buf = buf;
        }
    }

    /// A MessagePack body without `_from`: what Python SocketScience
    /// writes. Warns once, on a node not made for Python peers.
    #[cold]
    #[inline(never)]
    fn python_frame(&mut self, body: &[u8], account: &str) {
        let shared = &self.node.shared;
        if shared.config.python_peers.is_some() || wire::Codec::sniff(body) == wire::Codec::Json {
            return;
        }
        self.warned_python = true;
        warn!(
            node = %shared.name,
            account,
            "a Python SocketScience instance seems to share this room (a MessagePack envelope \
             without `_from`): what this node posts (JSON, envelopes sharing a post, chunks) can \
             make Python instances raise and stop reading the room; build every Rust node of a \
             fleet with Python instances with `.python_peers()`"
        );
    }

    /// Takes the registry anew if handlers were registered since.
    fn refresh_registry(&mut self) {
        let latest = self.registry_cache.load();
        if !Arc::ptr_eq(latest, &self.registry) {
            self.registry = Arc::clone(latest);
        }
    }

    /// Runs every handler for every kind of an accepted envelope.
    /// (`count`: how many envelopes the body holds, if more than one.)
    async fn dispatch(&self, messages: &Messages<'_>, count: Option<u64>, cx: &Context) {
        let shared = &self.node.shared;
        let counters = &shared.counters;
        Counters::add_owned(&counters.envelopes, count.unwrap_or(1));
        // Questions: what an `_ask` or `_re` entry says of the next message.
        let mut tag = None;
        let mut asked_cx;
        for (kind, raw) in messages {
            let mut cx = cx;
            if let Some(t) = tag.take() {
                match t {
                    crate::ask::Tag::Ask(id) => {
                        asked_cx = cx.asking(id);
                        cx = &asked_cx;
                    }
                    crate::ask::Tag::Mine(id) => {
                        shared.asks.deliver(id, kind, *raw, cx.sender());
                        continue;
                    }
                    crate::ask::Tag::Other => continue,
                }
            }
            let Some(handlers) = self.registry.get(kind) else {
                match crate::ask::read_tag(kind, *raw, &shared.name) {
                    Some(t) => tag = Some(t),
                    None => unknown_kind(shared, kind),
                }
                continue;
            };
            for handler in handlers {
                let outcome = match std::panic::catch_unwind(AssertUnwindSafe(|| {
                    (handler.call)(*raw, cx)
                })) {
                    Ok(Ok(Call::Ready(Ok(())))) => {
                        Counters::add_owned(&counters.dispatched, 1);
                        continue;
                    }
                    Ok(Ok(Call::Ready(result))) => Ok(result),
                    Ok(Ok(Call::Pending(future))) => AssertUnwindSafe(future).catch_unwind().await,
                    Ok(Err(e)) => {
                        bad_value(shared, kind, &e);
                        break;
                    }
                    Err(panic) => Err(panic),
                };
                ran(shared, handler, kind, outcome);
            }
        }
    }
}

/// Counts a kind that no handler takes.
#[cold]
#[inline(never)]
fn unknown_kind(shared: &NodeShared, kind: &str) {
    Counters::add_owned(&shared.counters.unknown_kinds, 1);
    trace!(node = %shared.name, kind = %kind, "no handler for this kind");
}

/// Counts a value that does not fit its message type.
#[cold]
#[inline(never)]
fn bad_value(shared: &NodeShared, kind: &str, e: &str) {
    Counters::add_owned(&shared.counters.bad_values, 1);
    warn!(node = %shared.name, kind = %kind, error = %e, "a value does not fit its message type");
}

/// Counts and logs how a handler ended (sync handlers that succeed are
/// counted inline).
#[cold]
#[inline(never)]
fn ran(
    shared: &NodeShared,
    handler: &Registered,
    kind: &str,
    outcome: std::thread::Result<Result<(), String>>,
) {
    let counters = &shared.counters;
    match outcome {
        Ok(Ok(())) => Counters::add_owned(&counters.dispatched, 1),
        Ok(Err(e)) => {
            Counters::add_owned(&counters.handler_errors, 1);
            warn!(node = %shared.name, handler = %handler.name, kind = %kind, error = %e, "handler failed");
        }
        Err(panic) => {
            Counters::add_owned(&counters.handler_panics, 1);
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-string payload".into());
            error!(node = %shared.name, handler = %handler.name, kind = %kind, panic = %what, "handler panicked");
        }
    }
}

/// A random delay in `[0, window / 2)`: receivers that noticed one gap
/// together do not ask together (the first request heard silences the rest).
fn jitter(rng: &mut fastrand::Rng, window: Duration) -> Duration {
    window.mul_f64(0.5 * rng.f64())
}
