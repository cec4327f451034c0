//! The wire format: what goes into the chat (frames, chunks, codecs and the
//! envelope body), read and written.
//!
//! A frame is one envelope in one chat message, readable by SmokeDetector's
//! Python SocketScience:
//!
//! ```text
//! "." "\n" "\x02" DDDD BODY "\x03"
//! ```
//!
//! `DDDD` is four random ASCII digits, `BODY` standard base64 (with padding)
//! of the envelope encoded as a JSON object or a MessagePack map. A frame
//! longer than the transport allows travels as chunks (see
//! `docs/wire-format.md`). The functions here are pure: the node calls them
//! on every chat message, the `socketscience` command and the fuzz target
//! call them too.
//!
//! What is public is what the `socketscience` command uses, for tools that
//! do what it does: read chat text ([`clean`], [`parse_chat_text`],
//! [`decode_base64`], [`decode_body`]) and write frames ([`encode_frame`],
//! [`split_into_chunks`]). Items hidden from the documentation are for the
//! workspace's own tests, benches and fuzz targets, not API: they may change
//! in any release. Most are public only with the `test-util` feature.
//!
//! The format lives here, read and written side by side:
//!
//! - `frame.rs`: the chat text, frames and chunks (and `clean`);
//! - `base64.rs`: the body's base64;
//! - `body.rs`: a body read (its messages and metadata) and the limits;
//!   `json.rs` and `msgpack.rs` read it in each codec (`msgpack_scan.rs`
//!   steps over MessagePack values by their markers), and
//!   `msgpack_write.rs` writes MessagePack as Python reads it;
//! - `write.rs`: a body written (one envelope's entries, the sender's
//!   metadata, a post's body), `batch.rs` several envelopes in one body
//!   and compressed bodies, `signature.rs` where the signature sits;
//! - `control.rs`: the presence and repair lists; `python.rs`: what Python
//!   SocketScience would raise on;
//! - `owned.rs`: owned decoding and encoding, for the `socketscience`
//!   command ([`decode_body`], [`encode_frame`]); `value.rs` the values
//!   they carry ([`Value`]).

use std::fmt;

mod base64;
mod batch;
mod body;
mod control;
mod frame;
mod json;
mod msgpack;
mod msgpack_scan;
mod msgpack_write;
mod owned;
mod python;
mod signature;
mod value;
mod write;

pub use self::base64::decode_base64;
pub(crate) use self::base64::{append_base64, decode_base64_exact};
pub(crate) use self::batch::{assemble_msgpack_batch_into, batch_prefix, grown_size, mergeable};
// Hidden from the documentation, but public whatever the features:
// `Observed::messages` returns it, and `__private` re-exports it for the
// macros' expansions.
#[doc(hidden)]
pub use self::body::RawValueRef;
pub(crate) use self::body::{parse_body_with, recycle, Messages};
pub(crate) use self::control::{read_ranges, read_repairs, write_control_body, Repost, WireRange};
#[cfg(feature = "stackexchange")]
pub(crate) use self::frame::frame_head;
pub(crate) use self::frame::{
    binding_len, chunk_overhead, frame_len, split_into_bound_chunks, write_frame_of, Binding,
    ChunkSigner, CHUNK_TAG_LEN,
};
pub use self::frame::{clean, parse_chat_text, split_into_chunks, ChatText, Chunk};
pub(crate) use self::msgpack_write::write_msgpack;
pub use self::owned::{decode_body, encode_frame, Decoded, FramePayload};
pub(crate) use self::python::python_would_raise;
pub(crate) use self::signature::{append_signature, split_signed, Sign, SIG_LEN};
pub use self::value::Value;
#[cfg(test)]
pub(crate) use self::write::assemble;
pub(crate) use self::write::{
    assemble_into, overhead, own_body, python_size, write_message, Encoded, Kinds, Origin,
};

