//! The send path: a message written into an envelope (`envelope.rs`),
//! queued in the node's outbox (`outbox.rs`), then taken by the transport,
//! grouped into posts, framed and chunked (`post.rs`; presence and repair
//! bodies are written by `wire::write_control_body`), and kept to be
//! posted again when asked (`history.rs`). `bus.rs` holds what the node's
//! tasks share, the outbox among it.

mod bus;
pub(crate) mod envelope;
mod history;
pub(crate) mod outbox;
mod post;

pub(crate) use bus::Bus;
pub(crate) use history::History;
pub(crate) use post::Poster;
