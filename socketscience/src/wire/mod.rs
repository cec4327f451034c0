//! What goes into the chat: frames, chunks, codecs and the envelope body.
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

use std::borrow::Cow;
use std::fmt;

use base64_simd::STANDARD as BASE64;
use serde::de::{self, DeserializeOwned, IgnoredAny, MapAccess, Visitor};
use serde::Deserializer as _;
use serde_json::value::RawValue;

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
pub enum Lines {
    /// Frames start with `".\n\x02"`, chunks with `".\n\x01"`.
    #[default]
    Multi,
    /// Frames start with `"\x02"`, chunks with `"\x01"`.
    Single,
}

impl Lines {
    pub(crate) fn frame_start(self) -> &'static str {
        match self {
            Lines::Multi => FRAME_START,
            Lines::Single => FRAME_START_SINGLE_LINE,
        }
    }

    fn chunk_start(self) -> &'static str {
        match self {
            Lines::Multi => CHUNK_START,
            Lines::Single => CHUNK_START_SINGLE_LINE,
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
pub const KEY_TIMESTAMP: &str = "_ts";
/// Reserved key: the body's HMAC-SHA256 signature, its last entry.
pub const KEY_SIGNATURE: &str = "_sig";
/// Reserved key: several envelopes in one body, a list of maps of kinds,
/// numbered from `_seq` on (JSON, and MessagePack where a kind repeats or
/// the body is compressed).
pub const KEY_BATCH: &str = "_batch";
/// Reserved key: how many consecutive envelopes were merged into this map
/// (MessagePack, where no kind repeats).
pub const KEY_COUNT: &str = "_count";
/// Reserved key: a heartbeat, the number of envelopes the sending session
/// has posted so far (see `docs/wire-format.md`, "Presence and repair").
pub const KEY_HEARTBEAT: &str = "_hb";
/// Reserved key: repair requests, a list of `[instance, session, first,
/// end]` ranges of envelopes the sender of the request is missing.
pub const KEY_REQUEST: &str = "_rq";
/// Reserved key: ranges that cannot be repaired, `[instance, session,
/// first, end]` each (the history no longer holds them, or the session is
/// gone).
pub const KEY_UNREPAIRABLE: &str = "_nak";
/// Reserved key: envelopes posted again, a list of `[seq, {kinds}]`.
pub const KEY_REPAIR: &str = "_rp";
/// Reserved key (failover): the sender's election state, `[term, active,
/// priority, eligible]` (see `docs/wire-format.md`, "Failover").
pub const KEY_ELECTION: &str = "_el";
/// Reserved key (questions): the envelope's next entry is a question, this
/// its id (see `docs/wire-format.md`, "Questions and replies"). Kept in
/// the body's list of messages, in order, in batches too.
pub const KEY_ASK: &str = "_ask";
/// Reserved key (questions): the envelope's next entry is a reply to the
/// question `[asker, id]`.
pub const KEY_REPLY_TO: &str = "_re";

/// The first byte of a compressed body (0xc1: never used in MessagePack, and
/// not the `{` of JSON). The next byte names the method
/// ([`COMPRESSION_DEFLATE`]); the rest is the compressed ordinary body.
pub const COMPRESSED: u8 = 0xc1;
/// The compression method of a compressed body: raw DEFLATE (RFC 1951).
pub const COMPRESSION_DEFLATE: u8 = 0x01;

/// Inflates a compressed body (one that starts with [`COMPRESSED`]) into
/// `out` (cleared first), refusing to write more than `max` bytes: the
/// inflated body is bounded before it is made. Gives `Ok(false)`, leaving
/// `out` alone, for a body that is not compressed.
///
/// ```
/// use socketscience::wire::{inflate_body, WireError};
///
/// let mut out = Vec::new();
/// // Not compressed: read as it is.
/// assert_eq!(inflate_body(b"{}", 1024, &mut out), Ok(false));
/// // 0xc1 0x01, then raw DEFLATE of `{"a":1}` (stored block).
/// let body = [0xc1, 0x01, 0x01, 0x07, 0x00, 0xf8, 0xff, b'{', b'"', b'a', b'"', b':', b'1', b'}'];
/// assert_eq!(inflate_body(&body, 1024, &mut out), Ok(true));
/// assert_eq!(out, br#"{"a":1}"#);
/// assert!(matches!(inflate_body(&body, 6, &mut out), Err(WireError::TooLarge { .. })));
/// ```
#[inline]
pub fn inflate_body(body: &[u8], max: usize, out: &mut Vec<u8>) -> Result<bool, WireError> {
    let [COMPRESSED, method, data @ ..] = body else {
        return match body {
            [COMPRESSED] => Err(WireError::Compressed("no compression method")),
            _ => Ok(false),
        };
    };
    if *method != COMPRESSION_DEFLATE {
        return Err(WireError::Compressed("an unknown compression method"));
    }
    inflate_deflate(data, max, out)?;
    if out.first() == Some(&COMPRESSED) {
        return Err(WireError::Compressed(
            "a compressed body inside a compressed body",
        ));
    }
    Ok(true)
}

#[cold]
#[inline(never)]
fn inflate_deflate(data: &[u8], max: usize, out: &mut Vec<u8>) -> Result<(), WireError> {
    use miniz_oxide::inflate::{decompress_to_vec_with_limit, TINFLStatus};
    match decompress_to_vec_with_limit(data, max) {
        Ok(inflated) => {
            *out = inflated;
            Ok(())
        }
        Err(e) if e.status == TINFLStatus::HasMoreOutput => Err(WireError::TooLarge {
            what: "the inflated body",
            size: max.saturating_add(1),
            max,
        }),
        Err(_) => Err(WireError::Compressed("the DEFLATE data is broken")),
    }
}

/// Compresses `body` into `out` (cleared first) as a compressed body:
/// [`COMPRESSED`], [`COMPRESSION_DEFLATE`], then raw DEFLATE.
pub fn deflate_body(body: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.push(COMPRESSED);
    out.push(COMPRESSION_DEFLATE);
    out.extend_from_slice(&miniz_oxide::deflate::compress_to_vec(body, DEFLATE_LEVEL));
}

/// miniz's level: 9 gains about 1 % over 6 on a post of pings, at twice the
/// time; posts are compressed only when the chat throttles them.
const DEFLATE_LEVEL: u8 = 6;

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

/// Removes the zero-width characters Stack Exchange chat inserts (U+200B,
/// U+200C) and trims surrounding whitespace. Borrows when there is nothing
/// to remove.
pub fn clean(text: &str) -> Cow<'_, str> {
    // A frame starts and ends with ASCII that is not whitespace: no need
    // to decode characters at either end to know there is nothing to trim.
    // (`char::is_whitespace` also counts the vertical tab, `u8`'s does not.)
    let solid =
        |b: Option<&u8>| b.is_some_and(|&b| b.is_ascii() && !b.is_ascii_whitespace() && b != 0x0b);
    let bytes = text.as_bytes();
    let trimmed = if solid(bytes.first()) && solid(bytes.last()) {
        text
    } else {
        text.trim()
    };
    // Both characters start with the byte 0xE2 in UTF-8: scan bytes first.
    if memchr::memchr(0xE2, trimmed.as_bytes()).is_some()
        && trimmed.contains(['\u{200B}', '\u{200C}'])
    {
        let stripped: String = trimmed
            .chars()
            .filter(|c| !matches!(c, '\u{200B}' | '\u{200C}'))
            .collect();
        Cow::Owned(stripped.trim().to_owned())
    } else {
        Cow::Borrowed(trimmed)
    }
}

/// One chat message, read as the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatText<'a> {
    /// A whole envelope: its base64 body.
    Frame {
        /// The base64 text between the digits and `\x03`.
        body: &'a str,
    },
    /// One piece of an envelope that did not fit one chat message.
    Chunk(Chunk<'a>),
}

/// A piece of a frame's base64 body (see `docs/wire-format.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk<'a> {
    /// Random id shared by all chunks of one frame (8 hex digits).
    pub id: u32,
    /// 1-based position of this piece.
    pub index: u32,
    /// How many pieces make the frame.
    pub total: u32,
    /// This piece of the base64 body.
    pub piece: &'a str,
}

/// Reads cleaned chat text (see [`clean`]) as a frame or a chunk.
pub fn parse_chat_text(text: &str) -> Result<ChatText<'_>, WireError> {
    if let Some(rest) = text
        .strip_prefix(FRAME_START)
        .or_else(|| text.strip_prefix(FRAME_START_SINGLE_LINE))
    {
        let rest = rest
            .strip_suffix(FRAME_END)
            .ok_or(WireError::Malformed("it does not end with \\x03"))?;
        let digits = rest
            .get(..4)
            .ok_or(WireError::Malformed("it is too short"))?;
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(WireError::Malformed(
                "the four digits after \\x02 are missing",
            ));
        }
        Ok(ChatText::Frame { body: &rest[4..] })
    } else if let Some(rest) = text
        .strip_prefix(CHUNK_START)
        .or_else(|| text.strip_prefix(CHUNK_START_SINGLE_LINE))
    {
        parse_chunk(rest).map(ChatText::Chunk)
    } else {
        Err(WireError::NotAFrame)
    }
}

/// `IIIIIIII NNNN/TTTT PIECE`, after [`CHUNK_START`].
fn parse_chunk(rest: &str) -> Result<Chunk<'_>, WireError> {
    let bad = WireError::MalformedChunk;
    let (id, rest) = rest.split_once(' ').ok_or(bad("no id"))?;
    let (position, piece) = rest.split_once(' ').ok_or(bad("no position"))?;
    let (index, total) = position.split_once('/').ok_or(bad("no `/` in position"))?;
    let hex = |s: &str| {
        if s.len() == 8 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            u32::from_str_radix(s, 16).ok()
        } else {
            None
        }
    };
    let dec = |s: &str| {
        if !s.is_empty() && s.len() <= 6 && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse::<u32>().ok()
        } else {
            None
        }
    };
    let id = hex(id).ok_or(bad("the id is not 8 hex digits"))?;
    let index = dec(index).ok_or(bad("the index is not a number"))?;
    let total = dec(total).ok_or(bad("the total is not a number"))?;
    if index == 0 || index > total || total < 2 {
        return Err(bad("the position is out of range"));
    }
    if piece.is_empty() {
        return Err(bad("the piece is empty"));
    }
    Ok(Chunk {
        id,
        index,
        total,
        piece,
    })
}

/// Writes a frame around a base64 body.
pub fn write_frame(out: &mut String, lines: Lines, digits: u16, body_b64: &str) {
    out.reserve(FRAME_START.len() + 4 + body_b64.len() + 1);
    out.push_str(lines.frame_start());
    push_digits(out, digits);
    out.push_str(body_b64);
    out.push(FRAME_END);
}