// Public only with the `test-util` feature, and hidden from the
// documentation: what the workspace's tests, benches and fuzz target build
// and read bodies and frames with. Without it, what the crate itself uses
// of them is `pub(crate)`.
#[cfg(not(feature = "test-util"))]
pub(crate) use self::{
    base64::encode_base64,
    batch::{deflate_body, inflate_body},
    body::{parse_body, BodyLimits, Control, Meta},
    frame::write_frame,
    question_keys::{KEY_ASK, KEY_REPLY_TO},
};
#[cfg(feature = "test-util")]
#[doc(hidden)]
pub use self::{
    base64::encode_base64,
    batch::{deflate_body, inflate_body, COMPRESSED, COMPRESSION_DEFLATE},
    body::{parse_body, Body, BodyLimits, Control, Meta},
    frame::write_frame,
    question_keys::{KEY_ASK, KEY_REPLY_TO},
};

/// What a frame starts with.
pub const FRAME_START: &str = ".\n\u{2}";
/// What a frame ends with.
pub const FRAME_END: char = '\u{3}';
/// What a chunk starts with. It differs from [`FRAME_START`] so that a
/// Python receiver logs "malformed direct message" and moves on.
pub const CHUNK_START: &str = ".\n\u{1}";
/// The single-line form of [`FRAME_START`], for chats whose messages cannot
/// hold a newline (IRC). Python SocketScience does not read it (it logs
/// "malformed direct message"); socketscience receivers read both forms.
pub const FRAME_START_SINGLE_LINE: &str = "\u{2}";
/// The single-line form of [`CHUNK_START`].
pub const CHUNK_START_SINGLE_LINE: &str = "\u{1}";

/// Whether a chat carries multi-line messages: frames then start with
/// `".\n"` (on Stack Exchange chat that lifts the 500-character limit and
/// turns off Markdown); on single-line chats (IRC) they start at `\x02`.
/// Receivers read both forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LineMode {
    /// Frames start with `".\n\x02"`, chunks with `".\n\x01"`.
    #[default]
    Multi,
    /// Frames start with `"\x02"`, chunks with `"\x01"`.
    Single,
}

impl LineMode {
    pub(crate) fn frame_start(self) -> &'static str {
        match self {
            LineMode::Multi => FRAME_START,
            LineMode::Single => FRAME_START_SINGLE_LINE,
        }
    }

    pub(crate) fn chunk_start(self) -> &'static str {
        match self {
            LineMode::Multi => CHUNK_START,
            LineMode::Single => CHUNK_START_SINGLE_LINE,
        }
    }
}

/// Reserved key: the sending instance's name.
pub const KEY_FROM: &str = "_from";
/// Reserved key: the sending process's session id (random per process).
pub const KEY_SESSION: &str = "_sid";
/// Reserved key: the envelope's sequence number within its session (the
/// first one's, for a batch or a merged map).
pub const KEY_SEQ: &str = "_seq";
/// Reserved key: when the sender posted the body, in milliseconds since
/// the Unix epoch (signed bodies only).
pub(crate) const KEY_TIMESTAMP: &str = "_ts";
/// Reserved key: the body's HMAC-SHA256 signature, its last entry.
pub(crate) const KEY_SIGNATURE: &str = "_sig";
/// Reserved key: several envelopes in one body, a list of maps of kinds,
/// numbered from `_seq` on (JSON, and MessagePack where a kind repeats or
/// the body is compressed).
pub const KEY_BATCH: &str = "_batch";
/// Reserved key: how many consecutive envelopes were merged into this map
/// (MessagePack, where no kind repeats).
pub const KEY_COUNT: &str = "_count";
/// Reserved key: a heartbeat, the number of envelopes the sending session
/// has posted so far (see `docs/wire-format.md`, "Presence and repair").
pub(crate) const KEY_HEARTBEAT: &str = "_hb";
/// Reserved key: repair requests, a list of `[instance, session, first,
/// end]` ranges of envelopes the sender of the request is missing.
pub(crate) const KEY_REQUEST: &str = "_rq";
/// Reserved key: ranges that cannot be repaired, `[instance, session,
/// first, end]` each (the history no longer holds them, or the session is
/// gone).
pub(crate) const KEY_UNREPAIRABLE: &str = "_nak";
/// Reserved key: envelopes posted again, a list of `[seq, {kinds}]`.
pub(crate) const KEY_REPAIR: &str = "_rp";
/// Reserved key (failover): the sender's election state, `[term, active,
/// priority, eligible]` (see `docs/wire-format.md`, "Failover").
pub(crate) const KEY_ELECTION: &str = "_el";
/// Reserved key (presence): what the sender says about itself
/// (`NodeBuilder::meta`), any value; in heartbeats, when it changed.
pub(crate) const KEY_PEER_META: &str = "_pv";
/// Reserved key (presence): the kinds the sender handles, a list of
/// strings; in heartbeats, when they changed.
pub(crate) const KEY_PEER_KINDS: &str = "_pk";
/// Reserved key (shared handlers): the kinds the sender takes its share
/// of, a list of strings; in heartbeats, when they changed.
pub(crate) const KEY_SHARED_KINDS: &str = "_ps";
/// Reserved key (shared handlers): how far the sender has dealt with each
/// sender session's shared jobs, `[[session, end], ...]`; in heartbeats.
pub(crate) const KEY_SHARED_CONFIRMED: &str = "_sc";

