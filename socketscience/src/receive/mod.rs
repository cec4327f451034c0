//! The receive path: one task per node reading its own envelopes and the
//! room's messages in order, checking them cheapest test first (trust,
//! framing, size, signature, body, age, duplicates, order), and handing
//! what it accepts, one envelope at a time, to the handlers: through the
//! [`Deliver`] trait, which the node implements (`node/dispatch.rs`).
//!
//! This file holds the pipeline ([`Receiver`]); beside it `senders.rs`
//! (the sender table and the check that admits an envelope, against each
//! sender session's replay window, `repair::window`), `gaps.rs` (holding,
//! releasing and repair traffic), `reassembly.rs` (chunks made whole
//! again) and `drops.rs` (what is refused, counted and logged).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{debug, error, trace, warn};

use crate::core::ChatMessage;
use crate::core::Core;
use crate::repair;
use crate::security::{Trust, Verdict};
use crate::stats::{Counter, Counters};
use crate::wire::{self, BodyLimits, ChatText, Codec, Control, Messages, Meta, WireError};

use crate::repair::window::{Admit, Gap, HeldBody, Track};

mod drops;
mod gaps;
mod reassembly;
mod senders;

pub use reassembly::ReassemblyLimits;

use drops::{not_a_frame, DropLog, Refusal};
use reassembly::{Added, Reassembly};
use senders::SenderState;

/// Most messages taken from one queue before the other gets a turn.
const BURST: usize = 64;

/// What the receive path does with a body from the room.
#[derive(Debug, PartialEq)]
enum Accept {
    /// Dispatch it now, as sent by `author`; then release held envelopes
    /// that follow it.
    Now { release: bool, author: Author },
    /// Hold it until the envelopes before it arrive.
    Hold,
    /// Nothing to dispatch (presence or repair traffic only).
    Skip,
    /// Dropped (stale, own echo, duplicate).
    Reject,
}

/// Who sent an envelope accepted to run now, besides its account: what
/// its handlers' context names.
#[derive(Debug, PartialEq)]
enum Author {
    /// A Python instance's envelope: its account alone.
    Account,
    /// An unnumbered envelope: the instance its `_from` names.
    Unnumbered,
    /// A followed sender's instance (its shared name).
    Followed(Arc<str>),
}

/// A question to the room: how far did a replaced session go?
#[derive(Debug)]
struct Probe {
    instance: Arc<str>,
    session: u64,
    first: u64,
    ask_at: tokio::time::Instant,
}

/// What the receive path checks envelopes from the room against, besides
/// the node's keys and envelope size (`Core`); fixed at start.
pub(crate) struct Checks {
    pub(crate) trust: Trust,
    pub(crate) max_skew: Duration,
    pub(crate) body_limits: BodyLimits,
    pub(crate) reassembly: ReassemblyLimits,
}

/// The handler side of the receive path: what runs the messages of an
/// accepted envelope. The node implements it (`node/dispatch.rs`), so the
/// receive path does not import the node, its handlers or their context.
pub(crate) trait Deliver {
    /// The kind a message key names, if a handler takes it (with the
    /// handlers registered up to now: see `refresh`).
    fn kind_of(&self, key: &[u8]) -> Option<&'static str>;

    /// Takes the handlers registered since the last call (cheap when there
    /// are none: one atomic load).
    fn refresh(&mut self);

    /// Makes `account` (and `instance`, if the envelope names it) the
    /// sender of the envelopes from the room that follow, keeping it when
    /// it already is (`intern` gives the instance's shared name).
    fn set_sender(
        &mut self,
        account: &Arc<str>,
        instance: Option<&str>,
        intern: impl FnOnce(&str) -> Arc<str>,
    );

    /// Runs the handlers of this node's own envelope (`count`: how many
    /// envelopes the body holds, if more than one; `seq`: the sequence
    /// number of the first, for the handlers' tracing span).
    fn own(
        &self,
        messages: &Messages<'_>,
        count: Option<u64>,
        seq: Option<u64>,
    ) -> impl std::future::Future<Output = ()> + Send;

    /// Runs the handlers of an envelope from the room, of the sender last
    /// set (`session`: its session, when it says).
    /// (`repaired`: it arrived through repair.)
    fn room(
        &self,
        messages: &Messages<'_>,
        count: Option<u64>,
        seq: Option<u64>,
        session: Option<u64>,
        repaired: bool,
    ) -> impl std::future::Future<Output = ()> + Send;

