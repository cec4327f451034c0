//! Frames and chunks: the chat text around a body, written and read.

use std::borrow::Cow;
use std::fmt;

use base64_simd::STANDARD as BASE64;

use super::{
    LineMode, WireError, CHUNK_START, CHUNK_START_SINGLE_LINE, FRAME_END, FRAME_START,
    FRAME_START_SINGLE_LINE,
};

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
    /// The session (`_sid`) of the sender the chunk is bound to: only its
    /// chunks are collected with it, and the whole body must be that
    /// session's. `None`: an unbound chunk (an older writer's).
    pub session: Option<u64>,
    /// The chunk's own signature (base64 of a truncated HMAC-SHA256 over
    /// `Chunk::covered`), written by a node with a secret.
    pub tag: Option<&'a str>,
}

/// Length in bytes of a chunk's tag (HMAC-SHA256 truncated).
pub(crate) const CHUNK_TAG_LEN: usize = 16;
/// Base64 length of a chunk's tag.
const CHUNK_TAG_B64_LEN: usize = CHUNK_TAG_LEN.div_ceil(3) * 4;

impl Chunk<'_> {
    /// What a bound chunk's tag covers: `ID " " INDEX "/" TOTAL " "
    /// SESSION " " PIECE`, as its writer writes them (lowercase hex, no
    /// leading zeros), into `out` (emptied first).
    pub(crate) fn covered(&self, out: &mut String) {
        use fmt::Write as _;
        out.clear();
        let _ = write!(
            out,
            "{:08x} {}/{} {:016x} ",
            self.id,
            self.index,
            self.total,
            self.session.unwrap_or(0)
        );
        out.push_str(self.piece);
    }
}

/// Reads cleaned chat text (see [`clean`]) as a frame or a chunk.
pub fn parse_chat_text(text: &str) -> Result<ChatText<'_>, WireError> {
    if let Some(start) = frame_start_of(text) {
        let rest = text[start.len()..]
            .strip_suffix(FRAME_END)
            .ok_or(WireError::Malformed("it does not end with \\x03"))?;
        four_digits(rest)?;
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

/// The head of a frame at the front of `text`: its start (either form) and
/// its four digits; the rest is not looked at. What a chat transport reads
/// to post a frame again with other digits.
#[cfg(feature = "stackexchange")]
pub(crate) fn frame_head(text: &str) -> Option<(&'static str, u16)> {
    let start = frame_start_of(text)?;
    let digits = four_digits(&text[start.len()..]).ok()?;
    Some((start, digits.parse().ok()?))
}

/// The frame start `text` begins with, if any.
#[inline]
fn frame_start_of(text: &str) -> Option<&'static str> {
    [FRAME_START, FRAME_START_SINGLE_LINE]
        .into_iter()
        .find(|start| text.starts_with(start))
}

/// The four digits at the front of `rest` (a frame after its start).
#[inline]
fn four_digits(rest: &str) -> Result<&str, WireError> {
    let digits = rest
        .get(..4)
        .ok_or(WireError::Malformed("it is too short"))?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(WireError::Malformed(
            "the four digits after \\x02 are missing",
        ));
    }
    Ok(digits)
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
    // A bound chunk: `SESSION[.TAG] PIECE`.
    let (session, tag, piece) = match piece.split_once(' ') {
        None => (None, None, piece),
        Some((binding, piece)) => {
            let (session, tag) = match binding.split_once('.') {
                Some((session, tag)) => (session, Some(tag)),
                None => (binding, None),
            };
            if session.len() != 16 || !session.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad("the session is not 16 hex digits"));
            }
            let session = u64::from_str_radix(session, 16)
                .map_err(|_| bad("the session is not 16 hex digits"))?;
            if tag.is_some_and(|t| t.len() != CHUNK_TAG_B64_LEN) {
                return Err(bad("the tag is not a chunk's signature"));
            }
            (Some(session), tag, piece)
        }
    };
    if piece.is_empty() {
        return Err(bad("the piece is empty"));
    }
    Ok(Chunk {
        id,
        index,
        total,
        piece,
        session,
        tag,
    })
}

