//! Several envelopes in one body: which can share a merged MessagePack map,
//! the MessagePack batch, how a JSON batch starts, and compressed
//! (deflated) bodies.

use super::msgpack_write::{write_map_len, write_msgpack_str};
use super::signature::Sign;
use super::write::{write_uint_entry, Encoded, Origin};
use super::{Codec, WireError, KEY_BATCH, KEY_SEQ, KEY_TIMESTAMP};

/// The MessagePack body of several `envelopes` (consecutive numbers) as a
/// batch, where a kind may repeat: `{"_from", "_sid", "_seq"[, "_ts"],
/// "_batch": [{kinds}, ...][, "_sig"]}`, into `buf` (cleared first).
pub(crate) fn assemble_msgpack_batch_into(
    buf: &mut Vec<u8>,
    origin: &Origin,
    envelopes: &[Encoded],
    signer: Option<&dyn Sign>,
) {
    let codec = Codec::MessagePack;
    let first = envelopes.first().map_or(0, |e| e.seq);
    let payload: usize = envelopes.iter().map(|e| e.bytes.len() + 3).sum();
    buf.clear();
    buf.reserve(payload + origin.entries(codec).len() + 96);
    write_map_len(buf, 4 + if signer.is_some() { 2 } else { 0 });
    buf.extend_from_slice(origin.entries(codec));
    write_uint_entry(codec, buf, KEY_SEQ, first);
    if let Some(signer) = signer {
        write_uint_entry(codec, buf, KEY_TIMESTAMP, signer.timestamp());
    }
    write_msgpack_str(buf, KEY_BATCH);
    let _ = rmp::encode::write_array_len(buf, envelopes.len() as u32);
    for e in envelopes {
        write_map_len(buf, e.kinds.len());
        buf.extend_from_slice(&e.bytes);
    }
    if let Some(signer) = signer {
        signer.sign(codec, buf);
    }
}

/// Whether MessagePack `envelopes` can share one merged map (which Python
/// reads): no kind repeats, and at most `max_kinds` kinds in all.
pub(crate) fn mergeable(envelopes: &[Encoded], max_kinds: usize) -> bool {
    let mut seen: Vec<&str> = Vec::new();
    for kind in envelopes.iter().flat_map(|e| e.kinds.iter()) {
        if seen.len() == max_kinds || seen.contains(&kind) {
            return false;
        }
        seen.push(kind);
    }
    true
}

/// How a JSON body of several envelopes from `origin` starts (what
/// [`assemble`](super::write::assemble_into) writes first), to recognise a
/// node's own posts before reading them.
pub(crate) fn batch_prefix(origin: &Origin) -> Vec<u8> {
    let mut buf = vec![b'{'];
    buf.extend_from_slice(&origin.json);
    buf.push(b',');
    buf
}

/// An upper bound of the body size [`assemble`](super::write::assemble_into)
/// gives when `next` joins a group whose bodies so far total `bytes`.
pub(crate) fn grown_size(bytes: usize, next: &Encoded) -> usize {
    bytes + next.bytes.len() + 3
}

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