/// Writes `digits % 10 000` as four ASCII digits.
fn push_digits(out: &mut String, digits: u16) {
    let d = digits % 10_000;
    for div in [1_000, 100, 10, 1] {
        out.push(char::from(b'0' + (d / div % 10) as u8));
    }
}

/// The length of the frame [`write_frame_of`] writes around `body_len`
/// bytes.
pub(crate) fn frame_len(lines: Lines, body_len: usize) -> usize {
    lines.frame_start().len() + 4 + body_len.div_ceil(3) * 4 + 1
}

/// Writes a frame around `body`, base64-encoding it in place.
pub fn write_frame_of(out: &mut String, lines: Lines, digits: u16, body: &[u8]) {
    out.reserve(frame_len(lines, body.len()));
    out.push_str(lines.frame_start());
    push_digits(out, digits);
    BASE64.encode_append(body, out);
    out.push(FRAME_END);
}

/// Writes one chunk.
pub fn write_chunk(out: &mut String, lines: Lines, id: u32, index: u32, total: u32, piece: &str) {
    use fmt::Write as _;
    out.push_str(lines.chunk_start());
    let _ = write!(out, "{id:08x} {index}/{total} ");
    out.push_str(piece);
}

/// The longest chunk header for `total` pieces, to size the pieces.
pub fn chunk_overhead(lines: Lines, total: u32) -> usize {
    let digits = total.to_string().len();
    lines.chunk_start().len() + 8 + 1 + digits + 1 + digits + 1
}

/// Splits a base64 body into chunk texts of at most `max_len` bytes each.
/// Returns `None` when `max_len` is too small to carry any piece.
pub fn split_into_chunks(
    lines: Lines,
    id: u32,
    body_b64: &str,
    max_len: usize,
) -> Option<Vec<String>> {
    // The header grows with the number of pieces; find the smallest count
    // whose pieces fit.
    let mut total: u32 = 2;
    loop {
        let room = max_len.checked_sub(chunk_overhead(lines, total))?;
        if room == 0 {
            return None;
        }
        let needed = body_b64.len().div_ceil(room);
        if needed as u64 <= u64::from(total) {
            let total = needed.max(2) as u32;
            let room = body_b64.len().div_ceil(total as usize);
            // base64 is ASCII, so any byte offset is a char boundary.
            let chunks = body_b64
                .as_bytes()
                .chunks(room.max(1))
                .enumerate()
                .map(|(i, piece)| {
                    let mut out = String::with_capacity(max_len);
                    let piece = std::str::from_utf8(piece).unwrap_or_default();
                    write_chunk(&mut out, lines, id, i as u32 + 1, total, piece);
                    out
                })
                .collect::<Vec<_>>();
            return Some(chunks);
        }
        total = u32::try_from(needed).ok()?;
    }
}

/// Decodes a base64 body into `out` (cleared first).
pub fn decode_base64(body_b64: &str, out: &mut Vec<u8>) -> Result<(), WireError> {
    out.clear();
    BASE64
        .decode_append(body_b64, out)
        .map_err(|e| WireError::Base64(e.to_string()))
}

/// Decodes base64 that must give exactly `N` bytes.
pub(crate) fn decode_base64_exact<const N: usize>(b64: &[u8]) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    // `decode` needs room for what the text gives: check its length first.
    if BASE64.decoded_length(b64).ok()? != N {
        return None;
    }
    BASE64
        .decode(b64, base64_simd::Out::from_slice(&mut out))
        .ok()?;
    Some(out)
}

/// Appends the base64 of `body` to `out`.
pub fn encode_base64<T: base64_simd::AppendBase64Encode>(body: &[u8], out: &mut T) {
    BASE64.encode_append(body, out);
}

/// One message's value inside a decoded body, still in its codec's bytes.
#[derive(Debug, Clone, Copy)]
pub enum RawValueRef<'a> {
    /// A JSON value.
    Json(&'a RawValue),
    /// A MessagePack value.
    MessagePack(&'a [u8]),
}

impl<'a> RawValueRef<'a> {
    /// Deserialises the value into `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, String> {
        match self {
            RawValueRef::Json(raw) => serde_json::from_str(raw.get()).map_err(|e| e.to_string()),
            RawValueRef::MessagePack(bytes) => {
                rmp_serde::from_slice(bytes).map_err(|e| e.to_string())
            }
        }
    }

    /// The value as a `serde_json::Value`, for display.
    pub fn to_json(&self) -> Result<serde_json::Value, String> {
        self.decode()
    }
}

/// The reserved metadata of a body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta<'a> {
    /// `_from`: the sending instance's name.
    pub from: Option<Cow<'a, str>>,
    /// `_sid`: the sending process's session.
    pub session: Option<u64>,
    /// `_seq`: the envelope's sequence number in that session (the first
    /// one's when the body holds several).
    pub seq: Option<u64>,
    /// How many consecutive envelopes the body holds, when more than one
    /// (`_count`, or the length of `_batch`).
    pub count: Option<u64>,
    /// `_ts`: when the body was posted, in milliseconds since the Unix epoch.
    pub timestamp: Option<u64>,
    /// `_hb`, `_rq`, `_nak`, `_rp`: presence and repair traffic, when the
    /// body carries any (boxed: most bodies carry none, and the metadata
    /// stays small to move).
    pub control: Option<Box<Control<'a>>>,
}

/// The presence and repair traffic of a body: a heartbeat, and lists still
/// in the body's codec (read by the node only when present).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Control<'a> {
    /// `_hb`: a heartbeat, how many envelopes the session has posted.
    pub heartbeat: Option<u64>,
    /// `_rq`: ranges asked for.
    pub requests: Option<&'a [u8]>,
    /// `_nak`: ranges that cannot be repaired.
    pub unrepairable: Option<&'a [u8]>,
    /// `_rp`: envelopes posted again.
    pub repairs: Option<&'a [u8]>,
    /// `_el`: the sender's election state (failover), still in the codec.
    pub election: Option<&'a [u8]>,
}

/// A decoded body: its messages in order, and its metadata.
#[derive(Debug, Clone)]
pub struct Body<'a> {
    /// The codec it was written in.
    pub codec: Codec,
    /// The reserved metadata.
    pub meta: Meta<'a>,
    /// The messages, kind and value, in the order they were written.
    pub messages: Vec<(Cow<'a, str>, RawValueRef<'a>)>,
}

/// Limits applied while reading a body.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Most kinds one envelope may carry.
    pub max_kinds: usize,
    /// Deepest nesting of maps and lists.
    pub max_depth: usize,
}

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits {
            max_kinds: 64,
            max_depth: 32,
        }
    }
}

/// Reads a decoded body: a JSON object if it starts with `{`, else a
/// MessagePack map. Values are borrowed from `body`, not parsed.
pub fn parse_body(body: &[u8], limits: BodyLimits) -> Result<Body<'_>, WireError> {
    let mut messages = Vec::new();
    let meta = parse_body_with(body, limits, &mut messages, |_| None)?;
    Ok(Body {
        codec: Codec::sniff(body),
        meta,
        messages,
    })
}

/// The messages of a [`Body`], kind and value.
pub(crate) type Messages<'a> = Vec<(Cow<'a, str>, RawValueRef<'a>)>;

/// [`parse_body`], its messages pushed onto `messages` (empty), which the
/// receive path recycles from body to body (see [`recycle`]) rather than
/// allocating one each; gives the metadata. `known` gives the kind a
/// MessagePack key spells when it is one the node handles (no UTF-8 check
/// needed then).
pub(crate) fn parse_body_with<'a>(
    body: &'a [u8],
    limits: BodyLimits,
    messages: &mut Messages<'a>,
    known: impl Fn(&[u8]) -> Option<&'static str>,
) -> Result<Meta<'a>, WireError> {
    let codec = Codec::sniff(body);
    match codec {
        Codec::Json => parse_json_body(body, limits, messages),
        Codec::MessagePack => parse_msgpack_body(body, limits, messages, known),
    }
    .map_err(|reason| match reason {
        BodyError::Limit(e) => e,
        BodyError::Other(reason) => WireError::Body { codec, reason },
    })
}

enum BodyError {
    Limit(WireError),
    Other(String),
}

impl From<&str> for BodyError {
    #[cold]
    #[inline(never)]
    fn from(s: &str) -> Self {
        BodyError::Other(s.to_owned())
    }
}

impl From<String> for BodyError {
    #[cold]
    #[inline(never)]
    fn from(s: String) -> Self {
        BodyError::Other(s)
    }
}

/// A map key that borrows when it can.
struct Key<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// Checks nesting depth of a JSON value without building it.
fn json_depth_ok(raw: &str, max_depth: usize) -> bool {
    // Each level takes an opening and a closing bracket.
    if raw.len() <= max_depth.saturating_mul(2) {
        return true;
    }
    // Strings may contain brackets; skip them.
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for b in raw.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max_depth {
                    return false;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

/// Most envelopes one JSON batch may hold.
const MAX_BATCH: usize = 4_096;

/// What one pass over a JSON body collects. Batch items push their
/// messages straight into `messages`: the body is read once.
struct JsonBody<'m, 'de> {
    limits: BodyLimits,
    meta: Meta<'de>,
    messages: &'m mut Messages<'de>,
    batch: Option<u64>,
    top_level_kinds: bool,
    over: Option<WireError>,
}

impl<'de> JsonBody<'_, 'de> {
    fn over(&mut self, what: &'static str, size: usize, max: usize) {
        self.over
            .get_or_insert(WireError::TooLarge { what, size, max });
    }

    /// Reads a map's entries: metadata at the top level only, kinds always.
    fn visit_entries<A: MapAccess<'de>>(&mut self, map: &mut A, top: bool) -> Result<(), A::Error> {
        let mut kinds = 0;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if self.over.is_some() {
                // Over a limit: read past the rest without keeping it.
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            match (&*key, top) {
                (KEY_FROM, true) => self.meta.from = Some(map.next_value::<Key<'de>>()?.0),
                (KEY_SESSION, true) => self.meta.session = Some(map.next_value()?),
                (KEY_SEQ, true) => self.meta.seq = Some(map.next_value()?),
                (KEY_COUNT, true) => self.meta.count = Some(map.next_value()?),
                (KEY_TIMESTAMP, true) => self.meta.timestamp = Some(map.next_value()?),
                (KEY_HEARTBEAT, true) => {
                    let control = self.meta.control.get_or_insert_with(Default::default);
                    control.heartbeat = Some(map.next_value()?);
                }
                (KEY_REQUEST | KEY_UNREPAIRABLE | KEY_REPAIR | KEY_ELECTION, true) => {
                    let raw = map.next_value::<&'de RawValue>()?.get().as_bytes();
                    let control = self.meta.control.get_or_insert_with(Default::default);
                    *match &*key {
                        KEY_REQUEST => &mut control.requests,
                        KEY_UNREPAIRABLE => &mut control.unrepairable,
                        KEY_ELECTION => &mut control.election,
                        _ => &mut control.repairs,
                    } = Some(raw);
                }
                (KEY_BATCH, true) => {
                    let n = map.next_value_seed(BatchSeed(self))?;
                    self.batch = Some(n);
                }
                (k, _) if k.starts_with('_') => {
                    if k == KEY_ASK || k == KEY_REPLY_TO {
                        // Questions: kept in order with the kinds (the next
                        // one is the question or the reply).
                        let raw: &'de RawValue = map.next_value()?;
                        let kind = if k == KEY_ASK { KEY_ASK } else { KEY_REPLY_TO };
                        self.messages
                            .push((Cow::Borrowed(kind), RawValueRef::Json(raw)));
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                _ => {
                    let raw: &'de RawValue = map.next_value()?;
                    kinds += 1;
                    self.top_level_kinds |= top;
                    let limits = self.limits;
                    if kinds > limits.max_kinds {
                        self.over("the number of kinds", kinds, limits.max_kinds);
                    } else if !json_depth_ok(raw.get(), limits.max_depth) {
                        self.over("the nesting depth", limits.max_depth + 1, limits.max_depth);
                    } else {
                        self.messages.push((key, RawValueRef::Json(raw)));
                    }
                }
            }
        }
        Ok(())
    }
}

/// The top-level map.
impl<'de> Visitor<'de> for &mut JsonBody<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of message kinds to values")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.visit_entries(&mut map, true)
    }
}

/// `_batch`: a list of maps of kinds; gives its length.
struct BatchSeed<'a, 'm, 'de>(&'a mut JsonBody<'m, 'de>);

