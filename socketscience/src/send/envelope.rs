//! Outgoing envelopes: one or several messages in one chat message.

use std::fmt;

use crate::error::{Error, Result};
use crate::message::Message;
use crate::security::Keys;
use crate::wire::{Codec, KEY_BATCH, KEY_COUNT, KEY_FROM, KEY_SEQ, KEY_SESSION, KEY_TIMESTAMP};

/// Several messages of different kinds that travel in one chat message, as
/// SocketScience's payload dict does (`{'ping': ..., 'metasmoke_state': ...}`).
///
/// ```
/// # use socketscience::{message, Envelope};
/// #[message("ping")]
/// pub struct Ping { pub location: String, pub timestamp: f64 }
/// #[message("metasmoke_state")]
/// #[serde(rename_all = "lowercase")]
/// pub enum MetasmokeState { Up, Down }
///
/// let envelope = Envelope::new()
///     .with(Ping { location: "Henders/EC2".into(), timestamp: 1.0 })?
///     .with(MetasmokeState::Down)?;
/// assert_eq!(envelope.kinds().collect::<Vec<_>>(), ["ping", "metasmoke_state"]);
/// # Ok::<(), socketscience::Error>(())
/// ```
#[derive(Default)]
pub struct Envelope {
    entries: Vec<(&'static str, Box<dyn ErasedMessage>)>,
}

impl Envelope {
    /// An empty envelope.
    pub fn new() -> Envelope {
        Envelope::default()
    }

    /// Adds a message; fails if its kind is already in the envelope.
    pub fn with<M: Message>(mut self, message: M) -> Result<Envelope> {
        self.push(message)?;
        Ok(self)
    }

    /// Adds a message; fails if its kind is already in the envelope.
    pub fn push<M: Message>(&mut self, message: M) -> Result<()> {
        if self.entries.iter().any(|(kind, _)| *kind == M::KIND) {
            return Err(Error::KindRepeated { kind: M::KIND });
        }
        self.entries.push((M::KIND, Box::new(message)));
        Ok(())
    }

    /// The kinds in the envelope, in order.
    pub fn kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.entries.iter().map(|(kind, _)| *kind)
    }

    /// How many messages the envelope holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the envelope holds no message.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("kinds", &self.kinds().collect::<Vec<_>>())
            .finish()
    }
}

