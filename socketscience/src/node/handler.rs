//! Handlers: the shapes a handler may take, and the registry built from them.
//!
//! A handler is a function or closure taking the message, and optionally a
//! [`Context`], sync or async, returning `()` or `Result<(), E: Display>`.
//! [`Handler`] is implemented for each of those shapes, so the `#[handler]`
//! attribute and [`Node::register`](crate::Node::register) share them.

use std::borrow::Cow;
use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::Context;
use crate::message::Message;
use crate::wire::RawValueRef;

/// What a handler returns: `()` or `Result<(), E>` where `E: Display`.
#[diagnostic::on_unimplemented(
    message = "a handler must return `()` or `Result<(), E>` where `E: Display`, not `{Self}`",
    label = "this return type is not allowed for a handler"
)]
pub trait HandlerResult {
    /// The failure, as text for the log.
    fn into_result(self) -> Result<(), String>;
}

impl HandlerResult for () {
    fn into_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: Display> HandlerResult for Result<(), E> {
    fn into_result(self) -> Result<(), String> {
        self.map_err(|e| e.to_string())
    }
}

/// A boxed handler future.
pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// What calling a handler gives: done at once (sync) or a future (async);
/// or nothing, for a handler that does not run in the node's present
/// role (`#[handler(active)]` on a standby).
#[doc(hidden)]
pub enum Call {
    Ready(Result<(), String>),
    Pending(BoxFuture),
    Skipped,
}

/// When a handler runs: the `#[handler(...)]` keyword, or the `register_*`
/// method, that registered it. Not public API.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandlerMode {
    /// `#[handler]`, [`Node::register`](crate::Node::register): in every
    /// node, for every envelope.
    Every,
    /// `#[handler(active)]`, [`Node::register_active`](crate::Node::register_active):
    /// only while the node is the active instance of its election.
    Active,
    /// `#[handler(shared)]`, [`Node::register_shared`](crate::Node::register_shared):
    /// for each envelope, in one live instance among those with a shared
    /// handler for its kind (the dispatcher decides: `node/shared.rs`).
    Shared,
}

impl HandlerMode {
    /// The `#[handler(...)]` keyword of the mode, for messages.
    pub(crate) fn keyword(self) -> &'static str {
        match self {
            HandlerMode::Every => "",
            HandlerMode::Active => "active",
            HandlerMode::Shared => "shared",
        }
    }
}

/// The erased handler `call`, run only while the node is active.
pub(crate) fn active_only<F>(call: F) -> Arc<ErasedFn>
where
    F: Fn(RawValueRef<'_>, &Context) -> Result<Call, String> + Send + Sync + 'static,
{
    Arc::new(move |raw: RawValueRef<'_>, cx: &Context| {
        if cx.node().role() == crate::failover::Role::Active {
            call(raw, cx)
        } else {
            Ok(Call::Skipped)
        }
    })
}

/// Markers telling the handler shapes apart; not public API.
#[doc(hidden)]
pub mod shape {
    use std::marker::PhantomData;
    /// `fn(M)` or `fn(M, Context)`, returning a [`HandlerResult`](super::HandlerResult).
    pub struct Sync<Args>(PhantomData<Args>);
    /// `async fn(M)` or `async fn(M, Context)`.
    pub struct Async<Args>(PhantomData<Args>);
}

/// A function or closure that can handle messages of type `M`.
///
/// Implemented for `Fn(M)`, `Fn(M, Context)` and their async forms
/// (closures returning a future), each returning `()` or
/// `Result<(), E: Display>`. `Args` only tells the shapes apart; it is
/// inferred.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot handle `{M}` messages",
    label = "not a handler",
    note = "a handler takes `(M)` or `(M, Context)`, may be async, and returns `()` or `Result<(), E: Display>`"
)]
pub trait Handler<M, Args>: Send + Sync + 'static {
    #[doc(hidden)]
    fn call(&self, message: M, cx: &Context) -> Call;
}

impl<M, F, R> Handler<M, shape::Sync<(M,)>> for F
where
    F: Fn(M) -> R + Send + Sync + 'static,
    R: HandlerResult,
{
    fn call(&self, message: M, _cx: &Context) -> Call {
        Call::Ready(self(message).into_result())
    }
}

impl<M, F, R> Handler<M, shape::Sync<(M, Context)>> for F
where
    F: Fn(M, Context) -> R + Send + Sync + 'static,
    R: HandlerResult,
{
    fn call(&self, message: M, cx: &Context) -> Call {
        Call::Ready(self(message, cx.clone()).into_result())
    }
}

impl<M, F, Fut> Handler<M, shape::Async<(M,)>> for F
where
    F: Fn(M) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: HandlerResult,
{
    fn call(&self, message: M, _cx: &Context) -> Call {
        let fut = self(message);
        Call::Pending(Box::pin(async move { fut.await.into_result() }))
    }
}

impl<M, F, Fut> Handler<M, shape::Async<(M, Context)>> for F
where
    F: Fn(M, Context) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: HandlerResult,
{
    fn call(&self, message: M, cx: &Context) -> Call {
        let fut = self(message, cx.clone());
        Call::Pending(Box::pin(async move { fut.await.into_result() }))
    }
}