impl<'de> de::DeserializeSeed<'de> for BatchSeed<'_, '_, 'de> {
    type Value = u64;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for BatchSeed<'_, '_, 'de> {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of maps of message kinds to values")
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<u64, A::Error> {
        let mut n = 0u64;
        while seq.next_element_seed(ItemSeed(&mut *self.0))?.is_some() {
            n += 1;
            if n > MAX_BATCH as u64 {
                self.0
                    .over("the number of envelopes in a batch", n as usize, MAX_BATCH);
            }
        }
        Ok(n)
    }
}

/// One envelope of a batch: a map of kinds, no metadata.
struct ItemSeed<'a, 'm, 'de>(&'a mut JsonBody<'m, 'de>);

impl<'de> de::DeserializeSeed<'de> for ItemSeed<'_, '_, 'de> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ItemSeed<'_, '_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of message kinds to values")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.0.visit_entries(&mut map, false)
    }
}

fn parse_json_body<'a>(
    body: &'a [u8],
    limits: BodyLimits,
    messages: &mut Messages<'a>,
) -> Result<Meta<'a>, BodyError> {
    let mut parsed = JsonBody {
        limits,
        meta: Meta::default(),
        messages,
        batch: None,
        top_level_kinds: false,
        over: None,
    };
    // One UTF-8 check of the whole body (std's, fast on ASCII) instead of
    // one per string.
    let text = std::str::from_utf8(body).map_err(|e| e.to_string())?;
    let mut de = serde_json::Deserializer::from_str(text);
    de.deserialize_map(&mut parsed)
        .and_then(|()| de.end())
        .map_err(|e| e.to_string())?;
    if let Some(e) = parsed.over {
        return Err(BodyError::Limit(e));
    }
    let mut meta = parsed.meta;
    if let Some(n) = parsed.batch {
        if parsed.top_level_kinds || meta.count.is_some() {
            return Err("a batch carries its kinds in `_batch` only"
                .to_owned()
                .into());
        }
        if n == 0 {
            return Err("an empty `_batch`".to_owned().into());
        }
        meta.count = Some(n);
    }
    check_count(&meta)?;
    Ok(meta)
}

/// A count must be at least 1 and come with a sequence number.
fn check_count(meta: &Meta<'_>) -> Result<(), BodyError> {
    match (meta.count, meta.seq) {
        (Some(0), _) => Err("`_count` is 0".to_owned().into()),
        (Some(n), _) if n > MAX_BATCH as u64 => Err(BodyError::Limit(WireError::TooLarge {
            what: "the number of envelopes in one body",
            size: usize::try_from(n).unwrap_or(usize::MAX),
            max: MAX_BATCH,
        })),
        (Some(_), None) => Err("`_count` without `_seq`".to_owned().into()),
        (Some(n), Some(seq)) if seq.checked_add(n).is_none() => {
            Err("`_seq` + `_count` overflows".to_owned().into())
        }
        _ => Ok(()),
    }
}

#[inline]
fn parse_msgpack_body<'a>(
    body: &'a [u8],
    limits: BodyLimits,
    messages: &mut Messages<'a>,
    known: impl Fn(&[u8]) -> Option<&'static str>,
) -> Result<Meta<'a>, BodyError> {
    let mut rest = body;
    let len = rmp::decode::read_map_len(&mut rest).map_err(not_a_map)?;
    let len = len as usize;
    // The metadata is kept in locals (registers) and the body built once at
    // the end: a `Meta` filled field by field and then moved costs a
    // store-to-load stall per move (seen with `perf annotate`).
    let mut from = None;
    let (mut session, mut seq, mut count, mut timestamp) = (None, None, None, None);
    let mut control = None;
    // `_batch`: how many envelopes; whether kinds stand beside it.
    let (mut batch, mut top_kinds) = (None, false);
    // Sized for the usual body (a kind or a few, and the metadata), not
    // for what the sender claims.
    messages.reserve(len.min(8));
    for _ in 0..len {
        // Keys are compared as bytes: only a kind not handled here is
        // checked for UTF-8.
        let (key, after) = msgpack_str(rest).ok_or("expected a string key")?;
        rest = after;
        if let [b'_', ..] = key {
            // Metadata is read in place; other reserved keys are skipped.
            // (Literal patterns compile to a length switch and integer
            // compares; the constants they spell are checked in the tests.)
            match key {
                b"_from" => {
                    let (name, after) = msgpack_str(rest).ok_or("`_from` is not a string")?;
                    from = Some(std::str::from_utf8(name).map_err(|_| "`_from` is not UTF-8")?);
                    rest = after;
                }
                b"_sid" => session = Some(meta_uint(&mut rest, KEY_SESSION)?),
                b"_seq" => seq = Some(meta_uint(&mut rest, KEY_SEQ)?),
                b"_count" => count = Some(meta_uint(&mut rest, KEY_COUNT)?),
                b"_ts" => timestamp = Some(meta_uint(&mut rest, KEY_TIMESTAMP)?),
                b"_batch" if batch.is_none() => {
                    batch = Some(msgpack_batch(&mut rest, limits, messages, &known)?);
                }
                b"_ask" | b"_re" => {
                    // Questions: kept in order with the kinds.
                    let (value, after) = split_msgpack_value(rest, limits.max_depth)?;
                    rest = after;
                    let kind = if key == b"_ask" {
                        KEY_ASK
                    } else {
                        KEY_REPLY_TO
                    };
                    messages.push((Cow::Borrowed(kind), RawValueRef::MessagePack(value)));
                }
                _ => reserved_entry(&mut control, key, &mut rest, limits)?,
            }
            continue;
        }
        let (value, after) = split_msgpack_value(rest, limits.max_depth)?;
        rest = after;
        // (A batch's messages count here too: a body with both is refused
        // below anyway.)
        if messages.len() == limits.max_kinds {
            return Err(BodyError::Limit(WireError::TooLarge {
                what: "the number of kinds",
                size: messages.len() + 1,
                max: limits.max_kinds,
            }));
        }
        let kind = match known(key) {
            Some(kind) => kind,
            None => std::str::from_utf8(key).map_err(|_| "a key is not UTF-8")?,
        };
        messages.push((Cow::Borrowed(kind), RawValueRef::MessagePack(value)));
        top_kinds = true;
    }
    if !rest.is_empty() {
        return Err(trailing(rest.len()));
    }
    if let Some(n) = batch {
        count = Some(batch_count(n, top_kinds || count.is_some())?);
    }
    let meta = Meta {
        from: from.map(Cow::Borrowed),
        session,
        seq,
        count,
        timestamp,
        control,
    };
    check_count(&meta)?;
    Ok(meta)
}

/// A batch's envelope count, checked: not empty, not beside kinds or a
/// `_count`.
#[cold]
#[inline(never)]
fn batch_count(n: u64, beside: bool) -> Result<u64, BodyError> {
    if beside {
        return Err("a batch carries its kinds in `_batch` only".into());
    }
    if n == 0 {
        return Err("an empty `_batch`".into());
    }
    Ok(n)
}

/// Reads a MessagePack `_batch`: a list of maps of kinds (reserved keys in
/// them skipped, but for `_ask` and `_re`, kept like kinds), their messages
/// pushed onto `messages`; gives its length.
#[inline(never)]
fn msgpack_batch<'a>(
    rest: &mut &'a [u8],
    limits: BodyLimits,
    messages: &mut Messages<'a>,
    known: &impl Fn(&[u8]) -> Option<&'static str>,
) -> Result<u64, BodyError> {
    let n = rmp::decode::read_array_len(rest).map_err(|_| "`_batch` is not a list")? as usize;
    if n > MAX_BATCH {
        return Err(BodyError::Limit(WireError::TooLarge {
            what: "the number of envelopes in a batch",
            size: n,
            max: MAX_BATCH,
        }));
    }
    for _ in 0..n {
        let len = rmp::decode::read_map_len(rest).map_err(|_| "a batch item is not a map")?;
        let mut kinds = 0usize;
        for _ in 0..len {
            let (key, after) = msgpack_str(rest).ok_or("expected a string key")?;
            let (value, after) = split_msgpack_value(after, limits.max_depth)?;
            *rest = after;
            if let [b'_', ..] = key {
                // Questions are kept in order with the kinds, as at the top
                // level; other reserved keys are skipped.
                let kind = match key {
                    b"_ask" => KEY_ASK,
                    b"_re" => KEY_REPLY_TO,
                    _ => continue,
                };
                messages.push((Cow::Borrowed(kind), RawValueRef::MessagePack(value)));
                continue;
            }
            kinds += 1;
            if kinds > limits.max_kinds {
                return Err(BodyError::Limit(WireError::TooLarge {
                    what: "the number of kinds",
                    size: kinds,
                    max: limits.max_kinds,
                }));
            }
            let kind = match known(key) {
                Some(kind) => kind,
                None => std::str::from_utf8(key).map_err(|_| "a key is not UTF-8")?,
            };
            messages.push((Cow::Borrowed(kind), RawValueRef::MessagePack(value)));
        }
    }
    Ok(n as u64)
}