/// Writes a frame around a base64 body.
pub fn write_frame(out: &mut String, lines: LineMode, digits: u16, body_b64: &str) {
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
pub(crate) fn frame_len(lines: LineMode, body_len: usize) -> usize {
    lines.frame_start().len() + 4 + body_len.div_ceil(3) * 4 + 1
}

/// Writes a frame around `body`, base64-encoding it in place.
pub(crate) fn write_frame_of(out: &mut String, lines: LineMode, digits: u16, body: &[u8]) {
    out.reserve(frame_len(lines, body.len()));
    out.push_str(lines.frame_start());
    push_digits(out, digits);
    BASE64.encode_append(body, out);
    out.push(FRAME_END);
}

/// Signs a bound chunk: the tag of the bytes it covers ([`Chunk::covered`]).
pub(crate) type ChunkSigner<'a> = &'a dyn Fn(&[u8]) -> [u8; CHUNK_TAG_LEN];

/// The sender session a node's chunks are bound to, and what signs them
/// (with a secret).
#[derive(Clone, Copy)]
pub(crate) struct Binding<'a> {
    pub(crate) session: u64,
    pub(crate) signer: Option<ChunkSigner<'a>>,
}

/// Writes one chunk (`binding`: its session and tag).
fn write_chunk(
    out: &mut String,
    lines: LineMode,
    chunk: &Chunk<'_>,
    binding: Option<Binding<'_>>,
    covered: &mut String,
) {
    use fmt::Write as _;
    out.push_str(lines.chunk_start());
    let _ = write!(out, "{:08x} {}/{} ", chunk.id, chunk.index, chunk.total);
    if let Some(binding) = binding {
        let _ = write!(out, "{:016x}", binding.session);
        if let Some(sign) = binding.signer {
            chunk.covered(covered);
            out.push('.');
            super::append_base64(&sign(covered.as_bytes()), out);
        }
        out.push(' ');
    }
    out.push_str(chunk.piece);
}

/// The longest chunk header for `total` pieces, to size the pieces (an
/// unbound chunk; a bound one adds [`binding_len`]).
pub(crate) fn chunk_overhead(lines: LineMode, total: u32) -> usize {
    let digits = total.to_string().len();
    lines.chunk_start().len() + 8 + 1 + digits + 1 + digits + 1
}

/// What binding a chunk to a session adds to its header: the session and
/// a space, and with a signature its tag.
pub(crate) fn binding_len(signed: bool) -> usize {
    16 + 1 + if signed { 1 + CHUNK_TAG_B64_LEN } else { 0 }
}

/// Splits a base64 body into chunk texts of at most `max_len` bytes each
/// (unbound chunks: see `docs/wire-format.md`). Returns `None` when
/// `max_len` is too small to carry any piece.
pub fn split_into_chunks(
    lines: LineMode,
    id: u32,
    body_b64: &str,
    max_len: usize,
) -> Option<Vec<String>> {
    split(lines, id, None, body_b64, max_len)
}

/// Splits a base64 body into chunks bound to `binding`'s session (and
/// signed, with its signer), of at most `max_len` bytes each.
pub(crate) fn split_into_bound_chunks(
    lines: LineMode,
    id: u32,
    binding: Binding<'_>,
    body_b64: &str,
    max_len: usize,
) -> Option<Vec<String>> {
    split(lines, id, Some(binding), body_b64, max_len)
}

fn split(
    lines: LineMode,
    id: u32,
    binding: Option<Binding<'_>>,
    body_b64: &str,
    max_len: usize,
) -> Option<Vec<String>> {
    let extra = binding.map_or(0, |b| binding_len(b.signer.is_some()));
    // The header grows with the number of pieces; find the smallest count
    // whose pieces fit.
    let mut total: u32 = 2;
    let mut covered = String::new();
    loop {
        let room = max_len.checked_sub(chunk_overhead(lines, total) + extra)?;
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
                    let chunk = Chunk {
                        id,
                        index: i as u32 + 1,
                        total,
                        piece: std::str::from_utf8(piece).unwrap_or_default(),
                        session: binding.map(|b| b.session),
                        tag: None,
                    };
                    write_chunk(&mut out, lines, &chunk, binding, &mut covered);
                    out
                })
                .collect::<Vec<_>>();
            return Some(chunks);
        }
        total = u32::try_from(needed).ok()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{encode_base64, Codec};

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
    fn frame_round_trips_and_zero_width_is_stripped() {
        let mut b64 = String::new();
        encode_base64(&body(Codec::Json), &mut b64);
        let mut text = String::new();
        write_frame(&mut text, LineMode::Multi, 42, &b64);
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
        let chunks = split_into_chunks(LineMode::Multi, 0xdeadbeef, &body, 100).unwrap();
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
        assert!(split_into_chunks(LineMode::Multi, 1, &body, 10).is_none());
    }

    fn body(codec: Codec) -> Vec<u8> {
        crate::wire::write::tests::body(codec)
    }
}
