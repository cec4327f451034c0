//! A body written: one envelope's entries (each message's kind and value in
//! the node's codec), the sender's metadata, and the body of a post around
//! them (one envelope, or a JSON batch or merged MessagePack map of
//! several; `batch.rs` has the MessagePack batch). Key order: the
//! messages, `_from`, `_sid`, `_seq`, then `_ts`, `_batch` or `_count`,
//! and `_sig` last.

use serde::Serialize;

use super::msgpack_write::{write_map_len, write_msgpack, write_msgpack_str};
use super::signature::Sign;
use super::{Codec, KEY_BATCH, KEY_COUNT, KEY_FROM, KEY_SEQ, KEY_SESSION, KEY_TIMESTAMP};

/// Appends one message, `kind: value`, to an envelope's entries in `buf`
/// (JSON entries comma-separated: `first` says whether it is the first).
/// On failure (serde's reason) `buf` is left as it was.
#[inline]
pub(crate) fn write_message<T: Serialize + ?Sized>(
    codec: Codec,
    buf: &mut Vec<u8>,
    first: bool,
    kind: &str,
    value: &T,
) -> Result<(), String> {
    let mark = buf.len();
    if codec == Codec::Json && !first {
        buf.push(b',');
    }
    write_entry(codec, buf, kind, value).inspect_err(|_| buf.truncate(mark))
}

/// Writes `key: value` in `codec`, with no separator.
fn write_entry<T: Serialize + ?Sized>(
    codec: Codec,
    buf: &mut Vec<u8>,
    key: &str,
    value: &T,
) -> Result<(), String> {
    match codec {
        Codec::Json => {
            // Serialising a &str to JSON cannot fail.
            let _ = serde_json::to_writer(&mut *buf, key);
            buf.push(b':');
            serde_json::to_writer(buf, value).map_err(|e| e.to_string())
        }
        Codec::MessagePack => {
            write_msgpack_str(buf, key);
            write_msgpack(buf, value)
        }
    }
}

/// Writes `key: n` in `codec`, with no separator: the metadata numbers
/// (in MessagePack straight with rmp, not through serde).
pub(crate) fn write_uint_entry(codec: Codec, buf: &mut Vec<u8>, key: &str, n: u64) {
    match codec {
        Codec::Json => {
            let _ = write_entry(codec, buf, key, &n);
        }
        Codec::MessagePack => {
            write_msgpack_str(buf, key);
            let _ = rmp::encode::write_uint(buf, n);
        }
    }
}

/// The body of one envelope's `entries` (`kinds` of them) with no metadata,
/// into `out` (given empty): what the node's own handlers read.
pub(crate) fn own_body(codec: Codec, kinds: usize, entries: &[u8], out: &mut Vec<u8>) {
    match codec {
        Codec::Json => {
            out.push(b'{');
            out.extend_from_slice(entries);
            out.push(b'}');
        }
        Codec::MessagePack => {
            write_map_len(out, kinds);
            out.extend_from_slice(entries);
        }
    }
}

/// The kinds of one envelope: usually one, so no allocation for it.
#[derive(Debug, Default)]
pub(crate) struct Kinds {
    first: Option<&'static str>,
    rest: Vec<&'static str>,
}

impl Kinds {
    pub(crate) fn push(&mut self, kind: &'static str) {
        match self.first {
            None => self.first = Some(kind),
            Some(_) => self.rest.push(kind),
        }
    }

    pub(crate) fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.first.into_iter().chain(self.rest.iter().copied())
    }
}

/// One envelope's messages, encoded and numbered, waiting to be posted.
#[derive(Debug)]
pub(crate) struct Encoded {
    pub(crate) seq: u64,
    pub(crate) kinds: Kinds,
    /// The map entries, in the node's codec; JSON entries comma-separated.
    pub(crate) bytes: Vec<u8>,
}

/// Who sends: the metadata every envelope of a node carries, `_from` and
/// `_sid`, encoded once in each codec (only `_seq` changes).
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    from_len: usize,
    /// `"_from":"…","_sid":…`
    pub(super) json: Vec<u8>,
    /// The same two map entries in MessagePack.
    msgpack: Vec<u8>,
}

impl Origin {
    pub(crate) fn new(from: &str, session: u64) -> Origin {
        let mut json = Vec::new();
        let _ = write_entry(Codec::Json, &mut json, KEY_FROM, from);
        json.push(b',');
        write_uint_entry(Codec::Json, &mut json, KEY_SESSION, session);
        let mut msgpack = Vec::new();
        let _ = write_entry(Codec::MessagePack, &mut msgpack, KEY_FROM, from);
        write_uint_entry(Codec::MessagePack, &mut msgpack, KEY_SESSION, session);
        Origin {
            from_len: from.len(),
            json,
            msgpack,
        }
    }

    pub(crate) fn entries(&self, codec: Codec) -> &[u8] {
        match codec {
            Codec::Json => &self.json,
            Codec::MessagePack => &self.msgpack,
        }
    }
}

