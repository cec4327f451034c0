//! The attributes of [socketscience](https://docs.rs/socketscience):
//! `#[message("kind")]`, `#[data]` and `#[handler]`. Use them through that
//! crate (`use socketscience::{data, message, handler};`); their expansions
//! name it.
//!
//! Each misuse is a compile error pointing at the tokens to change and
//! saying what to write instead; `tests/ui/` in the workspace holds one
//! case per misuse with the exact error.

mod common;
mod data;
mod handler;
mod message;

use proc_macro::TokenStream;

/// Makes a struct or enum a message of kind `"kind"`.
///
/// ```text
/// #[message("ping")]
/// #[derive(Debug, Clone)]
/// pub struct Ping { pub location: String, pub timestamp: f64 }
/// ```
///
/// # Arguments
///
/// The kind: a string literal, not empty, not starting with `_`
/// (those keys are reserved for socketscience's metadata). It is the key of
/// the message in the envelope, as Python SocketScience's `register(kind)`.
///
/// Then, optionally, `reply = R`: the message is a question whose answer is
/// the message type `R` (itself a `#[message]`). A handler of the question
/// returns an `R` (or `Option<R>`, or a `Result` of either), and
/// `node.ask(question)` gathers the typed answers:
///
/// ```text
/// #[message("where_are_you", reply = Location)]
/// pub struct WhereAreYou;
///
/// #[message("location")]
/// pub struct Location { pub name: String }
/// ```
///
/// This implements `socketscience::ask::Question` for the type, with
/// `type Reply = Location`.
///
/// # Accepted items
///
/// Structs (named, newtype, tuple, unit) and enums, without generic
/// parameters or lifetimes (a kind decodes into one owned type).
/// `#[serde(...)]` attributes on the type and its fields keep working; no
/// serde dependency is needed. A struct or enum inside a message's fields
/// takes `#[data]`, which derives serde the same way. Unions, generic types and anything that is
/// not a struct or an enum are compile errors.
///
/// # Expansion
///
/// ```text
/// #[derive(::socketscience::__private::serde::Serialize, ::socketscience::__private::serde::Deserialize)]
/// #[serde(crate = "::socketscience::__private::serde")]
/// #[derive(Debug, Clone)]
/// pub struct Ping { pub location: String, pub timestamp: f64 }
///
/// #[automatically_derived]
/// impl ::socketscience::Message for Ping {
///     const KIND: &'static str = "ping";
/// }
///
/// impl Ping {
///     /// Sends this `ping` message to every instance in the room, ...
///     pub fn broadcast(self) -> ::socketscience::Result<()> {
///         ::socketscience::__private::broadcast(self)
///     }
/// }
///
/// // The (kind, type) record a node checks at start, refusing to start
/// // when two types claim one kind.
/// ::socketscience::__private::inventory::submit! {
///     ::socketscience::__private::MessageType::new("ping", concat!(module_path!(), "::", "Ping"))
/// }
/// ```
///
/// When the kind is wrong, the error comes with the type, its impls and
/// `broadcast()` (but no record), so that the uses of the type do not add
/// errors of their own.
#[proc_macro_attribute]
pub fn message(attr: TokenStream, item: TokenStream) -> TokenStream {
    message::expand(attr.into(), item.into()).into()
}

/// Derives serde, through socketscience, for a type carried inside a
/// message: a struct or enum that a `#[message]` type holds in a field.
///
/// ```text
/// #[data]
/// #[derive(Debug, Clone, PartialEq)]
/// pub struct Location { pub host: String, pub region: Region }
///
/// #[data]
/// #[serde(rename_all = "lowercase")]
/// #[derive(Debug, Clone, Copy, PartialEq)]
/// pub enum Region { Eu, Us }
///
/// #[message("where")]
/// pub struct Where { pub location: Location, pub seen: Vec<Location> }
/// ```
///
/// # Arguments
///
/// None: a nested type has no kind; it travels inside its message's value.
///
/// # Accepted items
///
/// Structs and enums, generic ones included (serde bounds the parameters).
/// `#[serde(...)]` attributes on the type and its fields keep working; no
/// serde dependency is needed. Unions and anything that is not a struct or
/// an enum are compile errors.
///
/// # Expansion
///
/// The derive `#[message]` adds, and nothing else (no kind, no
/// registration, no `broadcast()`):
///
/// ```text
/// #[derive(::socketscience::__private::serde::Serialize, ::socketscience::__private::serde::Deserialize)]
/// #[serde(crate = "::socketscience::__private::serde")]
/// #[derive(Debug, Clone, PartialEq)]
/// pub struct Location { pub host: String, pub region: Region }
/// ```
#[proc_macro_attribute]
pub fn data(attr: TokenStream, item: TokenStream) -> TokenStream {
    data::expand(attr.into(), item.into()).into()
}