    /// Shared handlers: peer `instance` (session `session`) confirms how
    /// far it dealt with each sender session's shared jobs.
    fn confirmed(&mut self, instance: &Arc<str>, session: u64, list: &[(u64, u64)]);

    /// The receive path's tick: shared jobs to take over run now.
    fn tick(&mut self) -> impl std::future::Future<Output = ()> + Send;
}

/// The node's receive path.
pub(crate) struct Receiver<D> {
    core: Arc<Core>,
    checks: Checks,
    /// What runs the handlers.
    deliver: D,
    /// This node's own envelopes taken from the outbox, to run.
    own_batch: VecDeque<Vec<u8>>,
    /// Those run, to give back to the outbox for reuse.
    own_done: Vec<Vec<u8>>,
    in_rx: mpsc::Receiver<ChatMessage>,
    senders: foldhash::HashMap<Box<str>, SenderState>,
    heard: u64,
    reassembly: Reassembly,
    buf: Vec<u8>,
    /// The list a body's messages are read into, kept for its allocation.
    messages: Messages<'static>,
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
    /// The sequence number of this node's next own envelope to run (the
    /// outbox numbers them in the order the dispatcher takes them).
    own_seq: u64,
    /// Ranges of this node's envelopes asked for since the last tick: posted
    /// again together at the next (several receivers' requests in one post).
    to_serve: Vec<(u64, u64)>,
    /// Ranges others asked for that this node heard further than their
    /// restarted sender can answer for: said at the next tick.
    to_nak: Vec<wire::WireRange>,
    /// What a chunk's tag covers, kept for its allocation.
    covered: String,
    /// At least the bytes held by every sender session (grown as bodies
    /// are held, counted exactly when it passes the bound).
    held_estimate: usize,
}