/// Reads a reserved key's value other than the envelope's metadata: a
/// `_hb`, `_rq`, `_nak`, `_rp` or `_el` into `control` (the lists raw); any other
/// (`_sig`, keys of later versions) is skipped. Out of line: the usual body
/// has none but `_sig`.
#[cold]
#[inline(never)]
fn reserved_entry<'a>(
    control: &mut Option<Box<Control<'a>>>,
    key: &[u8],
    rest: &mut &'a [u8],
    limits: BodyLimits,
) -> Result<(), BodyError> {
    if key == b"_hb" {
        let heartbeat = meta_uint(rest, KEY_HEARTBEAT)?;
        control.get_or_insert_with(Default::default).heartbeat = Some(heartbeat);
        return Ok(());
    }
    let (value, after) = split_msgpack_value(rest, limits.max_depth)?;
    *rest = after;
    let slot = match key {
        b"_rq" => &mut control.get_or_insert_with(Default::default).requests,
        b"_nak" => &mut control.get_or_insert_with(Default::default).unrepairable,
        b"_rp" => &mut control.get_or_insert_with(Default::default).repairs,
        b"_el" => &mut control.get_or_insert_with(Default::default).election,
        _ => return Ok(()),
    };
    *slot = Some(value);
    Ok(())
}

#[cold]
#[inline(never)]
fn not_a_map(e: rmp::decode::ValueReadError) -> BodyError {
    format!("expected a map: {e}").into()
}

#[cold]
#[inline(never)]
fn trailing(bytes: usize) -> BodyError {
    format!("{bytes} trailing bytes after the map").into()
}

/// One range of a `_rq` or `_nak` list: `[instance, session, first, end]`
/// (envelopes `first..end` of that session).
pub(crate) type WireRange = (String, u64, u64, u64);

/// Reads a `_rq` or `_nak` list (at most `max` ranges).
pub(crate) fn read_ranges(codec: Codec, raw: &[u8], max: usize) -> Result<Vec<WireRange>, String> {
    let ranges: Vec<WireRange> = match codec {
        Codec::Json => serde_json::from_slice(raw).map_err(|e| e.to_string())?,
        Codec::MessagePack => rmp_serde::from_slice(raw).map_err(|e| e.to_string())?,
    };
    if ranges.len() > max {
        return Err(format!("{} ranges, more than {max}", ranges.len()));
    }
    Ok(ranges)
}

/// Reads a `_rp` list: each envelope's sequence number and its map of
/// kinds (still in the codec, to read as a body). At most `max` envelopes.
pub(crate) fn read_repairs(
    codec: Codec,
    raw: &[u8],
    max: usize,
    max_depth: usize,
) -> Result<Vec<(u64, &[u8])>, String> {
    match codec {
        Codec::Json => {
            let items: Vec<(u64, &RawValue)> =
                serde_json::from_slice(raw).map_err(|e| e.to_string())?;
            if items.len() > max {
                return Err(format!("{} envelopes, more than {max}", items.len()));
            }
            Ok(items
                .into_iter()
                .map(|(seq, raw)| (seq, raw.get().as_bytes()))
                .collect())
        }
        Codec::MessagePack => {
            let mut rest = raw;
            let n = rmp::decode::read_array_len(&mut rest).map_err(|e| e.to_string())? as usize;
            if n > max {
                return Err(format!("{n} envelopes, more than {max}"));
            }
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                if rmp::decode::read_array_len(&mut rest).map_err(|e| e.to_string())? != 2 {
                    return Err("an item is not [seq, map]".into());
                }
                let (seq, after) = msgpack_uint(rest).ok_or("a sequence number is not a uint")?;
                let end = skip_msgpack(after, max_depth)
                    .map_err(|_| "an envelope cannot be read".to_string())?;
                let (map, after) = after.split_at(end);
                items.push((seq, map));
                rest = after;
            }
            if !rest.is_empty() {
                return Err("trailing bytes after the list".into());
            }
            Ok(items)
        }
    }
}

/// `messages`, emptied, with its allocation, for another body. (The
/// standard library collects a vector into one of the same layout in
/// place: nothing is allocated.)
pub(crate) fn recycle<'b>(mut messages: Messages<'_>) -> Messages<'b> {
    messages.clear();
    messages
        .into_iter()
        .map(|_| unreachable!("empty"))
        .collect()
}

/// A MessagePack string's bytes (not checked for UTF-8), and what follows.
/// (Read here rather than with rmp: this runs for every key of every body.)
fn msgpack_str(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&marker, rest) = bytes.split_first()?;
    let (len, rest) = match marker {
        0xa0..=0xbf => (usize::from(marker & 0x1f), rest), // fixstr
        0xd9 => {
            let (n, rest) = rest.split_first()?; // str 8
            (usize::from(*n), rest)
        }
        0xda => {
            let (n, rest) = rest.split_first_chunk()?; // str 16
            (usize::from(u16::from_be_bytes(*n)), rest)
        }
        0xdb => {
            let (n, rest) = rest.split_first_chunk()?; // str 32
            (u32::from_be_bytes(*n) as usize, rest)
        }
        _ => return None,
    };
    (len <= rest.len()).then(|| rest.split_at(len))
}

/// Takes the metadata integer `key` off the front of `rest`. (Inlined, so
/// that neither the number nor the slice goes through memory.)
#[inline(always)]
fn meta_uint(rest: &mut &[u8], key: &'static str) -> Result<u64, BodyError> {
    let (n, after) = msgpack_uint(rest).ok_or_else(|| not_uint(key))?;
    *rest = after;
    Ok(n)
}

#[cold]
#[inline(never)]
fn not_uint(key: &str) -> BodyError {
    format!("`{key}` is not an unsigned integer").into()
}

/// A MessagePack integer that is not negative, in any integer form, at the
/// front of `bytes`, and what follows.
#[inline(always)]
fn msgpack_uint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    fn take<const N: usize>(bytes: &[u8]) -> Option<([u8; N], &[u8])> {
        bytes.split_first_chunk().map(|(n, rest)| (*n, rest))
    }
    let (&marker, rest) = bytes.split_first()?;
    match marker {
        0x00..=0x7f => Some((u64::from(marker), rest)), // positive fixint
        0xcc => take(rest).map(|(b, rest)| (u8::from_be_bytes(b).into(), rest)),
        0xcd => take(rest).map(|(b, rest)| (u16::from_be_bytes(b).into(), rest)),
        0xce => take(rest).map(|(b, rest)| (u32::from_be_bytes(b).into(), rest)),
        0xcf => take(rest).map(|(b, rest)| (u64::from_be_bytes(b), rest)),
        // Signed forms, if the value is not negative.
        0xd0 => {
            take(rest).and_then(|(b, rest)| Some((i8::from_be_bytes(b).try_into().ok()?, rest)))
        }
        0xd1 => {
            take(rest).and_then(|(b, rest)| Some((i16::from_be_bytes(b).try_into().ok()?, rest)))
        }
        0xd2 => {
            take(rest).and_then(|(b, rest)| Some((i32::from_be_bytes(b).try_into().ok()?, rest)))
        }
        0xd3 => {
            take(rest).and_then(|(b, rest)| Some((i64::from_be_bytes(b).try_into().ok()?, rest)))
        }
        _ => None,
    }
}

/// Splits one MessagePack value off the front of `bytes`, checking depth:
/// walks the markers, allocating nothing.
fn split_msgpack_value(bytes: &[u8], max_depth: usize) -> Result<(&[u8], &[u8]), BodyError> {
    match skip_msgpack(bytes, max_depth) {
        Ok(end) => Ok(bytes.split_at(end)),
        Err(e) => Err(unskippable(e, max_depth)),
    }
}

#[cold]
#[inline(never)]
fn unskippable(e: Skip, max_depth: usize) -> BodyError {
    match e {
        Skip::CutShort => "the value is cut short".into(),
        Skip::Reserved => "a reserved MessagePack marker (0xc1)".into(),
        Skip::TooDeep => BodyError::Limit(WireError::TooLarge {
            what: "the nesting depth",
            size: max_depth + 1,
            max: max_depth,
        }),
    }
}

/// Why a MessagePack value could not be skipped (one byte, so that results
/// stay in registers on the hot path).
enum Skip {
    CutShort,
    Reserved,
    TooDeep,
}

/// The head of the MessagePack value at some position.
struct Head {
    /// Where the value's own bytes end (its items, if any, follow).
    end: usize,
    /// How many items follow: a map's keys and values, an array's elements.
    items: usize,
    /// Whether it is a map or an array (one level of nesting, even empty,
    /// as a JSON bracket is).
    nested: bool,
}

/// Reads the head of the MessagePack value at `pos` (markers as in the
/// MessagePack specification), checking that its own bytes are whole.
#[inline(always)]
fn msgpack_head(bytes: &[u8], pos: usize) -> Result<Head, Skip> {
    let marker = *bytes.get(pos).ok_or(Skip::CutShort)?;
    let mut pos = pos + 1;
    // A big-endian length of `n` bytes at the cursor.
    let mut length = |n: usize| -> Result<usize, Skip> {
        let field = bytes.get(pos..pos + n).ok_or(Skip::CutShort)?;
        pos += n;
        Ok(field
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b)))
    };
    // (bytes to skip, items that follow)
    let (skip, items) = match marker {
        // positive and negative fixint, nil, false, true
        0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
        0x80..=0x8f => (0, 2 * usize::from(marker & 0x0f)), // fixmap
        0x90..=0x9f => (0, usize::from(marker & 0x0f)),     // fixarray
        0xa0..=0xbf => (usize::from(marker & 0x1f), 0),     // fixstr
        0xc1 => return Err(Skip::Reserved),
        0xc4 | 0xd9 => (length(1)?, 0), // bin 8, str 8
        0xc5 | 0xda => (length(2)?, 0), // bin 16, str 16
        0xc6 | 0xdb => (length(4)?, 0), // bin 32, str 32
        0xc7 => (length(1)? + 1, 0),    // ext 8
        0xc8 => (length(2)? + 1, 0),    // ext 16
        0xc9 => (length(4)? + 1, 0),    // ext 32
        0xcc | 0xd0 => (1, 0),          // uint 8, int 8
        0xcd | 0xd1 => (2, 0),          // uint 16, int 16
        0xca | 0xce | 0xd2 => (4, 0),   // float 32, uint 32, int 32
        0xcb | 0xcf | 0xd3 => (8, 0),   // float 64, uint 64, int 64
        0xd4 => (2, 0),                 // fixext 1
        0xd5 => (3, 0),                 // fixext 2
        0xd6 => (5, 0),                 // fixext 4
        0xd7 => (9, 0),                 // fixext 8
        0xd8 => (17, 0),                // fixext 16
        0xdc => (0, length(2)?),        // array 16
        0xdd => (0, length(4)?),        // array 32
        0xde => (0, 2 * length(2)?),    // map 16
        0xdf => (0, 2 * length(4)?),    // map 32
    };
    let end = pos
        .checked_add(skip)
        .filter(|end| *end <= bytes.len())
        .ok_or(Skip::CutShort)?;
    Ok(Head {
        end,
        items,
        nested: matches!(marker, 0x80..=0x9f | 0xdc..=0xdf),
    })
}