/// The body size of `origin`'s metadata, timestamp and signature, bounded
/// above.
pub(crate) fn overhead(origin: &Origin) -> usize {
    origin.from_len * 6 + 160
}

/// The size of the MessagePack body of one envelope whose entries take
/// `entries` bytes, posted alone with `origin`'s metadata (and a signature
/// if `signed`), bounded above: the map header (5), `_seq` (5 + 9), `_ts`
/// and `_sig`.
pub(crate) fn python_size(entries: usize, origin: &Origin, signed: bool) -> usize {
    5 + entries + origin.msgpack.len() + 14 + if signed { 52 } else { 0 }
}

/// The body bytes of `envelopes` (consecutive numbers, same codec) as one
/// envelope map: a single envelope; or, for several, a JSON batch
/// (`"_batch": [{..}, {..}]`) or a merged MessagePack map (`"_count": n`,
/// only when no kind repeats, which the caller ensures). With a signer, a
/// `_ts` entry and, last, the `_sig` entry.
#[cfg(test)]
pub(crate) fn assemble(
    codec: Codec,
    origin: &Origin,
    envelopes: &[Encoded],
    signer: Option<&dyn Sign>,
) -> Vec<u8> {
    let mut buf = Vec::new();
    assemble_into(&mut buf, codec, origin, envelopes, signer);
    buf
}

/// `assemble` into a buffer the caller reuses (cleared first).
pub(crate) fn assemble_into(
    buf: &mut Vec<u8>,
    codec: Codec,
    origin: &Origin,
    envelopes: &[Encoded],
    signer: Option<&dyn Sign>,
) {
    let first = envelopes.first().map_or(0, |e| e.seq);
    let payload: usize = envelopes.iter().map(|e| e.bytes.len() + 3).sum();
    buf.clear();
    buf.reserve(payload + origin.entries(codec).len() + 96);
    let count = envelopes.len() as u64;
    match codec {
        Codec::Json => {
            buf.push(b'{');
            if let [only] = envelopes {
                if !only.bytes.is_empty() {
                    buf.extend_from_slice(&only.bytes);
                    buf.push(b',');
                }
            }
            buf.extend_from_slice(origin.entries(codec));
            buf.push(b',');
            write_uint_entry(codec, buf, KEY_SEQ, first);
            if let Some(signer) = signer {
                buf.push(b',');
                write_uint_entry(codec, buf, KEY_TIMESTAMP, signer.timestamp());
            }
            if count > 1 {
                write_json_list(buf, KEY_BATCH, envelopes, |buf, e| {
                    buf.push(b'{');
                    buf.extend_from_slice(&e.bytes);
                    buf.push(b'}');
                });
            }
            match signer {
                Some(signer) => signer.sign(codec, buf),
                None => buf.push(b'}'),
            }
        }
        Codec::MessagePack => {
            let kinds: usize = envelopes.iter().map(|e| e.kinds.len()).sum();
            let meta = 3 + usize::from(count > 1) + if signer.is_some() { 2 } else { 0 };
            write_map_len(buf, kinds + meta);
            for e in envelopes {
                buf.extend_from_slice(&e.bytes);
            }
            buf.extend_from_slice(origin.entries(codec));
            write_uint_entry(codec, buf, KEY_SEQ, first);
            if count > 1 {
                write_uint_entry(codec, buf, KEY_COUNT, count);
            }
            if let Some(signer) = signer {
                write_uint_entry(codec, buf, KEY_TIMESTAMP, signer.timestamp());
                signer.sign(codec, buf);
            }
        }
    }
}

/// Envelopes and bodies to read back, for the readers' tests.
/// Appends `,"key":[item,item,...]` to a JSON body, each item written by
/// `write`.
pub(super) fn write_json_list<T>(
    buf: &mut Vec<u8>,
    key: &str,
    items: &[T],
    mut write: impl FnMut(&mut Vec<u8>, &T),
) {
    buf.extend_from_slice(b",\"");
    buf.extend_from_slice(key.as_bytes());
    buf.extend_from_slice(b"\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        write(buf, item);
    }
    buf.push(b']');
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Envelope `seq`: one `kind`, a ping's value.
    pub(crate) fn encoded(codec: Codec, seq: u64, kind: &'static str) -> Encoded {
        let mut bytes = Vec::new();
        let value = serde_json::json!({"location": "here", "timestamp": 1.5});
        write_message(codec, &mut bytes, true, kind, &value).unwrap();
        let mut kinds = Kinds::default();
        kinds.push(kind);
        Encoded { seq, kinds, bytes }
    }

    pub(crate) fn origin() -> Origin {
        Origin::new("Henders/EC2", 99)
    }

    /// The body of envelope 7, a `ping`, from [`origin`].
    pub(crate) fn body(codec: Codec) -> Vec<u8> {
        assemble(codec, &origin(), &[encoded(codec, 7, "ping")], None)
    }
}
