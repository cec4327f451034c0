//! The send path: a message written into an envelope (`envelope.rs`),
//! queued in the node's outbox (`outbox.rs`), then taken by the transport,
//! grouped into posts, framed and chunked (`post.rs`), and kept to be
//! posted again when asked (`history.rs`).

pub(crate) mod control;
pub(crate) mod envelope;
mod history;
pub(crate) mod outbox;
mod post;

pub(crate) use history::History;
pub(crate) use post::Poster;
