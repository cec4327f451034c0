//! Dispatch, the node's side of the receive path: the handlers of an
//! accepted envelope run one at a time with their [`Context`], answers to
//! this node's questions go to who asked, and failures are counted and
//! logged. The receive path (`crate::receive`) decides what is accepted
//! and when, and calls this through its `Deliver` trait.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use arc_swap::ArcSwap;
use futures_util::FutureExt as _;
use tracing::{error, warn, Instrument as _};

use super::handler::{Call, HandlerMode, Registered, Registry};
use super::mismatch::What;
use super::shared::{Decision, Jobs, Origin, Takeover};
use super::{Context, Node, Sender};
use crate::core::Core;
use crate::receive::Deliver;
use crate::stats::Counters;
use crate::wire::Messages;

/// A node's handlers as its dispatcher runs them.
pub(crate) struct Handlers {
    node: Node,
    /// The node's core (its counters, without going through the
    /// node's handle).
    core: Arc<Core>,
    /// The node's registry as last taken (see `refresh`).
    registry: Arc<Registry>,
    /// The node's registry, looked at (one atomic load) before each body.
    registry_cache: arc_swap::Cache<Arc<ArcSwap<Registry>>, Arc<Registry>>,
    /// The context of this node's own envelopes.
    own_cx: Context,
    /// The context of the last envelope accepted from the room, kept while
    /// the same sender goes on (no reference counting per envelope). It
    /// starts as `own_cx`, which no sender from the room matches.
    room_cx: Context,
    /// What [`NodeBuilder::observe`](crate::NodeBuilder::observe) gave.
    observer: Option<Arc<Observer>>,
    /// Shared handlers: the jobs held for takeover (only the dispatcher
    /// task takes the lock).
    jobs: std::sync::Mutex<Jobs>,
}

/// A function told of every envelope the node accepts from the room.
pub(crate) type Observer = dyn Fn(&Observed<'_>) + Send + Sync;

/// An envelope from the room as the node accepted it (trusted, signed if
/// the node has a secret, not seen before, in its sender's order), for an
/// observer ([`NodeBuilder::observe`](crate::NodeBuilder::observe)): who
/// sent it, where it is in its sender's sequence, and its messages, every
/// kind (those no handler takes too).
pub struct Observed<'a> {
    sender: &'a Sender,
    seq: Option<u64>,
    count: Option<u64>,
    repaired: bool,
    messages: &'a Messages<'a>,
}

impl Observed<'_> {
    /// Who sent it.
    pub fn sender(&self) -> &Sender {
        self.sender
    }

    /// Its sequence number in its sender's session (the first one's, for a
    /// body of several envelopes); `None` for a Python instance's.
    pub fn seq(&self) -> Option<u64> {
        self.seq
    }

    /// How many envelopes the body holds (1 but for a batch).
    pub fn count(&self) -> u64 {
        self.count.unwrap_or(1)
    }

    /// Whether it arrived through repair (posted again on request).
    pub fn repaired(&self) -> bool {
        self.repaired
    }

    /// Its messages, kind and value, in order; reserved entries (`_ask`,
    /// `_re`: questions and answers) included.
    pub fn messages(&self) -> impl Iterator<Item = (&str, crate::wire::RawValueRef<'_>)> {
        self.messages.iter().map(|(kind, raw)| (&**kind, *raw))
    }
}

impl Handlers {
    pub(crate) fn new(node: Node, observer: Option<Arc<Observer>>) -> Handlers {
        let shared = &node.shared;
        let core = shared.core.clone();
        let own_cx = Context::new(
            node.clone(),
            Sender::own(core.account.clone(), core.name.clone()),
        );
        Handlers {
            registry: shared.registry.load_full(),
            registry_cache: arc_swap::Cache::new(shared.registry.clone()),
            own_cx: own_cx.clone(),
            room_cx: own_cx,
            observer,
            jobs: Default::default(),
            core,
            node,
        }
    }