/// Decodes the value and calls the handler: the erased form every handler
/// is stored as. `Err` is a value that does not fit `M`.
pub(crate) fn call<M: Message, Args, H: Handler<M, Args>>(
    handler: &H,
    raw: RawValueRef<'_>,
    cx: &Context,
) -> Result<Call, String> {
    let message: M = raw.decode()?;
    Ok(handler.call(message, cx))
}

/// The erased handler: decode, then call.
pub(crate) type ErasedFn = dyn Fn(RawValueRef<'_>, &Context) -> Result<Call, String> + Send + Sync;

/// A handler registered by `#[handler]`: a const-built entry holding a
/// plain `fn` pointer, collected through `inventory`.
#[doc(hidden)]
pub struct StaticHandler {
    kind: &'static str,
    name: &'static str,
    call: fn(RawValueRef<'_>, &Context) -> Result<Call, String>,
    mode: HandlerMode,
}

impl StaticHandler {
    #[doc(hidden)]
    pub const fn new(
        kind: &'static str,
        name: &'static str,
        call: fn(RawValueRef<'_>, &Context) -> Result<Call, String>,
    ) -> Self {
        StaticHandler {
            kind,
            name,
            call,
            mode: HandlerMode::Every,
        }
    }

    /// The handler with another mode (`#[handler(active)]`).
    #[doc(hidden)]
    pub const fn mode(self, mode: HandlerMode) -> Self {
        StaticHandler { mode, ..self }
    }
}

inventory::collect!(StaticHandler);

/// One registered handler.
#[derive(Clone)]
pub(crate) struct Registered {
    pub(crate) name: Cow<'static, str>,
    pub(crate) call: Arc<ErasedFn>,
    pub(crate) mode: HandlerMode,
}

/// Kind to handlers; built once at start, replaced (never mutated) when a
/// closure is registered. A program has a handful of kinds: a linear scan
/// of short strings beats hashing them.
#[derive(Clone, Default)]
pub(crate) struct Registry {
    by_kind: Vec<(&'static str, Vec<Registered>)>,
}

impl Registry {
    /// Every `#[handler]` in the program.
    pub(crate) fn from_inventory() -> Registry {
        let mut registry = Registry::default();
        for h in inventory::iter::<StaticHandler> {
            let call = match h.mode {
                HandlerMode::Every | HandlerMode::Shared => Arc::new(h.call) as Arc<ErasedFn>,
                HandlerMode::Active => active_only(h.call),
            };
            registry.add(
                h.kind,
                Registered {
                    name: Cow::Borrowed(h.name),
                    call,
                    mode: h.mode,
                },
            );
        }
        registry
    }

    /// The first handler whose mode needs failover (see
    /// [`HandlerMode::Active`]), for the check at start.
    pub(crate) fn needing_failover(&self) -> Option<&Registered> {
        self.by_kind
            .iter()
            .flat_map(|(_, handlers)| handlers)
            .find(|h| h.mode == HandlerMode::Active)
    }

    /// The first shared handler, for the check at start.
    pub(crate) fn shared_handler(&self) -> Option<&Registered> {
        self.by_kind
            .iter()
            .flat_map(|(_, handlers)| handlers)
            .find(|h| h.mode == HandlerMode::Shared)
    }

    pub(crate) fn add(&mut self, kind: &'static str, handler: Registered) {
        match self.by_kind.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, handlers)) => handlers.push(handler),
            None => self.by_kind.push((kind, vec![handler])),
        }
    }

    /// The handlers of `kind`. (A kind from [`kind_of`](Self::kind_of) is
    /// the registry's own string: found by its address, no text compared.)
    pub(crate) fn get(&self, kind: &str) -> Option<&[Registered]> {
        self.by_kind
            .iter()
            .find(|(k, _)| std::ptr::eq(*k, kind) || *k == kind)
            .map(|(_, handlers)| handlers.as_slice())
    }

    /// The handled kind spelled by `bytes`, if any.
    pub(crate) fn kind_of(&self, bytes: &[u8]) -> Option<&'static str> {
        self.by_kind
            .iter()
            .find(|(k, _)| k.as_bytes() == bytes)
            .map(|(k, _)| *k)
    }

    pub(crate) fn kinds(&self) -> Vec<&'static str> {
        self.by_kind.iter().map(|(k, _)| *k).collect()
    }

    /// The kinds it has shared handlers for, sorted.
    pub(crate) fn shared_kinds_sorted(&self) -> Vec<&'static str> {
        let mut kinds: Vec<&'static str> = self
            .by_kind
            .iter()
            .filter(|(_, handlers)| handlers.iter().any(|h| h.mode == HandlerMode::Shared))
            .map(|(k, _)| *k)
            .collect();
        kinds.sort_unstable();
        kinds
    }

    /// The kinds it has handlers for, sorted.
    pub(crate) fn kinds_sorted(&self) -> Vec<&'static str> {
        let mut kinds = self.kinds();
        kinds.sort_unstable();
        kinds
    }

    pub(crate) fn handler_count(&self) -> usize {
        self.by_kind.iter().map(|(_, h)| h.len()).sum()
    }
}