trait ErasedMessage: Send {
    fn write(&self, kind: &'static str, w: &mut BodyWriter) -> Result<()>;
}

impl<M: Message> ErasedMessage for M {
    fn write(&self, kind: &'static str, w: &mut BodyWriter) -> Result<()> {
        w.message(kind, self)
    }
}

mod sealed {
    pub trait Sealed {}
}

/// What a node can send: any [`Message`], or an [`Envelope`] of several.
pub trait Payload: sealed::Sealed + Send {
    #[doc(hidden)]
    fn write_messages(&self, w: &mut BodyWriter) -> Result<()>;
}

impl<M: Message> sealed::Sealed for M {}
impl<M: Message> Payload for M {
    fn write_messages(&self, w: &mut BodyWriter) -> Result<()> {
        w.message(M::KIND, self)
    }
}

impl sealed::Sealed for Envelope {}
impl Payload for Envelope {
    fn write_messages(&self, w: &mut BodyWriter) -> Result<()> {
        self.entries
            .iter()
            .try_for_each(|(kind, message)| message.write(kind, w))
    }
}

/// Writes one envelope's messages in one codec: the map's entries, without
/// the map around them, so that the transport side can frame one envelope
/// alone or several in one post (see [`assemble`]).
pub struct BodyWriter {
    codec: Codec,
    buf: Vec<u8>,
    kinds: Kinds,
}

/// The kinds of one envelope: usually one, so no allocation for it.
#[derive(Debug, Default)]
pub(crate) struct Kinds {
    first: Option<&'static str>,
    rest: Vec<&'static str>,
}

impl Kinds {
    fn push(&mut self, kind: &'static str) {
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

thread_local! {
    /// The buffer this thread encodes its next envelope into: an emptied
    /// one from the outbox, given when the last envelope was queued.
    static SCRATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Gives this thread `buf` (emptied) to encode its next envelope into.
pub(crate) fn give_scratch(buf: Vec<u8>) {
    SCRATCH.set(buf);
}

impl BodyWriter {
    pub(crate) fn new(codec: Codec) -> BodyWriter {
        let mut buf = SCRATCH.take();
        buf.clear();
        BodyWriter {
            codec,
            buf,
            kinds: Kinds::default(),
        }
    }

    /// Bytes written so far.
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Writes one message, turning a serde failure into [`Error::Encode`].
    pub(crate) fn message<T: serde::Serialize + ?Sized>(
        &mut self,
        kind: &'static str,
        value: &T,
    ) -> Result<()> {
        let codec = self.codec;
        let mark = self.buf.len();
        if codec == Codec::Json && !self.kinds.is_empty() {
            self.buf.push(b',');
        }
        match write_entry(codec, &mut self.buf, kind, value) {
            Ok(()) => {
                self.kinds.push(kind);
                Ok(())
            }
            Err(reason) => {
                self.buf.truncate(mark);
                Err(Error::Encode {
                    kind,
                    codec,
                    reason,
                })
            }
        }
    }

    /// The envelope numbered `seq`, its messages also written into `own`
    /// (given empty) as the body for this node's own handlers: its messages
    /// only, no metadata.
    pub(crate) fn finish_into(self, seq: u64, own: &mut Vec<u8>) -> Encoded {
        match self.codec {
            Codec::Json => {
                own.push(b'{');
                own.extend_from_slice(&self.buf);
                own.push(b'}');
            }
            Codec::MessagePack => {
                write_map_len(own, self.kinds.len());
                own.extend_from_slice(&self.buf);
            }
        }
        Encoded {
            seq,
            kinds: self.kinds,
            bytes: self.buf,
        }
    }
}

impl BodyWriter {
    /// Why Python SocketScience instances could not take this envelope
    /// (MessagePack) whole, posted alone with `origin`'s metadata (and a
    /// signature if `signed`) in one post of at most `room` body bytes.
    pub(crate) fn check_for_python(
        &self,
        origin: &Origin,
        signed: bool,
        room: usize,
    ) -> std::result::Result<(), String> {
        // Bounded above: the map header (5), `_seq` (5 + 9), `_ts` and `_sig`.
        let size = 5 + self.buf.len() + origin.msgpack.len() + 14 + if signed { 52 } else { 0 };
        if size > room {
            return Err(format!(
                "it takes up to {size} bytes encoded, and one chat message here carries at most \
                 {room}; Python SocketScience cannot read an envelope in chunks, so send its \
                 messages in smaller envelopes"
            ));
        }
        match crate::wire::python_would_raise(&self.buf) {
            Some(reason) => Err(reason),
            None => Ok(()),
        }
    }
}

/// Writes `key: value` in `codec`, with no separator.
fn write_entry<T: serde::Serialize + ?Sized>(
    codec: Codec,
    buf: &mut Vec<u8>,
    key: &str,
    value: &T,
) -> std::result::Result<(), String> {
    match codec {
        Codec::Json => {
            // Serialising a &str to JSON cannot fail.
            let _ = serde_json::to_writer(&mut *buf, key);
            buf.push(b':');
            serde_json::to_writer(buf, value).map_err(|e| e.to_string())
        }
        Codec::MessagePack => {
            write_msgpack_str(buf, key);
            crate::msgpack::write(buf, value)
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

// rmp's writers for a `Vec` (which never fails), each behind one plain
// function: rmp's generic code is compiled once, not inlined at every use
// (callgrind: about 150 instructions per roundtrip fewer).

pub(crate) fn write_msgpack_str(buf: &mut Vec<u8>, s: &str) {
    let _ = rmp::encode::write_str(buf, s);
}

pub(crate) fn write_map_len(buf: &mut Vec<u8>, len: usize) {
    let _ = rmp::encode::write_map_len(buf, len as u32);
}

pub(crate) fn write_array_len(buf: &mut Vec<u8>, len: usize) {
    let _ = rmp::encode::write_array_len(buf, len as u32);
}

pub(crate) fn write_msgpack_uint(buf: &mut Vec<u8>, n: u64) {
    let _ = rmp::encode::write_uint(buf, n);
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
    json: Vec<u8>,
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

/// Signs what [`assemble`] writes: the keys (at least one), and the time to
/// stamp.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Signer<'a> {
    pub(crate) keys: &'a Keys,
    /// Milliseconds since the Unix epoch.
    pub(crate) timestamp: u64,
}

impl<'a> Signer<'a> {
    /// A signer stamping the time now, if there are keys to sign with.
    #[inline]
    pub(crate) fn now(keys: &'a Keys) -> Option<Signer<'a>> {
        (!keys.is_empty()).then(|| Signer {
            keys,
            timestamp: crate::clock::now_millis(),
        })
    }
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
    signer: Option<Signer<'_>>,
) -> Vec<u8> {
    let mut buf = Vec::new();
    assemble_into(&mut buf, codec, origin, envelopes, signer);
    buf
}

/// [`assemble`] into a buffer the caller reuses (cleared first).
pub(crate) fn assemble_into(
    buf: &mut Vec<u8>,
    codec: Codec,
    origin: &Origin,
    envelopes: &[Encoded],
    signer: Option<Signer<'_>>,
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
                write_uint_entry(codec, buf, KEY_TIMESTAMP, signer.timestamp);
            }
            if count > 1 {
                buf.extend_from_slice(b",\"");
                buf.extend_from_slice(KEY_BATCH.as_bytes());
                buf.extend_from_slice(b"\":[");
                for (i, e) in envelopes.iter().enumerate() {
                    if i > 0 {
                        buf.push(b',');
                    }
                    buf.push(b'{');
                    buf.extend_from_slice(&e.bytes);
                    buf.push(b'}');
                }
                buf.push(b']');
            }
            match signer {
                Some(signer) => signer.keys.sign(codec, buf),
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
                write_uint_entry(codec, buf, KEY_TIMESTAMP, signer.timestamp);
                signer.keys.sign(codec, buf);
            }
        }
    }
}

/// The MessagePack body of several `envelopes` (consecutive numbers) as a
/// batch, where a kind may repeat: `{"_from", "_sid", "_seq"[, "_ts"],
/// "_batch": [{kinds}, ...][, "_sig"]}`, into `buf` (cleared first).
pub(crate) fn assemble_msgpack_batch_into(
    buf: &mut Vec<u8>,
    origin: &Origin,
    envelopes: &[Encoded],
    signer: Option<Signer<'_>>,
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
        write_uint_entry(codec, buf, KEY_TIMESTAMP, signer.timestamp);
    }
    write_msgpack_str(buf, KEY_BATCH);
    let _ = rmp::encode::write_array_len(buf, envelopes.len() as u32);
    for e in envelopes {
        write_map_len(buf, e.kinds.len());
        buf.extend_from_slice(&e.bytes);
    }
    if let Some(signer) = signer {
        signer.keys.sign(codec, buf);
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
/// [`assemble`] writes first), to recognise a node's own posts before
/// reading them.
pub(crate) fn batch_prefix(origin: &Origin) -> Vec<u8> {
    let mut buf = vec![b'{'];
    buf.extend_from_slice(&origin.json);
    buf.push(b',');
    buf
}

/// An upper bound of the body size [`assemble`] gives when `next` joins a
/// group whose bodies so far total `bytes`.
pub(crate) fn grown_size(bytes: usize, next: &Encoded) -> usize {
    bytes + next.bytes.len() + 3
}

/// The body size of `origin`'s metadata, timestamp and signature, bounded
/// above.
pub(crate) fn overhead(origin: &Origin) -> usize {
    origin.from_len * 6 + 160
}