/// Where the MessagePack value at the front of `bytes` ends, checking that
/// it is whole and not nested deeper than `max_depth`.
fn skip_msgpack(bytes: &[u8], max_depth: usize) -> Result<usize, Skip> {
    let head = msgpack_head(bytes, 0)?;
    if head.nested {
        skip_items(bytes, head, 1, max_depth)
    } else {
        Ok(head.end)
    }
}

/// Where the items of the map or array `head`, at `depth`, end. Only maps
/// and arrays recurse; every item takes at least a byte, so a false count
/// runs out quickly.
fn skip_items(bytes: &[u8], head: Head, depth: usize, max_depth: usize) -> Result<usize, Skip> {
    if depth > max_depth {
        return Err(Skip::TooDeep);
    }
    let mut pos = head.end;
    for _ in 0..head.items {
        let item = msgpack_head(bytes, pos)?;
        pos = if item.nested {
            skip_items(bytes, item, depth + 1, max_depth)?
        } else {
            item.end
        };
    }
    Ok(pos)
}

/// Why SmokeDetector's Python SocketScience would raise on a payload whose
/// kinds are the MessagePack map entries `entries` (as a node writes them),
/// if it would: its `msgpack.loads` refuses map keys that are neither
/// strings nor bytes (`ValueError`, its default `strict_map_key`), and its
/// `SocketScience.handle` reads the payload's `location` when the payload
/// has `ping`, or `metasmoke_state` equal to `"down"` or `"up"`
/// (`KeyError` without one).
pub(crate) fn python_would_raise(entries: &[u8]) -> Option<String> {
    let (mut location, mut reads_location) = (false, None);
    let mut rest = entries;
    while !rest.is_empty() {
        let (key, after) = msgpack_str(rest)?;
        let kind = String::from_utf8_lossy(key);
        let end = match python_keys(after, 0, 0) {
            Ok(end) => end,
            Err(why) => {
                return Some(format!(
                    "the value of `{kind}` {why}, and that instance stops reading the room"
                ))
            }
        };
        let (value, after) = after.split_at(end);
        rest = after;
        match key {
            b"location" => location = true,
            b"ping" => reads_location = reads_location.or(Some("a `ping`")),
            b"metasmoke_state" if matches!(value, b"\xa4down" | b"\xa2up") => {
                reads_location =
                    reads_location.or(Some("a `metasmoke_state` of \"down\" or \"up\""))
            }
            _ => {}
        }
    }
    let what = reads_location.filter(|_| !location)?;
    Some(format!(
        "SmokeDetector's `SocketScience.handle` reads the `location` of every payload with \
         {what}, and raises `KeyError` without one, after which that instance stops reading \
         the room: add a `location` kind to this envelope (such as \
         `#[message(\"location\")] struct Location(String)`, with this instance's name)"
    ))
}