    /// Runs every handler for every kind of an accepted envelope, each in
    /// its tracing span (see `handler_span`). (`count`: how many envelopes
    /// the body holds, if more than one; `seq`: the first one's sequence
    /// number; `session`: the sender's session.)
    async fn dispatch(
        &self,
        messages: &Messages<'_>,
        count: Option<u64>,
        seq: Option<u64>,
        session: Option<u64>,
        cx: &Context,
    ) {
        let core = &*self.core;
        let counters = &core.counters;
        Counters::add_owned(&counters.envelopes, count.unwrap_or(1));
        // Questions: what an `_ask` or `_re` entry says of the next message.
        let mut tag = None;
        let mut asked_cx;
        // Spans only for a subscriber that may take INFO: otherwise none is
        // made, not even `Span::none()` (one atomic load per body).
        let spans = tracing::level_filters::STATIC_MAX_LEVEL >= tracing::Level::INFO
            && tracing::level_filters::LevelFilter::current() >= tracing::Level::INFO;
        // Shared handlers: whether the body had a shared job.
        let mut shared_seen = false;
        for (at, (kind, raw)) in messages.iter().enumerate() {
            let mut cx = cx;
            if let Some(t) = tag.take() {
                match t {
                    super::ask::Tag::Ask(id) => {
                        asked_cx = cx.asking(id);
                        cx = &asked_cx;
                    }
                    super::ask::Tag::Mine(id) => {
                        self.node.shared.asks.deliver(id, kind, *raw, cx.sender());
                        continue;
                    }
                    super::ask::Tag::Other => continue,
                }
            }
            let Some(handlers) = self.registry.get(kind) else {
                match super::ask::read_tag(kind, *raw, &core.name) {
                    Some(t) => tag = Some(t),
                    None => self.mismatch(kind, cx, What::Unknown),
                }
                continue;
            };
            // Shared handlers: who runs this message's (decided at the
            // first), and its context when it may have run elsewhere.
            let mut shared = None;
            let mut takeover_cx = None;
            for handler in handlers {
                let mut cx = cx;
                if handler.mode == HandlerMode::Shared {
                    let decision = *shared.get_or_insert_with(|| {
                        shared_seen = true;
                        // The message's envelope, where the body tells it
                        // (one message per envelope): the same however the
                        // envelopes were grouped into posts.
                        let (seq, at) = match (seq, count) {
                            (Some(first), Some(n)) if n == messages.len() as u64 => {
                                (Some(first + at as u64), 0)
                            }
                            _ => (seq, at),
                        };
                        self.decide(kind, *raw, cx, session, seq, at)
                    });
                    match decision {
                        Decision::Elsewhere => continue,
                        Decision::Run(false) => {}
                        Decision::Run(true) => {
                            cx = &**takeover_cx.get_or_insert_with(|| Box::new(cx.taking_over()));
                        }
                    }
                }
                // The span ends with the call, or goes into the future: it
                // is not kept across the await (the receive path's future
                // holds what is).
                let called = {
                    let span = spans.then(|| {
                        handler_span(
                            core,
                            kind,
                            cx,
                            Place {
                                seq,
                                count,
                                at,
                                of: messages.len(),
                            },
                        )
                    });
                    let call =
                        || std::panic::catch_unwind(AssertUnwindSafe(|| (handler.call)(*raw, cx)));
                    match span {
                        None => call(),
                        Some(span) => match span.in_scope(call) {
                            Ok(Ok(Call::Pending(future))) => {
                                Ok(Ok(Call::Pending(Box::pin(future.instrument(span)))))
                            }
                            called => called,
                        },
                    }
                };
                let outcome = match called {
                    Ok(Ok(Call::Ready(Ok(())))) => {
                        Counters::add_owned(&counters.dispatched, 1);
                        continue;
                    }
                    Ok(Ok(Call::Skipped)) => continue,
                    Ok(Ok(Call::Ready(result))) => Ok(result),
                    Ok(Ok(Call::Pending(future))) => AssertUnwindSafe(future).catch_unwind().await,
                    Ok(Err(e)) => {
                        self.mismatch(kind, cx, What::Bad(&e));
                        break;
                    }
                    Err(panic) => Err(panic),
                };
                ran(core, handler, kind, outcome);
            }
        }
        if shared_seen {
            if let (Some(session), Some(seq)) = (session, seq) {
                core.shared.handled(session, seq + count.unwrap_or(1));
            }
        }
    }

