//! The send path: the envelopes waiting in the node's outbox (`core/`)
//! taken by the transport, grouped into posts, framed and chunked
//! (`post.rs`; presence and repair bodies are written by
//! `wire::write_control_body`), and kept to be posted again when asked
//! (`repair::History`).

mod post;

pub(crate) use post::Poster;