/// Where the MessagePack value at `pos`, `depth` maps or lists inside the
/// envelope's map, ends, if Python's `msgpack.loads` reads it: every map's
/// keys are strings or bytes, and it nests no deeper than Python reads
/// (1 024 maps or lists, the envelope's included); why not, otherwise.
fn python_keys(bytes: &[u8], pos: usize, depth: usize) -> Result<usize, &'static str> {
    let marker = bytes.get(pos).copied();
    let head = msgpack_head(bytes, pos).map_err(|_| "cannot be read back")?;
    if !head.nested {
        return Ok(head.end);
    }
    if depth + 2 > 1_024 {
        return Err(
            "is nested deeper than Python's `msgpack.loads` reads (1 024 maps or lists, \
             the envelope's included): it raises `StackError`",
        );
    }
    let map = matches!(marker, Some(0x80..=0x8f | 0xde | 0xdf));
    let mut pos = head.end;
    for item in 0..head.items {
        if map
            && item % 2 == 0
            && !matches!(
                bytes.get(pos),
                Some(0xa0..=0xbf | 0xd9..=0xdb | 0xc4..=0xc6)
            )
        {
            return Err(
                "holds a map whose key is not a string: Python's `msgpack.loads` refuses \
                 the whole payload (`ValueError`, its default `strict_map_key`); use string keys",
            );
        }
        pos = python_keys(bytes, pos, depth + 1)?;
    }
    Ok(pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_nested_deeper_than_the_limit_are_refused_in_both_codecs() {
        let limits = BodyLimits {
            max_kinds: 64,
            max_depth: 4,
        };
        for (arrays, fits) in [(4, true), (5, false)] {
            let json = format!(r#"{{"deep":{}{}}}"#, "[".repeat(arrays), "]".repeat(arrays));
            let mut msgpack = vec![0x81];
            rmp::encode::write_str(&mut msgpack, "deep").unwrap();
            msgpack.extend(std::iter::repeat_n(0x91, arrays - 1));
            msgpack.push(0x90);
            for body in [json.as_bytes(), &msgpack] {
                match parse_body(body, limits) {
                    Ok(parsed) => assert!(fits, "{arrays} arrays: {parsed:?}"),
                    Err(WireError::TooLarge { what, size, max }) => {
                        assert!(!fits, "{arrays} arrays");
                        assert_eq!((what, size, max), ("the nesting depth", 5, 4));
                    }
                    Err(e) => panic!("{arrays} arrays: {e}"),
                }
            }
        }
    }

    #[test]
    fn what_python_would_raise_on() {
        let entry = |key: &str, value: &[u8]| {
            let mut buf = Vec::new();
            rmp::encode::write_str(&mut buf, key).unwrap();
            buf.extend_from_slice(value);
            buf
        };
        // Python's msgpack.loads reads 1 024 nested maps or lists, the
        // envelope's own map included, and raises StackError past that.
        for (lists, raises) in [(1_023, false), (1_024, true)] {
            let mut nested = vec![0x91; lists - 1];
            nested.push(0x90);
            let why = python_would_raise(&entry("deep", &nested));
            assert_eq!(why.is_some(), raises, "{lists}: {why:?}");
        }
        let int_key = entry("by_id", b"\x81\x07\xa1x");
        assert!(python_would_raise(&int_key)
            .unwrap()
            .contains("use string keys"));
        assert_eq!(
            python_would_raise(&entry("by_name", b"\x81\xa1k\xc4\x01x")),
            None
        );
        let down = entry("metasmoke_state", b"\xa4down");
        assert!(python_would_raise(&down).unwrap().contains("`location`"));
        let other = entry("metasmoke_state", b"\xa7unknown");
        assert_eq!(python_would_raise(&other), None);
        let ping = entry("ping", b"\x01");
        assert!(python_would_raise(&ping).is_some());
        let with_location = [ping, entry("location", b"\xa1x")].concat();
        assert_eq!(python_would_raise(&with_location), None);
    }

    #[test]
    fn clean_trims_as_str_trim_does() {
        for b in 0..=0x7fu8 {
            let c = char::from(b);
            for text in [
                format!("{c}x{c}"),
                format!("{c}"),
                format!("x{c}"),
                format!("{c}x"),
            ] {
                assert_eq!(clean(&text), text.trim(), "{text:?}");
            }
        }
        assert_eq!(
            clean("\u{a0}.\n\u{2}0000AA\u{3}\u{3000}"),
            ".\n\u{2}0000AA\u{3}"
        );
    }

    #[test]
    fn the_msgpack_reader_matches_the_metadata_keys_by_their_constants() {
        let mut body = Vec::new();
        rmp::encode::write_map_len(&mut body, 5).unwrap();
        for (key, value) in [
            (KEY_SESSION, 7u64),
            (KEY_SEQ, 8),
            (KEY_COUNT, 2),
            (KEY_TIMESTAMP, 9),
        ] {
            rmp::encode::write_str(&mut body, key).unwrap();
            rmp::encode::write_uint(&mut body, value).unwrap();
        }
        rmp::encode::write_str(&mut body, KEY_FROM).unwrap();
        rmp::encode::write_str(&mut body, "Henders/EC2").unwrap();
        let meta = parse_body(&body, BodyLimits::default()).unwrap().meta;
        assert_eq!(
            meta,
            Meta {
                from: Some("Henders/EC2".into()),
                session: Some(7),
                seq: Some(8),
                count: Some(2),
                timestamp: Some(9),
                ..Meta::default()
            }
        );
    }

    #[test]
    fn msgpack_integers_and_strings_in_every_form() {
        for n in [
            0u64,
            1,
            127,
            128,
            255,
            256,
            65_535,
            65_536,
            u32::MAX.into(),
            u64::MAX,
        ] {
            let mut buf = Vec::new();
            rmp::encode::write_uint(&mut buf, n).unwrap();
            buf.push(0xc0);
            assert_eq!(msgpack_uint(&buf), Some((n, &[0xc0][..])), "{buf:x?}");
            if let Ok(signed) = i64::try_from(n) {
                let mut buf = Vec::new();
                rmp::encode::write_sint(&mut buf, signed).unwrap();
                assert_eq!(msgpack_uint(&buf), Some((n, &[][..])), "{buf:x?}");
            }
        }
        let negative_or_not_integers: [&[u8]; 7] = [
            &[0xff],
            &[0xd0, 0x80],
            &[0xd3, 0xff, 0, 0, 0, 0, 0, 0, 0],
            &[0xcd, 1],
            &[0xcb, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0xc0],
            &[],
        ];
        for bad in negative_or_not_integers {
            assert_eq!(msgpack_uint(bad), None, "{bad:x?}");
        }
        for len in [0, 31, 32, 255, 256, 65_535, 65_536] {
            let text = "k".repeat(len);
            let mut buf = Vec::new();
            rmp::encode::write_str(&mut buf, &text).unwrap();
            buf.push(0xc0);
            assert_eq!(
                msgpack_str(&buf),
                Some((text.as_bytes(), &[0xc0][..])),
                "{len}"
            );
            assert_eq!(msgpack_str(&buf[..buf.len() - 2]), None, "cut short, {len}");
        }
        assert_eq!(msgpack_str(&[0xc4, 0]), None, "bin is not a string");
    }
    use crate::envelope::{assemble, BodyWriter, Origin};

    fn encoded(codec: Codec, seq: u64, kind: &'static str) -> crate::envelope::Encoded {
        let mut w = BodyWriter::new(codec);
        w.message(
            kind,
            &serde_json::json!({"location": "here", "timestamp": 1.5}),
        )
        .unwrap();
        w.finish_into(seq, &mut Vec::new())
    }

    fn origin() -> Origin {
        Origin::new("Henders/EC2", 99)
    }

    fn body(codec: Codec) -> Vec<u8> {
        assemble(codec, &origin(), &[encoded(codec, 7, "ping")], None)
    }

    #[test]
    fn several_envelopes_in_one_body() {
        for codec in [Codec::Json, Codec::MessagePack] {
            let kinds = ["a", "b", "c"];
            let group: Vec<_> = kinds
                .iter()
                .enumerate()
                .map(|(i, k)| encoded(codec, 10 + i as u64, k))
                .collect();
            let bytes = assemble(codec, &origin(), &group, None);
            let parsed = parse_body(&bytes, BodyLimits::default()).unwrap();
            assert_eq!(parsed.meta.seq, Some(10), "{codec}");
            assert_eq!(parsed.meta.count, Some(3), "{codec}");
            assert_eq!(parsed.meta.session, Some(99), "{codec}");
            let got: Vec<&str> = parsed.messages.iter().map(|(k, _)| &**k).collect();
            assert_eq!(got, kinds, "{codec}");
        }
        // JSON batches may repeat a kind.
        let group = [encoded(Codec::Json, 1, "a"), encoded(Codec::Json, 2, "a")];
        let bytes = assemble(Codec::Json, &origin(), &group, None);
        assert!(bytes.starts_with(br#"{"_from":"Henders/EC2","_sid":99,"_seq":1,"_batch":[{"a":"#));
        let parsed = parse_body(&bytes, BodyLimits::default()).unwrap();
        assert_eq!(parsed.messages.len(), 2);
    }

    #[test]
    fn both_codecs_round_trip() {
        for codec in [Codec::Json, Codec::MessagePack] {
            let bytes = body(codec);
            let parsed = parse_body(&bytes, BodyLimits::default()).unwrap();
            assert_eq!(parsed.codec, codec);
            assert_eq!(parsed.meta.from.as_deref(), Some("Henders/EC2"));
            assert_eq!(parsed.meta.seq, Some(7));
            assert_eq!(parsed.messages.len(), 1);
            assert_eq!(parsed.messages[0].0, "ping");
            assert_eq!(
                parsed.messages[0].1.to_json().unwrap(),
                serde_json::json!({"location": "here", "timestamp": 1.5})
            );
        }
    }

    #[test]
    fn frame_round_trips_and_zero_width_is_stripped() {
        let mut b64 = String::new();
        encode_base64(&body(Codec::Json), &mut b64);
        let mut text = String::new();
        write_frame(&mut text, Lines::Multi, 42, &b64);
        assert!(text.starts_with(".\n\u{2}0042"));
        let noisy: String = text
            .chars()
            .enumerate()
            .flat_map(|(i, c)| {
                if i % 7 == 3 {
                    vec![c, '\u{200B}']
                } else {
                    vec![c]
                }
            })
            .collect();
        let cleaned = clean(&noisy);
        assert_eq!(
            parse_chat_text(&cleaned).unwrap(),
            ChatText::Frame { body: &b64 }
        );
    }

    #[test]
    fn chunks_fit_and_reassemble() {
        let body: String = "QUJD".repeat(500);
        let chunks = split_into_chunks(Lines::Multi, 0xdeadbeef, &body, 100).unwrap();
        assert!(chunks.len() > 2);
        let mut joined = String::new();
        for (i, c) in chunks.iter().enumerate() {
            assert!(c.len() <= 100, "{} > 100", c.len());
            assert!(!c.starts_with(FRAME_START));
            match parse_chat_text(c).unwrap() {
                ChatText::Chunk(chunk) => {
                    assert_eq!(chunk.id, 0xdeadbeef);
                    assert_eq!(chunk.index as usize, i + 1);
                    assert_eq!(chunk.total as usize, chunks.len());
                    joined.push_str(chunk.piece);
                }
                other => panic!("not a chunk: {other:?}"),
            }
        }
        assert_eq!(joined, body);
        assert!(split_into_chunks(Lines::Multi, 1, &body, 10).is_none());
    }

    /// MessagePack batches: read in order, kinds may repeat; refused when
    /// empty, beside kinds or a `_count`, or over a limit.
    #[test]
    fn msgpack_batches_are_read_and_checked() {
        let body = |entries: &[(&str, serde_json::Value)]| {
            let mut buf = Vec::new();
            rmp::encode::write_map_len(&mut buf, entries.len() as u32).unwrap();
            for (key, value) in entries {
                rmp::encode::write_str(&mut buf, key).unwrap();
                rmp_serde::encode::write_named(&mut buf, value).unwrap();
            }
            buf
        };
        use serde_json::json;
        let good = body(&[
            (KEY_SEQ, json!(4)),
            (KEY_BATCH, json!([{"a": 1}, {"a": 2, "_x": 0}, {"b": 3}])),
        ]);
        let parsed = parse_body(&good, BodyLimits::default()).unwrap();
        assert_eq!(parsed.meta.seq, Some(4));
        assert_eq!(parsed.meta.count, Some(3));
        let kinds: Vec<&str> = parsed.messages.iter().map(|(k, _)| &**k).collect();
        assert_eq!(kinds, ["a", "a", "b"]);
        // Questions and replies stay in order with the kinds, as at the top.
        let asks = body(&[
            (KEY_SEQ, json!(0)),
            (
                KEY_BATCH,
                json!([{"_ask": 7, "q": 1}, {"_re": ["x", 7], "r": 2}]),
            ),
        ]);
        let parsed = parse_body(&asks, BodyLimits::default()).unwrap();
        let kinds: Vec<&str> = parsed.messages.iter().map(|(k, _)| &**k).collect();
        assert_eq!(kinds, [KEY_ASK, "q", KEY_REPLY_TO, "r"]);
        for bad in [
            body(&[(KEY_SEQ, json!(4)), (KEY_BATCH, json!([]))]),
            body(&[
                (KEY_SEQ, json!(4)),
                ("a", json!(1)),
                (KEY_BATCH, json!([{"a": 2}])),
            ]),
            body(&[
                (KEY_SEQ, json!(4)),
                (KEY_BATCH, json!([{"a": 2}])),
                ("a", json!(1)),
            ]),
            body(&[
                (KEY_SEQ, json!(4)),
                (KEY_COUNT, json!(1)),
                (KEY_BATCH, json!([{"a": 2}])),
            ]),
            body(&[(KEY_BATCH, json!([{"a": 2}]))]),
            body(&[(KEY_SEQ, json!(4)), (KEY_BATCH, json!([1]))]),
            body(&[(KEY_SEQ, json!(4)), (KEY_BATCH, json!({"a": 1}))]),
        ] {
            assert!(
                matches!(
                    parse_body(&bad, BodyLimits::default()),
                    Err(WireError::Body { .. })
                ),
                "{bad:02x?}"
            );
        }
        let wide = body(&[
            (KEY_SEQ, json!(0)),
            (KEY_BATCH, json!([{"a": 1, "b": 2, "c": 3}])),
        ]);
        let limits = BodyLimits {
            max_kinds: 2,
            max_depth: 32,
        };
        assert!(matches!(
            parse_body(&wide, limits),
            Err(WireError::TooLarge { .. })
        ));
    }

    /// A compressed body inflates within its limit, and only once.
    #[test]
    fn compressed_bodies_are_bounded() {
        let body = br#"{"a":1,"_seq":0}"#;
        let mut packed = Vec::new();
        deflate_body(body, &mut packed);
        let mut out = Vec::new();
        assert_eq!(inflate_body(&packed, body.len(), &mut out), Ok(true));
        assert_eq!(out, body);
        assert!(matches!(
            inflate_body(&packed, body.len() - 1, &mut out),
            Err(WireError::TooLarge { .. })
        ));
        let mut twice = Vec::new();
        deflate_body(&packed, &mut twice);
        assert!(matches!(
            inflate_body(&twice, 1 << 20, &mut out),
            Err(WireError::Compressed(_))
        ));
        for bad in [
            &[COMPRESSED][..],
            &[COMPRESSED, 2, 0],
            &[COMPRESSED, COMPRESSION_DEFLATE, 0xff],
        ] {
            assert!(matches!(
                inflate_body(bad, 1 << 20, &mut out),
                Err(WireError::Compressed(_))
            ));
        }
    }

    #[test]
    fn limits_are_enforced() {
        let deep = format!("{{\"k\":{}{}}}", "[".repeat(40), "]".repeat(40));
        assert!(matches!(
            parse_body(deep.as_bytes(), BodyLimits::default()),
            Err(WireError::TooLarge { .. })
        ));
        let many = format!(
            "{{{}}}",
            (0..100)
                .map(|i| format!("\"k{i}\":1"))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert!(matches!(
            parse_body(many.as_bytes(), BodyLimits::default()),
            Err(WireError::TooLarge { .. })
        ));
    }
}

// Owned decoding and encoding of whole envelopes, for the `socketscience`
// command, tests and tools. It sits after `mod tests` only so that the code
// above stays untouched; it may move above the tests at any time.

pub use owned::{decode_body, encode_frame, Decoded, Value};

#[allow(clippy::items_after_test_module)]
mod owned {
    use std::fmt::{self, Write as _};

    use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
    use serde::ser::{Error as _, Serialize, SerializeMap, SerializeSeq, Serializer};

    use super::{
        encode_base64, inflate_body, parse_body, write_frame, BodyLimits, Codec, Lines, WireError,
        KEY_BATCH,
    };

    /// The messages of a decoded body: kind and value, in the body's order.
    type Messages = Vec<(String, Value)>;

    /// A value as a body carries it, whatever its codec: what Python's
    /// `msgpack.loads` or `json.loads` would give, with map keys in the
    /// body's order.
    ///
    /// Its [`Display`](fmt::Display) is JSON as Python's `json.dumps` writes
    /// it (what `socketscience decode` prints): floats as Python's `repr`
    /// (`1e+16`, `5e-324`, `1.0`), NaN and infinities as `NaN`,
    /// `Infinity` and `-Infinity` (which Python's `json.loads` reads back),
    /// bytes as `{"$bin": "<hex>"}`, and map keys that are not strings as
    /// Python turns them into strings (`7` as `"7"`, `true` as `"true"`,
    /// `None` as `"null"`); a key that is bytes, a list or a map, which
    /// Python refuses, as its own JSON text. (A MessagePack ext value is
    /// not read: [`decode_body`] fails on it.) `{}` is compact
    /// (`{"a":[1,2]}`); `{:#}` is indented by two spaces, as
    /// `json.dumps(value, indent=2)`.
    ///
    /// ```
    /// use socketscience::wire::Value;
    ///
    /// let value: Value = serde_json::from_str(r#"{"b": [1, 2.5e20], "a": null}"#).unwrap();
    /// assert_eq!(value.to_string(), r#"{"b":[1,2.5e+20],"a":null}"#);
    /// assert_eq!(Value::Float(f64::NEG_INFINITY).to_string(), "-Infinity");
    /// ```
    #[derive(Debug, Clone)]
    pub enum Value {
        /// Nil, `null`, Python's `None`.
        Null,
        /// A boolean.
        Bool(bool),
        /// An integer: MessagePack's and JSON's fit `i64` or `u64`.
        Int(i128),
        /// A floating-point number (MessagePack float32 widened).
        Float(f64),
        /// A string.
        String(String),
        /// MessagePack bin: Python's `bytes`.
        Bytes(Vec<u8>),
        /// A list.
        Array(Vec<Value>),
        /// A map, entries in the body's order.
        Map(Vec<(Value, Value)>),
    }

    /// Equal values; floats compared bit for bit (`NaN` equals itself,
    /// `-0.0` differs from `0.0`).
    impl PartialEq for Value {
        fn eq(&self, other: &Value) -> bool {
            match (self, other) {
                (Value::Null, Value::Null) => true,
                (Value::Bool(a), Value::Bool(b)) => a == b,
                (Value::Int(a), Value::Int(b)) => a == b,
                (Value::Float(a), Value::Float(b)) => a.to_bits() == b.to_bits(),
                (Value::String(a), Value::String(b)) => a == b,
                (Value::Bytes(a), Value::Bytes(b)) => a == b,
                (Value::Array(a), Value::Array(b)) => a == b,
                (Value::Map(a), Value::Map(b)) => a == b,
                _ => false,
            }
        }
    }

    impl From<serde_json::Value> for Value {
        fn from(value: serde_json::Value) -> Value {
            match value {
                serde_json::Value::Null => Value::Null,
                serde_json::Value::Bool(b) => Value::Bool(b),
                serde_json::Value::Number(n) => match (n.as_u64(), n.as_i64()) {
                    (Some(n), _) => Value::Int(n.into()),
                    (None, Some(n)) => Value::Int(n.into()),
                    _ => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
                },
                serde_json::Value::String(s) => Value::String(s),
                serde_json::Value::Array(a) => {
                    Value::Array(a.into_iter().map(Value::from).collect())
                }
                serde_json::Value::Object(m) => Value::Map(
                    m.into_iter()
                        .map(|(k, v)| (Value::String(k), Value::from(v)))
                        .collect(),
                ),
            }
        }
    }

    impl<'de> Deserialize<'de> for Value {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
            d.deserialize_any(ValueVisitor)
        }
    }

    struct ValueVisitor;

    impl<'de> Visitor<'de> for ValueVisitor {
        type Value = Value;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a value")
        }
        fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
            Ok(Value::Int(v.into()))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
            Ok(Value::Int(v.into()))
        }
        fn visit_i128<E>(self, v: i128) -> Result<Value, E> {
            Ok(Value::Int(v))
        }
        fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
            Ok(Value::Float(v))
        }
        fn visit_str<E>(self, v: &str) -> Result<Value, E> {
            Ok(Value::String(v.to_owned()))
        }
        fn visit_string<E>(self, v: String) -> Result<Value, E> {
            Ok(Value::String(v))
        }
        fn visit_bytes<E>(self, v: &[u8]) -> Result<Value, E> {
            Ok(Value::Bytes(v.to_vec()))
        }
        fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Value, E> {
            Ok(Value::Bytes(v))
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_none<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            Value::deserialize(d)
        }
        fn visit_newtype_struct<D: Deserializer<'de>>(self, _: D) -> Result<Value, D::Error> {
            // What rmp_serde makes of a MessagePack ext value.
            Err(de::Error::custom(
                "a MessagePack ext value, which is not shown",
            ))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
            while let Some(item) = seq.next_element()? {
                items.push(item);
            }
            Ok(Value::Array(items))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
            while let Some(entry) = map.next_entry()? {
                entries.push(entry);
            }
            Ok(Value::Map(entries))
        }
    }

    /// MessagePack as Python's `msgpack.dumps` writes the same value (map
    /// entries in order, integers in their smallest form); an integer
    /// beyond 64 bits is an error.
    impl Serialize for Value {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            match self {
                Value::Null => s.serialize_unit(),
                Value::Bool(b) => s.serialize_bool(*b),
                Value::Int(n) => match (u64::try_from(*n), i64::try_from(*n)) {
                    (Ok(n), _) => s.serialize_u64(n),
                    (_, Ok(n)) => s.serialize_i64(n),
                    _ => Err(S::Error::custom(format_args!(
                        "the integer {n} does not fit 64 bits"
                    ))),
                },
                Value::Float(f) => s.serialize_f64(*f),
                Value::String(v) => s.serialize_str(v),
                Value::Bytes(b) => s.serialize_bytes(b),
                Value::Array(items) => {
                    let mut seq = s.serialize_seq(Some(items.len()))?;
                    for item in items {
                        seq.serialize_element(item)?;
                    }
                    seq.end()
                }
                Value::Map(entries) => {
                    let mut map = s.serialize_map(Some(entries.len()))?;
                    for (k, v) in entries {
                        map.serialize_entry(k, v)?;
                    }
                    map.end()
                }
            }
        }
    }

    /// A float as Python's `repr` writes it (and `json.dumps`, with
    /// `NaN`, `Infinity`, `-Infinity`): the shortest digits that read back
    /// the same, in positional notation when the exponent is from -5 to
    /// 15, else as `1.5e+300`.
    fn python_float(out: &mut String, f: f64) {
        if f.is_nan() {
            return out.push_str("NaN");
        }
        if f.is_infinite() {
            return out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
        }
        // `{:e}` gives the shortest round-trip digits: `-1.5e300`, `5e-324`.
        let sci = format!("{f:e}");
        let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        let (sign, mantissa) = match mantissa.strip_prefix('-') {
            Some(m) => ("-", m),
            None => ("", mantissa),
        };
        let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
        out.push_str(sign);
        // Where the decimal point goes, counted in digits from the left.
        let point = exp + 1;
        if -4 < point && point <= 16 {
            let n = digits.len() as i32;
            if point <= 0 {
                out.push_str("0.");
                out.extend(std::iter::repeat_n('0', (-point) as usize));
                out.push_str(&digits);
            } else if point >= n {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', (point - n) as usize));
                out.push_str(".0");
            } else {
                out.push_str(&digits[..point as usize]);
                out.push('.');
                out.push_str(&digits[point as usize..]);
            }
        } else {
            out.push_str(&digits[..1]);
            if digits.len() > 1 {
                out.push('.');
                out.push_str(&digits[1..]);
            }
            let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
        }
    }

    fn json_str(out: &mut String, s: &str) {
        // Serialising a string to JSON cannot fail.
        out.push_str(&serde_json::to_string(s).unwrap_or_default());
    }

    impl Value {
        /// A map key as Python's `json.dumps` turns it into a string.
        fn write_key(&self, out: &mut String) {
            match self {
                Value::String(s) => json_str(out, s),
                Value::Null | Value::Bool(_) | Value::Int(_) | Value::Float(_) => {
                    let mut key = String::new();
                    self.write(&mut key, None, 0);
                    json_str(out, &key);
                }
                other => json_str(out, &other.to_string()),
            }
        }

        /// Writes the value; `indent`: spaces per level, if indented.
        fn write(&self, out: &mut String, indent: Option<usize>, level: usize) {
            let newline = |out: &mut String, level: usize| {
                if let Some(n) = indent {
                    out.push('\n');
                    out.extend(std::iter::repeat_n(' ', n * level));
                }
            };
            match self {
                Value::Null => out.push_str("null"),
                Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
                Value::Int(n) => {
                    let _ = write!(out, "{n}");
                }
                Value::Float(f) => python_float(out, *f),
                Value::String(s) => json_str(out, s),
                Value::Bytes(b) => {
                    let hex: String = b.iter().map(|b| format!("{b:02x}")).collect();
                    Value::Map(vec![(Value::String("$bin".into()), Value::String(hex))])
                        .write(out, indent, level);
                }
                Value::Array(items) if items.is_empty() => out.push_str("[]"),
                Value::Array(items) => {
                    out.push('[');
                    for (i, item) in items.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        newline(out, level + 1);
                        item.write(out, indent, level + 1);
                    }
                    newline(out, level);
                    out.push(']');
                }
                Value::Map(entries) if entries.is_empty() => out.push_str("{}"),
                Value::Map(entries) => {
                    out.push('{');
                    for (i, (k, v)) in entries.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        newline(out, level + 1);
                        k.write_key(out);
                        out.push_str(if indent.is_some() { ": " } else { ":" });
                        v.write(out, indent, level + 1);
                    }
                    newline(out, level);
                    out.push('}');
                }
            }
        }
    }

    impl fmt::Display for Value {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let mut out = String::new();
            self.write(&mut out, f.alternate().then_some(2), 0);
            f.write_str(&out)
        }
    }

    /// A decoded body, owned: its metadata and its messages.
    ///
    /// Made by [`decode_body`]; what the `socketscience decode` command prints.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Decoded {
        /// The codec the body was written in.
        pub codec: Codec,
        /// `_from`: the sending instance's name, if the body carries it.
        pub from: Option<String>,
        /// `_sid`: the sending process's session, if the body carries it.
        pub session: Option<u64>,
        /// `_seq`: the envelope's sequence number, if the body carries it
        /// (the first one's when the body holds several).
        pub seq: Option<u64>,
        /// How many consecutive envelopes the body holds, when more than one
        /// (`_count` of a merged MessagePack map, or the length of a
        /// `_batch`).
        pub count: Option<u64>,
        /// The messages, kind and value, in the body's order. Other keys
        /// starting with `_` are reserved and left out. For a batch, the
        /// messages of all its envelopes, in order (see `batch`).
        pub messages: Vec<(String, Value)>,
        /// For a batch (`_batch`), each envelope's messages, in order.
        pub batch: Option<Vec<Vec<(String, Value)>>>,
    }

    /// The largest body [`decode_body`] inflates a compressed body to (the
    /// default `max_envelope_bytes`).
    const MAX_INFLATED: usize = 256 << 10;

    /// Decodes a body (base64 already removed, see [`decode_base64`]) into
    /// owned values, within [`BodyLimits::default`]. Every value is shown,
    /// bytes and non-finite floats included.
    ///
    /// ```
    /// use socketscience::wire::{decode_body, Codec, Value};
    ///
    /// let decoded = decode_body(br#"{"ping":{"location":"here"},"_from":"Henders/EC2"}"#)?;
    /// assert_eq!(decoded.codec, Codec::Json);
    /// assert_eq!(decoded.from.as_deref(), Some("Henders/EC2"));
    /// assert_eq!(decoded.messages[0].0, "ping");
    /// assert_eq!(decoded.messages[0].1.to_string(), r#"{"location":"here"}"#);
    /// # Ok::<(), socketscience::wire::WireError>(())
    /// ```
    ///
    /// [`decode_base64`]: super::decode_base64
    ///
    /// A compressed body is inflated first (at most 256 KiB).
    pub fn decode_body(body: &[u8]) -> Result<Decoded, WireError> {
        let mut inflated = Vec::new();
        let body = match inflate_body(body, MAX_INFLATED, &mut inflated)? {
            true => &inflated[..],
            false => body,
        };
        let parsed = parse_body(body, BodyLimits::default())?;
        let codec = parsed.codec;
        let messages = parsed
            .messages
            .iter()
            .map(|(kind, value)| {
                let value = value.decode::<Value>().map_err(|reason| WireError::Body {
                    codec,
                    reason: format!("the value of `{kind}`: {reason}"),
                })?;
                Ok((kind.clone().into_owned(), value))
            })
            .collect::<Result<_, WireError>>()?;
        let batch = match (codec, parsed.meta.count) {
            (codec, Some(_)) => batch(codec, body)?,
            _ => None,
        };
        Ok(Decoded {
            codec,
            from: parsed.meta.from.map(|from| from.into_owned()),
            session: parsed.meta.session,
            seq: parsed.meta.seq,
            count: parsed.meta.count,
            messages,
            batch,
        })
    }

    /// The envelopes of a body's `_batch` (JSON, or MessagePack), already
    /// checked by [`parse_body`], without their reserved keys.
    fn batch(codec: Codec, body: &[u8]) -> Result<Option<Vec<Messages>>, WireError> {
        let bad = |reason: String| WireError::Body { codec, reason };
        let map = match codec {
            Codec::Json => serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?,
            Codec::MessagePack => rmp_serde::from_slice(body).map_err(|e| bad(e.to_string()))?,
        };
        let Value::Map(map) = map else {
            return Err(bad("not a map".into()));
        };
        let Some((_, Value::Array(envelopes))) = map
            .into_iter()
            .find(|(k, _)| matches!(k, Value::String(k) if k == KEY_BATCH))
        else {
            return Ok(None);
        };
        envelopes
            .into_iter()
            .map(|envelope| match envelope {
                Value::Map(entries) => Ok(entries
                    .into_iter()
                    .filter_map(|(k, v)| match k {
                        Value::String(k) if !k.starts_with('_') => Some((k, v)),
                        _ => None,
                    })
                    .collect()),
                _ => Err(bad("a `_batch` item is not a map".into())),
            })
            .collect::<Result<_, _>>()
            .map(Some)
    }

    /// Writes `payload`, a map (a `serde_json::Map`, a [`Value::Map`], ...),
    /// as one frame: the map in `codec` (MessagePack as Python's
    /// `msgpack.dumps` writes it, entries in the map's own order), base64,
    /// then the frame around it with the four `digits` (taken modulo
    /// 10000).
    ///
    /// Every key is written as given, reserved ones (`_from`, ...) included.
    /// The frame is not split: see [`split_into_chunks`] for long ones.
    ///
    /// ```
    /// use socketscience::wire::{encode_frame, Codec, Lines};
    ///
    /// let payload = serde_json::json!({"metasmoke_state": "down"});
    /// let frame = encode_frame(Codec::Json, Lines::Multi, 42, &payload)?;
    /// assert_eq!(frame, ".\n\u{2}0042eyJtZXRhc21va2Vfc3RhdGUiOiJkb3duIn0=\u{3}");
    /// # Ok::<(), socketscience::wire::WireError>(())
    /// ```
    ///
    /// [`split_into_chunks`]: super::split_into_chunks
    pub fn encode_frame<T: Serialize + ?Sized>(
        codec: Codec,
        lines: Lines,
        digits: u16,
        payload: &T,
    ) -> Result<String, WireError> {
        let body = match codec {
            Codec::Json => serde_json::to_vec(payload).map_err(|e| e.to_string()),
            Codec::MessagePack => {
                let mut buf = Vec::new();
                crate::msgpack::write(&mut buf, payload).map(|()| buf)
            }
        }
        .map_err(|reason| WireError::Body { codec, reason })?;
        if Codec::sniff(&body) != codec
            || (codec == Codec::MessagePack && !matches!(body[0], 0x80..=0x8f | 0xde | 0xdf))
        {
            return Err(WireError::Body {
                codec,
                reason: "the payload is not a map".into(),
            });
        }
        let mut b64 = String::new();
        encode_base64(&body, &mut b64);
        let mut frame = String::new();
        write_frame(&mut frame, lines, digits, &b64);
        Ok(frame)
    }

    #[cfg(test)]
    mod tests {
        use super::super::{clean, decode_base64, parse_chat_text, ChatText};
        use super::*;

        fn round_trip(codec: Codec, lines: Lines, payload: serde_json::Value) -> Decoded {
            let frame = encode_frame(codec, lines, 7, payload.as_object().unwrap()).unwrap();
            let text = clean(&frame);
            let ChatText::Frame { body } = parse_chat_text(&text).unwrap() else {
                panic!("not a frame: {frame:?}");
            };
            let mut bytes = Vec::new();
            decode_base64(body, &mut bytes).unwrap();
            decode_body(&bytes).unwrap()
        }

        #[test]
        fn both_codecs_round_trip_with_metadata() {
            for codec in [Codec::Json, Codec::MessagePack] {
                for lines in [Lines::Multi, Lines::Single] {
                    let decoded = round_trip(
                        codec,
                        lines,
                        serde_json::json!({
                            "ping": {"location": "Henders/EC2", "timestamp": 1.5},
                            "metasmoke_state": "down",
                            "_from": "Henders/EC2", "_sid": 9, "_seq": 3, "_other": [1],
                        }),
                    );
                    assert_eq!(decoded.codec, codec);
                    assert_eq!(decoded.from.as_deref(), Some("Henders/EC2"));
                    assert_eq!((decoded.session, decoded.seq), (Some(9), Some(3)));
                    assert_eq!(
                        Value::Map(
                            decoded
                                .messages
                                .into_iter()
                                .map(|(k, v)| (Value::String(k), v))
                                .collect()
                        ),
                        Value::from(serde_json::json!({
                            "metasmoke_state": "down",
                            "ping": {"location": "Henders/EC2", "timestamp": 1.5},
                        }))
                    );
                }
            }
        }

        #[test]
        fn batches_and_merged_maps_show_their_envelopes() {
            let decoded = round_trip(
                Codec::Json,
                Lines::Multi,
                serde_json::json!({
                    "_sid": 1, "_seq": 5,
                    "_batch": [{"a": 1}, {"a": 2, "b": 3, "_x": 0}],
                }),
            );
            assert_eq!(decoded.count, Some(2));
            assert_eq!(decoded.seq, Some(5));
            let entries = |kvs: &[(&str, i128)]| -> Messages {
                kvs.iter()
                    .map(|(k, v)| (k.to_string(), Value::Int(*v)))
                    .collect()
            };
            assert_eq!(
                decoded.batch,
                Some(vec![entries(&[("a", 1)]), entries(&[("a", 2), ("b", 3)])])
            );
            assert_eq!(decoded.messages, entries(&[("a", 1), ("a", 2), ("b", 3)]));

            let decoded = round_trip(
                Codec::MessagePack,
                Lines::Multi,
                serde_json::json!({"_seq": 5, "_count": 3, "a": 1}),
            );
            assert_eq!((decoded.count, decoded.batch), (Some(3), None));
        }

        #[test]
        fn msgpack_is_what_python_writes() {
            // msgpack.dumps({"n": 1, "s": "x"}) == b'\x82\xa1n\x01\xa1s\xa1x'
            let frame = encode_frame(
                Codec::MessagePack,
                Lines::Multi,
                0,
                serde_json::json!({"n": 1, "s": "x"}).as_object().unwrap(),
            )
            .unwrap();
            let mut expected = String::from(".\n\u{2}0000");
            encode_base64(b"\x82\xa1n\x01\xa1s\xa1x", &mut expected);
            expected.push('\u{3}');
            assert_eq!(frame, expected);
        }

        #[test]
        fn values_that_are_not_json_are_shown_as_python_would() {
            // {"k": {1: 2}, "b": b"\x00\xff", "n": NaN, "i": -inf, "f": 1e16}
            let mut body = b"\x85\xa1k\x81\x01\x02\xa1b\xc4\x02\x00\xff".to_vec();
            body.extend(b"\xa1n\xcb\x7f\xf8\0\0\0\0\0\0\xa1i\xcb\xff\xf0\0\0\0\0\0\0");
            body.extend(b"\xa1f\xcb\x43\x41\xc3\x79\x37\xe0\x80\x00");
            let decoded = decode_body(&body).unwrap();
            let shown: Vec<String> = decoded
                .messages
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            assert_eq!(
                shown,
                [
                    r#"k={"1":2}"#,
                    r#"b={"$bin":"00ff"}"#,
                    "n=NaN",
                    "i=-Infinity",
                    "f=1e+16"
                ]
            );
        }

        #[test]
        fn floats_print_as_python_repr_does() {
            for (f, python) in [
                (0.0, "0.0"),
                (-0.0, "-0.0"),
                (1.0, "1.0"),
                (0.1, "0.1"),
                (1712345678.25, "1712345678.25"),
                (1e15, "1000000000000000.0"),
                (1e16, "1e+16"),
                (1.5e300, "1.5e+300"),
                (-1.5e-300, "-1.5e-300"),
                (0.0001, "0.0001"),
                (0.00001, "1e-05"),
                (5e-324, "5e-324"),
                (123456789012345680.0, "1.2345678901234568e+17"),
                (f64::INFINITY, "Infinity"),
            ] {
                assert_eq!(Value::Float(f).to_string(), python, "{f:e}");
            }
        }

        #[test]
        fn pretty_printing_is_python_indent_2() {
            let value: Value =
                serde_json::from_str(r#"{"b":[1,{}],"a":[],"c":{"d":null}}"#).unwrap();
            assert_eq!(
                format!("{value:#}"),
                "{\n  \"b\": [\n    1,\n    {}\n  ],\n  \"a\": [],\n  \"c\": {\n    \"d\": null\n  }\n}"
            );
        }
    }
}