impl<D: Deliver> Receiver<D> {
    pub(crate) fn new(
        core: Arc<Core>,
        checks: Checks,
        deliver: D,
        in_rx: mpsc::Receiver<ChatMessage>,
    ) -> Receiver<D> {
        Receiver {
            senders: foldhash::HashMap::default(),
            heard: 0,
            reassembly: Reassembly::new(checks.reassembly, core.max_envelope_bytes.div_ceil(3) * 4),
            buf: Vec::new(),
            messages: Vec::new(),
            own_prefix_b64: {
                let prefix = wire::batch_prefix(&core.origin);
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
            own_seq: 0,
            to_nak: Vec::new(),
            held_estimate: 0,
            covered: String::new(),
            in_rx,
            checks,
            deliver,
            core,
        }
    }

    pub(crate) async fn run(mut self) {
        let tick = Duration::from_secs(5).min(self.core.presence.options.tick());
        let mut expiry = tokio::time::interval(tick);
        expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let core = self.core.clone();
        let mut own_open = true;
        let mut in_open = true;
        while own_open || in_open {
            tokio::select! {
                biased;
                // A burst at a time: one lock and at most one wake-up.
                more = std::future::poll_fn(|cx| core.outbox.poll_own(cx, &mut self.own_batch, BURST, &mut self.own_done)), if own_open => {
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
                    self.count(&self.core.counters.partials_dropped, dropped);
                    self.drops.note(&self.core);
                    self.repair_tick().await;
                    self.deliver.tick().await;
                }
            }
        }
        self.drops.flush(&self.core);
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
        // Numbered as the outbox numbered it, read or not.
        let seq = self.own_seq;
        self.own_seq += 1;
        let mut messages = self.take_messages();
        match self.read(body, limits, &mut messages) {
            Ok(meta) => self.deliver.own(&messages, meta.count, Some(seq)).await,
            // The node wrote it; this would be a bug.
            Err(e) => error!(node = %self.core.name, error = %e, "cannot read own envelope"),
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
        self.deliver.refresh();
        wire::parse_body_with(body, limits, messages, |key| self.deliver.kind_of(key))
    }

    /// The list of messages kept from body to body, emptied.
    fn take_messages<'b>(&mut self) -> Messages<'b> {
        wire::recycle(std::mem::take(&mut self.messages))
    }

    /// Keeps the list of messages for the next body.
    fn keep(&mut self, messages: Messages<'_>) {
        self.messages = wire::recycle(messages);
    }

    // The node's core is borrowed afresh where it is used (the
    // borrow checker allows no longer), rather than cloned per message.
    pub(crate) async fn receive(&mut self, message: ChatMessage) {
        let core = &self.core;
        Counters::add_owned(&core.counters.received, 1);
        if !self.checks.trust.allows(&message.account) {
            return self.untrusted(&message);
        }
        let text = wire::clean(&message.text);
        match wire::parse_chat_text(&text) {
            Ok(ChatText::Frame { body }) => self.read_frame(body, &message.account, None).await,
            Ok(ChatText::Chunk(chunk)) => {
                Counters::add_owned(&self.core.counters.chunks, 1);
                // With a secret, a chunk is checked before it is kept.
                if !self.core.keys.is_empty() {
                    match self.core.keys.verify_chunk(&chunk, &mut self.covered) {
                        Verdict::Valid => {}
                        Verdict::Unsigned => {
                            return self.refuse(
                                Refusal::Unsigned,
                                &message.account,
                                &"a chunk without a signature",
                            )
                        }
                        Verdict::Forged => {
                            return self.refuse(
                                Refusal::BadSignature,
                                &message.account,
                                &"the chunk's signature does not match",
                            )
                        }
                    }
                }
                let session = chunk.session;
                let mut dropped = 0;
                let added =
                    self.reassembly
                        .add(&message.account, chunk, Instant::now(), &mut dropped);
                self.count(&self.core.counters.partials_dropped, dropped);
                match added {
                    Added::Complete(body) => {
                        self.read_frame(&body, &message.account, session).await
                    }
                    Added::Pending | Added::Duplicate => {}
                    Added::Rejected => self.refuse(
                        Refusal::Malformed,
                        &message.account,
                        &"a chunk that does not fit",
                    ),
                }
            }
            Err(WireError::NotAFrame) => not_a_frame(&self.core, &message.account),
            Err(e) => self.refuse(Refusal::Malformed, &message.account, &e),
        }
    }

    /// A whole base64 body from the room (`bound`: the session its chunks
    /// were bound to, which must be the body's).
    async fn read_frame(&mut self, body_b64: &str, account: &Arc<str>, bound: Option<u64>) {
        let core = &self.core;
        let max = core.max_envelope_bytes;
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
        if core.keys.is_empty()
            && body_b64.as_bytes().first() == self.own_prefix_b64.as_bytes().first()
            && body_b64.starts_with(&self.own_prefix_b64)
        {
            // This node's own post of several envelopes, echoed by the chat
            // (its handlers ran at send time): not even decoded. Signed
            // echoes are verified first and dropped by `accept`.
            Counters::add_owned(&core.counters.own_echoes, 1);
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
        let keys = &self.core.keys;
        let signed = !keys.is_empty();
        let verdict = if signed {
            keys.verify(body)
        } else {
            Verdict::Valid
        };
        match verdict {
            Verdict::Valid => {
                let mut messages = self.take_messages();
                match self.read(body, self.checks.body_limits, &mut messages) {
                    Ok(meta) if bound.is_some() && meta.session != bound => {
                        // Chunks bound to one session, carrying another's body.
                        let from = meta.from.as_deref().unwrap_or("?");
                        self.not_owner(account, from, bound.unwrap_or(0));
                    }
                    Ok(meta) => {
                        if meta.from.is_none() && !self.warned_python {
                            self.python_frame(body, account);
                        }
                        match self.accept(&meta, account, signed, !messages.is_empty()) {
                            Accept::Now {
                                release: false,
                                author,
                            } if meta.control.is_none() => {
                                self.name_sender(account, &meta, author);
                                self.deliver
                                    .room(&messages, meta.count, meta.seq, meta.session, false)
                                    .await
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
        let core = &self.core;
        if core.python_peers.is_some() || wire::Codec::sniff(body) == wire::Codec::Json {
            return;
        }
        self.warned_python = true;
        warn!(
            node = %core.name,
            account,
            "a Python SocketScience instance seems to share this room (a MessagePack envelope \
             without `_from`): what this node posts (JSON, envelopes sharing a post, chunks) can \
             make Python instances raise and stop reading the room; build every Rust node of a \
             fleet with Python instances with `.python_peers()`"
        );
    }
}

/// A random delay in `[0, window / 2)`: receivers that noticed one gap
/// together do not ask together (the first request heard silences the rest).
fn jitter(rng: &mut fastrand::Rng, window: Duration) -> Duration {
    window.mul_f64(0.5 * rng.f64())
}