/// Registers a free function as the handler of its first parameter's
/// message kind, in every node of the process.
///
/// ```text
/// #[handler]
/// fn log_ping(ping: Ping) { /* ... */ }
///
/// #[handler]
/// async fn serve(b: Beverage, cx: Context) -> Result<(), MyError> { Ok(()) }
/// ```
///
/// # Arguments
///
/// None, or a mode. The kind comes from the first parameter's type.
///
/// - `#[handler(active)]`: runs only while the node is the active instance
///   of its election (`NodeBuilder::failover`); on a standby the message
///   is read and left. A node without failover refuses to start while
///   such a handler is in the program. The run-time form is
///   `node.register_active(..)`.
/// - `#[handler(shared)]`: for each envelope of its kind, one live instance
///   among those with a shared handler for the kind runs it, chosen
///   without a post (a hash of the envelope's identity over the live
///   instances); if that instance is gone before it confirmed the job, the
///   next choice runs it, and `cx.is_takeover()` says the run may have
///   happened elsewhere too. Needs heartbeats. The run-time form is
///   `node.register_shared(..)`.
///
/// # Accepted functions
///
/// Free functions, `fn` or `async fn`, of the shape `(M)` or
/// `(M, Context)` where `M` is a `#[message]` type taken by value,
/// returning `()` or `Result<(), E>` where `E: Display`; or, when `M` is a
/// question (`#[message("kind", reply = R)]`), returning the reply: `R`,
/// `Option<R>` (no answer) or `Result` of either (an error is logged and
/// counted), which is posted to the asker:
///
/// ```text
/// #[handler]
/// fn answer(_: WhereAreYou, cx: Context) -> Location {
///     Location { name: cx.node().name().into() }
/// }
/// ```
///
/// A standard type as the message (`String`, `u64`, ...) is a compile
/// error suggesting a newtype: `#[message("kind")] pub struct Name(pub String);`. An async
/// handler's future must be `Send`. Methods (`self`), generic parameters,
/// `impl Trait` parameters, references, other parameter counts and other
/// return types are compile errors, each pointing at the offending tokens.
///
/// # Expansion
///
/// The function stays as written and can still be called directly. Beside
/// it, an entry that every node reads at start; the shape is read from the
/// syntax, and each type is checked where the user wrote it:
///
/// ```text
/// async fn serve(b: Beverage, cx: Context) -> Result<(), MyError> { Ok(()) }
///
/// const _: () = {
///     // `Same<T>`: identity, so that the entry can be generic over `M`
///     // and `M: Message` is checked once, at the `submit!` below.
///     // `IsContext`: implemented for `Context` only, with a message
///     // saying what to write when the second parameter is something else.
///
///     fn __socketscience_call<M>(raw: RawValueRef<'_>, cx: Context) -> Result<Call, String>
///     where M: Message + Same<Beverage>
///     {
///         let message: M = raw.decode()?;
///         Ok(Call::Pending(Box::pin(async move {
///             <Result<(), MyError> as HandlerResult>::into_result(
///                 serve(message.same(), <Context as IsContext>::from(cx)).await,
///             )
///         })))
///     }
///
///     const fn __socketscience_entry<M>(name: &'static str) -> StaticHandler
///     where M: Message + Same<Beverage>
///     {
///         StaticHandler::new(M::KIND, name, __socketscience_call::<M>)
///     }
///
///     inventory::submit! {
///         __socketscience_entry::<Beverage>(concat!(module_path!(), "::", "serve"))
///     }
/// };
/// ```
///
/// A sync handler gives `Call::Ready(..)` instead of `Call::Pending(..)`;
/// a handler without `Context` ignores `cx`.
#[proc_macro_attribute]
pub fn handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    handler::expand(attr.into(), item.into()).into()
}
