//! The attributes of [socketscience](https://docs.rs/socketscience):
//! `#[message("kind")]` and `#[handler]`. Use them through that crate
//! (`use socketscience::{message, handler};`); their expansions name it.

mod handler;
mod message;

use proc_macro::TokenStream;

/// Makes a struct or enum a message of kind `"kind"`.
///
/// ```ignore
/// #[message("ping")]
/// #[derive(Debug, Clone)]
/// pub struct Ping { pub location: String, pub timestamp: f64 }
/// ```
///
/// Put it above the type's other attributes. It takes one argument, the
/// kind: a non-empty string literal not starting with `_` (those keys are
/// reserved for socketscience's metadata). It accepts structs (named,
/// newtype, tuple, unit) and enums without generic parameters;
/// `#[serde(...)]` attributes on the type and its fields keep working.
///
/// It expands to the item with `#[derive(Serialize, Deserialize)]` (through
/// socketscience's own serde, so no serde dependency is needed), plus:
///
/// ```ignore
/// impl socketscience::Message for Ping { const KIND: &'static str = "ping"; }
/// impl Ping {
///     /// Sends this message to every instance through the default node.
///     pub fn broadcast(self) -> socketscience::Result<()> { .. }
/// }
/// // and a record of (kind, type) through `inventory`, so that a node
/// // refuses to start when two types claim one kind.
/// ```
#[proc_macro_attribute]
pub fn message(attr: TokenStream, item: TokenStream) -> TokenStream {
    message::expand(attr.into(), item.into()).into()
}

/// Registers a free function as the handler of its first parameter's
/// message kind, in every node of the process.
///
/// ```ignore
/// #[handler]
/// fn log_ping(ping: Ping) { /* ... */ }
///
/// #[handler]
/// async fn serve(b: Beverage, cx: Context) -> Result<(), MyError> { Ok(()) }
/// ```
///
/// Allowed shapes: `(M)` or `(M, Context)`, `fn` or `async fn`, returning
/// `()` or `Result<(), E>` where `E: Display`. It takes no arguments. The
/// function stays as written and can still be called directly; the
/// attribute adds, through `inventory`, an entry that every node reads at
/// start:
///
/// ```ignore
/// inventory::submit! {
///     StaticHandler::new(<Ping as Message>::KIND, "my_bot::log_ping", |raw, cx| call(&log_ping, raw, cx))
/// }
/// ```
#[proc_macro_attribute]
pub fn handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    handler::expand(attr.into(), item.into()).into()
}
