//! Message types: the [`Message`] trait and the record of every type the
//! program declares.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

/// A type that travels between instances under one kind.
///
/// Implemented by `#[message("kind")]`; there is no need to implement it by
/// hand. The kind is the key of the message in the envelope map, and what
/// Python SocketScience registers callbacks for.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a socketscience message",
    label = "not a message type",
    note = "add `#[message(\"kind\")]` above the definition of `{Self}`; a type of another crate (`String`, `u64`, ...) cannot take it: wrap it in a newtype, `#[message(\"kind\")] pub struct Name(pub {Self});`"
)]
pub trait Message: Serialize + DeserializeOwned + Send + 'static {
    /// The wire key of this message type, such as `"ping"`.
    const KIND: &'static str;
}

/// A message type the program declares, recorded by `#[message]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageType {
    /// The kind, such as `"ping"`.
    pub kind: &'static str,
    /// The Rust type's path, such as `"my_bot::Ping"`.
    pub rust_type: &'static str,
}

impl MessageType {
    #[doc(hidden)]
    pub const fn new(kind: &'static str, rust_type: &'static str) -> Self {
        MessageType { kind, rust_type }
    }
}

inventory::collect!(MessageType);

/// Every message type declared with `#[message]` in this program, sorted by
/// kind.
///
/// ```
/// # use socketscience::message;
/// #[message("ping")]
/// pub struct Ping { pub location: String, pub timestamp: f64 }
///
/// assert!(socketscience::handlers::message_types().iter().any(|t| t.kind == "ping"));
/// ```
pub fn message_types() -> Vec<MessageType> {
    let mut types: Vec<MessageType> = inventory::iter::<MessageType>
        .into_iter()
        .copied()
        .collect();
    types.sort_by(|a, b| (a.kind, a.rust_type).cmp(&(b.kind, b.rust_type)));
    types
}

/// Checks that no two types claim one kind; gives the kinds and their types.
pub(crate) fn check_kinds() -> Result<BTreeMap<&'static str, &'static str>> {
    let mut kinds = BTreeMap::new();
    for t in message_types() {
        if let Some(first) = kinds.insert(t.kind, t.rust_type) {
            return Err(Error::DuplicateKind {
                kind: t.kind.to_owned(),
                first: first.to_owned(),
                second: t.rust_type.to_owned(),
            });
        }
    }
    Ok(kinds)
}
