//! The send path: a message written into an envelope (`envelope.rs`),
//! queued in the node's outbox (`outbox.rs`), then taken by the transport,
//! grouped into posts, framed and chunked (`post.rs`).

pub(crate) mod envelope;
pub(crate) mod outbox;
mod post;

pub(crate) use post::Poster;
