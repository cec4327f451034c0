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
use tracing::{error, trace, warn};

use super::handler::{Call, Registered, Registry};
use super::{Context, Node, Sender};
use crate::receive::Deliver;
use crate::send::Bus;
use crate::stats::Counters;
use crate::wire::Messages;

/// A node's handlers as its dispatcher runs them.
pub(crate) struct Handlers {
    node: Node,
    /// The node's side of the bus (its counters, without going through the
    /// node's handle).
    bus: Arc<Bus>,
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
}

impl Handlers {
    pub(crate) fn new(node: Node) -> Handlers {
        let shared = &node.shared;
        let bus = shared.bus.clone();
        let own_cx = Context::new(
            node.clone(),
            Sender::own(bus.account.clone(), bus.name.clone()),
        );
        Handlers {
            registry: shared.registry.load_full(),
            registry_cache: arc_swap::Cache::new(shared.registry.clone()),
            own_cx: own_cx.clone(),
            room_cx: own_cx,
            bus,
            node,
        }
    }

    /// Runs every handler for every kind of an accepted envelope.
    /// (`count`: how many envelopes the body holds, if more than one.)
    async fn dispatch(&self, messages: &Messages<'_>, count: Option<u64>, cx: &Context) {
        let bus = &*self.bus;
        let counters = &bus.counters;
        Counters::add_owned(&counters.envelopes, count.unwrap_or(1));
        // Questions: what an `_ask` or `_re` entry says of the next message.
        let mut tag = None;
        let mut asked_cx;
        for (kind, raw) in messages {
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
                match super::ask::read_tag(kind, *raw, &bus.name) {
                    Some(t) => tag = Some(t),
                    None => unknown_kind(bus, kind),
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
                        bad_value(bus, kind, &e);
                        break;
                    }
                    Err(panic) => Err(panic),
                };
                ran(bus, handler, kind, outcome);
            }
        }
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
    fn own(&self, messages: &Messages<'_>, count: Option<u64>) -> impl Future<Output = ()> + Send {
        self.dispatch(messages, count, &self.own_cx)
    }

    #[inline]
    fn room(&self, messages: &Messages<'_>, count: Option<u64>) -> impl Future<Output = ()> + Send {
        self.dispatch(messages, count, &self.room_cx)
    }
}

/// Counts a kind that no handler takes.
#[cold]
#[inline(never)]
fn unknown_kind(bus: &Bus, kind: &str) {
    Counters::add_owned(&bus.counters.unknown_kinds, 1);
    trace!(node = %bus.name, kind = %kind, "no handler for this kind");
}

/// Counts a value that does not fit its message type.
#[cold]
#[inline(never)]
fn bad_value(bus: &Bus, kind: &str, e: &str) {
    Counters::add_owned(&bus.counters.bad_values, 1);
    warn!(node = %bus.name, kind = %kind, error = %e, "a value does not fit its message type");
}

/// Counts and logs how a handler ended (sync handlers that succeed are
/// counted inline).
#[cold]
#[inline(never)]
fn ran(
    bus: &Bus,
    handler: &Registered,
    kind: &str,
    outcome: std::thread::Result<Result<(), String>>,
) {
    let counters = &bus.counters;
    match outcome {
        Ok(Ok(())) => Counters::add_owned(&counters.dispatched, 1),
        Ok(Err(e)) => {
            Counters::add_owned(&counters.handler_errors, 1);
            warn!(node = %bus.name, handler = %handler.name, kind = %kind, error = %e, "handler failed");
        }
        Err(panic) => {
            Counters::add_owned(&counters.handler_panics, 1);
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-string payload".into());
            error!(node = %bus.name, handler = %handler.name, kind = %kind, panic = %what, "handler panicked");
        }
    }
}