/// The reserved keys of questions and replies: public (hidden) only with
/// `test-util`, see the re-exports above.
mod question_keys {
    /// Reserved key (questions): the envelope's next entry is a question,
    /// this its id (see `docs/wire-format.md`, "Questions and replies").
    /// Kept in the body's list of messages, in order, in batches too.
    pub const KEY_ASK: &str = "_ask";
    /// Reserved key (questions): the envelope's next entry is a reply to
    /// the question `[asker, id]`.
    pub const KEY_REPLY_TO: &str = "_re";
}

/// How an envelope's body is serialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Codec {
    /// UTF-8 JSON: the default between Rust instances.
    #[default]
    Json,
    /// MessagePack, as Python's `msgpack.dumps(payload)` writes it: needed
    /// to talk to Python SocketScience instances.
    MessagePack,
}

impl Codec {
    /// The codec of a decoded body: JSON if it starts with `{`, else MessagePack.
    pub fn sniff(body: &[u8]) -> Codec {
        if body.first() == Some(&b'{') {
            Codec::Json
        } else {
            Codec::MessagePack
        }
    }

    /// Reads a whole value written in this codec (a presence or repair
    /// entry's value); the error as text.
    pub(crate) fn decode<T: serde::de::DeserializeOwned>(self, raw: &[u8]) -> Result<T, String> {
        match self {
            Codec::Json => serde_json::from_slice(raw).map_err(|e| e.to_string()),
            Codec::MessagePack => rmp_serde::from_slice(raw).map_err(|e| e.to_string()),
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Codec::Json => "json",
            Codec::MessagePack => "msgpack",
        })
    }
}

/// Why chat text or a body could not be read. Never a panic: every input
/// gives either a value or one of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The text is not a frame or a chunk (most chat messages are not).
    #[error("not a frame: it does not start with \".\\n\\x02\" or \".\\n\\x01\"")]
    NotAFrame,
    /// A frame that does not end with `\x03` or lacks its four digits.
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
    /// A chunk whose header cannot be read.
    #[error("malformed chunk: {0}")]
    MalformedChunk(&'static str),
    /// The body is not valid base64.
    #[error("the body is not valid base64: {0}")]
    Base64(String),
    /// The decoded body is not a map of kinds to values.
    #[error("the body is not a valid {codec} map: {reason}")]
    Body {
        /// The codec the body was read as.
        codec: Codec,
        /// What the parser said.
        reason: String,
    },
    /// A compressed body that cannot be inflated (unknown method, broken
    /// data, or compressed twice).
    #[error("the compressed body cannot be inflated: {0}")]
    Compressed(&'static str),
    /// Over a configured limit.
    #[error("{what} is {size}, over the limit of {max}")]
    TooLarge {
        /// What was measured.
        what: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
}