    /// Decides who runs a shared job, and counts it when it is this node.
    #[cold]
    #[inline(never)]
    fn decide(
        &self,
        kind: &str,
        raw: crate::wire::RawValueRef<'_>,
        cx: &Context,
        session: Option<u64>,
        seq: Option<u64>,
        at: usize,
    ) -> Decision {
        let core = &*self.core;
        // The registry's own string, which held jobs keep.
        let Some(kind) = self.registry.kind_of(kind.as_bytes()) else {
            return Decision::Elsewhere;
        };
        let origin = Origin {
            cx,
            session,
            seq,
            at,
        };
        let decision =
            super::shared::decide(core, &mut crate::sync::lock(&self.jobs), kind, raw, origin);
        if let Decision::Run(takeover) = decision {
            Counters::add_owned(&core.counters.shared_runs, 1);
            if takeover {
                Counters::add_owned(&core.counters.shared_takeovers, 1);
            }
        }
        decision
    }

    /// Runs the shared handlers of a job taken over.
    #[cold]
    #[inline(never)]
    async fn take_over(&self, job: Takeover) {
        let core = &*self.core;
        Counters::add_owned(&core.counters.shared_runs, 1);
        Counters::add_owned(&core.counters.shared_takeovers, 1);
        let Some(handlers) = self.registry.get(job.kind) else {
            return;
        };
        for handler in handlers.iter().filter(|h| h.mode == HandlerMode::Shared) {
            let called =
                std::panic::catch_unwind(AssertUnwindSafe(|| (handler.call)(job.value(), &job.cx)));
            let outcome = match called {
                Ok(Ok(Call::Ready(result))) => Ok(result),
                Ok(Ok(Call::Skipped)) => continue,
                Ok(Ok(Call::Pending(future))) => AssertUnwindSafe(future).catch_unwind().await,
                Ok(Err(e)) => {
                    self.mismatch(job.kind, &job.cx, What::Bad(&e));
                    break;
                }
                Err(panic) => Err(panic),
            };
            ran(core, handler, job.kind, outcome);
        }
    }
}

impl Handlers {
    /// Counts a kind that no handler takes, or a value that does not fit
    /// its message type, in total and per kind and sender.
    #[cold]
    #[inline(never)]
    fn mismatch(&self, kind: &str, cx: &Context, what: What<'_>) {
        let counters = &self.core.counters;
        match what {
            What::Unknown => Counters::add_owned(&counters.unknown_kinds, 1),
            What::Bad(_) => Counters::add_owned(&counters.bad_values, 1),
        }
        self.node
            .shared
            .mismatches
            .note(&self.core.name, kind, cx.sender(), what);
    }
}

