//! Where a signature sits in a body: the last entry, `_sig`, covering every
//! byte before it (see `docs/wire-format.md`). The keys and the HMAC are
//! `security.rs`'s; this is their layout.

use super::{append_base64, decode_base64_exact, Codec, KEY_SIGNATURE};

/// Length of a signature in bytes (HMAC-SHA256).
pub(crate) const SIG_LEN: usize = 32;
/// Base64 length of a signature.
const SIG_B64_LEN: usize = SIG_LEN.div_ceil(3) * 4;

/// JSON: `,"_sig":"`, then the base64 signature and `"}`.
const JSON_SIG_HEAD: [u8; KEY_SIGNATURE.len() + 5] = {
    let key = KEY_SIGNATURE.as_bytes();
    let mut head = [0; KEY_SIGNATURE.len() + 5];
    head[0] = b',';
    head[1] = b'"';
    let mut i = 0;
    while i < key.len() {
        head[2 + i] = key[i];
        i += 1;
    }
    head[2 + key.len()] = b'"';
    head[3 + key.len()] = b':';
    head[4 + key.len()] = b'"';
    head
};
const JSON_SUFFIX_LEN: usize = JSON_SIG_HEAD.len() + SIG_B64_LEN + 2;

/// MessagePack: the key as a fixstr, then bin 8 of [`SIG_LEN`] bytes.
const MSGPACK_SIG_HEAD: [u8; KEY_SIGNATURE.len() + 3] = {
    let key = KEY_SIGNATURE.as_bytes();
    assert!(key.len() < 32, "a fixstr");
    let mut head = [0; KEY_SIGNATURE.len() + 3];
    head[0] = 0xa0 | key.len() as u8;
    let mut i = 0;
    while i < key.len() {
        head[1 + i] = key[i];
        i += 1;
    }
    head[1 + key.len()] = 0xc4;
    head[2 + key.len()] = SIG_LEN as u8;
    head
};
const MSGPACK_SUFFIX_LEN: usize = MSGPACK_SIG_HEAD.len() + SIG_LEN;

/// Signs what the body writers write: the time to stamp (`_ts`), and the
/// `_sig` entry for the bytes written so far. (The node's keys, through
/// the send side; the format knows only where the two entries go.)
pub(crate) trait Sign {
    /// Milliseconds since the Unix epoch.
    fn timestamp(&self) -> u64;
    /// Appends the `_sig` entry for `body` so far (a JSON body without its
    /// closing brace, or a MessagePack map whose header counts `_sig`), as
    /// [`append_signature`] lays it out.
    fn sign(&self, codec: Codec, body: &mut Vec<u8>);
}

/// Appends the `_sig` entry holding `sig` to a body: JSON without its
/// closing brace (which this writes), or a MessagePack map whose header
/// counts `_sig`.
pub(crate) fn append_signature(codec: Codec, body: &mut Vec<u8>, sig: &[u8; SIG_LEN]) {
    match codec {
        Codec::Json => {
            body.extend_from_slice(&JSON_SIG_HEAD);
            append_base64(sig, body);
            body.extend_from_slice(b"\"}");
        }
        Codec::MessagePack => {
            body.extend_from_slice(&MSGPACK_SIG_HEAD);
            body.extend_from_slice(sig);
        }
    }
}

/// The covered bytes and the signature of a signed body; `None` if its
/// last entry is no signature.
pub(crate) fn split_signed(body: &[u8]) -> Option<(&[u8], [u8; SIG_LEN])> {
    match Codec::sniff(body) {
        Codec::Json => {
            let at = body.len().checked_sub(JSON_SUFFIX_LEN)?;
            let (covered, suffix) = body.split_at(at);
            let b64 = suffix.strip_prefix(&JSON_SIG_HEAD)?.strip_suffix(b"\"}")?;
            Some((covered, decode_base64_exact(b64)?))
        }
        Codec::MessagePack => {
            let at = body.len().checked_sub(MSGPACK_SUFFIX_LEN)?;
            let (covered, suffix) = body.split_at(at);
            let sig = suffix.strip_prefix(&MSGPACK_SIG_HEAD)?.try_into().ok()?;
            Some((covered, sig))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout spelled out, as `docs/wire-format.md` gives it.
    #[test]
    fn the_signature_entry_is_laid_out_as_documented() {
        assert_eq!(&JSON_SIG_HEAD, b",\"_sig\":\"");
        assert_eq!(&MSGPACK_SIG_HEAD, &[0xa4, b'_', b's', b'i', b'g', 0xc4, 32]);
        assert_eq!(SIG_B64_LEN, 44);
        for codec in [Codec::Json, Codec::MessagePack] {
            let mut body = match codec {
                Codec::Json => b"{\"a\":1".to_vec(),
                Codec::MessagePack => vec![0x82, 0xa1, b'a', 0x01],
            };
            let covered = body.clone();
            append_signature(codec, &mut body, &[7; SIG_LEN]);
            assert_eq!(
                split_signed(&body),
                Some((&covered[..], [7; SIG_LEN])),
                "{codec}"
            );
            assert_eq!(split_signed(&body[..body.len() - 1]), None, "{codec}");
        }
    }
}