impl Deliver for Handlers {
    #[inline]
    fn kind_of(&self, key: &[u8]) -> Option<&'static str> {
        self.registry.kind_of(key)
    }

    #[inline]
    fn refresh(&mut self) {
        let latest = self.registry_cache.load();
        if !Arc::ptr_eq(latest, &self.registry) {
            self.registry = Arc::clone(latest);
        }
    }

    #[inline]
    fn set_sender(
        &mut self,
        account: &Arc<str>,
        instance: Option<&str>,
        intern: impl FnOnce(&str) -> Arc<str>,
    ) {
        if !self.room_cx.sender().is(account, instance) {
            self.room_cx = Context::new(
                self.node.clone(),
                Sender::new(account.clone(), instance.map(intern)),
            );
        }
    }

    // The dispatch's own future, not wrapped in another.
    #[inline]
    fn own(
        &self,
        messages: &Messages<'_>,
        count: Option<u64>,
        seq: Option<u64>,
    ) -> impl Future<Output = ()> + Send {
        self.dispatch(messages, count, seq, Some(self.core.session), &self.own_cx)
    }

    #[inline]
    fn room(
        &self,
        messages: &Messages<'_>,
        count: Option<u64>,
        seq: Option<u64>,
        session: Option<u64>,
        repaired: bool,
    ) -> impl Future<Output = ()> + Send {
        if let Some(observer) = &self.observer {
            observe(&**observer, &self.room_cx, messages, count, seq, repaired);
        }
        self.dispatch(messages, count, seq, session, &self.room_cx)
    }

    fn confirmed(&mut self, instance: &Arc<str>, session: u64, list: &[(u64, u64)]) {
        crate::sync::lock(&self.jobs).confirmed((instance.clone(), session), list);
    }

    async fn tick(&mut self) {
        let takeovers = {
            let mut jobs = crate::sync::lock(&self.jobs);
            super::shared::tick(&self.core, &self.node, &mut jobs)
        };
        for job in takeovers {
            self.take_over(job).await;
        }
    }
}

/// Where a message is in what the receive path delivered: the body's
/// first sequence number, how many envelopes it holds (if more than one),
/// and the message's index among the body's messages.
#[derive(Clone, Copy)]
struct Place {
    seq: Option<u64>,
    count: Option<u64>,
    at: usize,
    of: usize,
}

/// The span of one handler run, at INFO: `handler{node, kind, sender,
/// seq}` (`sender`: the instance, or the account of a frame that names
/// none; `seq`: the message's envelope's sequence number), so that what
/// the handler logs, and the spans of the code it calls (`#[instrument]`),
/// say which message it served. In a body of several envelopes of which
/// some hold several messages, the message's envelope is not told apart:
/// `seq` is then the first's, and `envelopes` how many the body holds.
/// Made only when a subscriber may take INFO (see `dispatch`).
#[inline(never)]
fn handler_span(core: &Core, kind: &str, cx: &Context, place: Place) -> tracing::Span {
    let span = tracing::info_span!(
        "handler",
        node = %core.name,
        kind,
        sender = cx.sender().instance().unwrap_or(cx.sender().account()),
        seq = tracing::field::Empty,
        envelopes = tracing::field::Empty,
    );
    if !span.is_disabled() {
        record_place(&span, place);
    }
    span
}

fn record_place(span: &tracing::Span, place: Place) {
    let Some(first) = place.seq else { return };
    match place.count {
        None => span.record("seq", first),
        // One message per envelope: the message's own.
        Some(n) if n == place.of as u64 => span.record("seq", first + place.at as u64),
        Some(n) => span.record("seq", first).record("envelopes", n),
    };
}

/// Tells the observer of an envelope from the room.
#[cold]
#[inline(never)]
fn observe(
    observer: &Observer,
    cx: &Context,
    messages: &Messages<'_>,
    count: Option<u64>,
    seq: Option<u64>,
    repaired: bool,
) {
    observer(&Observed {
        sender: cx.sender(),
        seq,
        count,
        repaired,
        messages,
    });
}

/// Counts and logs how a handler ended (sync handlers that succeed are
/// counted inline).
#[cold]
#[inline(never)]
fn ran(
    core: &Core,
    handler: &Registered,
    kind: &str,
    outcome: std::thread::Result<Result<(), String>>,
) {
    let counters = &core.counters;
    match outcome {
        Ok(Ok(())) => Counters::add_owned(&counters.dispatched, 1),
        Ok(Err(e)) => {
            Counters::add_owned(&counters.handler_errors, 1);
            warn!(node = %core.name, handler = %handler.name, kind = %kind, error = %e, "handler failed");
        }
        Err(panic) => {
            Counters::add_owned(&counters.handler_panics, 1);
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-string payload".into());
            error!(node = %core.name, handler = %handler.name, kind = %kind, panic = %what, "handler panicked");
        }
    }
}
