//! Outgoing envelopes: one or several messages in one chat message.

use std::fmt;

use crate::error::{Error, Result};
use crate::message::Message;
use crate::security::Keys;
use crate::wire::{self, Codec, Kinds};

// The format of what a node sends lives in `wire` (write.rs, batch.rs);
// the send side reaches it through here too.
pub(crate) use crate::wire::{grown_size, mergeable, overhead, Encoded, Origin};

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
/// alone or several in one post (see [`wire::assemble_into`]).
pub struct BodyWriter {
    codec: Codec,
    buf: Vec<u8>,
    kinds: Kinds,
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
        match wire::write_message(codec, &mut self.buf, self.kinds.is_empty(), kind, value) {
            Ok(()) => {
                self.kinds.push(kind);
                Ok(())
            }
            Err(reason) => Err(Error::Encode {
                kind,
                codec,
                reason,
            }),
        }
    }

    /// The envelope numbered `seq`, its messages also written into `own`
    /// (given empty) as the body for this node's own handlers: its messages
    /// only, no metadata.
    pub(crate) fn finish_into(self, seq: u64, own: &mut Vec<u8>) -> Encoded {
        wire::own_body(self.codec, self.kinds.len(), &self.buf, own);
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
        let size = wire::python_size(self.buf.len(), origin, signed);
        if size > room {
            return Err(format!(
                "it takes up to {size} bytes encoded, and one chat message here carries at most \
                 {room}; Python SocketScience cannot read an envelope in chunks, so send its \
                 messages in smaller envelopes"
            ));
        }
        match wire::python_would_raise(&self.buf) {
            Some(reason) => Err(reason),
            None => Ok(()),
        }
    }
}

/// Signs what [`assemble_into`] writes: the keys (at least one), and the
/// time to stamp.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Signer<'a> {
    pub(crate) keys: &'a Keys,
    /// Milliseconds since the Unix epoch.
    pub(crate) timestamp: u64,
}

impl<'a> Signer<'a> {
    /// A signer stamping the time now, if there are keys to sign with.
    /// Stamps only grow within a process (two posts in one millisecond
    /// get consecutive ones), so that receivers can tell a presence post
    /// from a replay of an earlier one by its stamp alone.
    #[inline]
    pub(crate) fn now(keys: &'a Keys) -> Option<Signer<'a>> {
        (!keys.is_empty()).then(|| Signer {
            keys,
            timestamp: rising_millis(),
        })
    }
}

/// Milliseconds since the Unix epoch, above every value given before in
/// this process.
fn rising_millis() -> u64 {
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = crate::clock::now_millis();
    let mut last = LAST.load(std::sync::atomic::Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange_weak(
            last,
            next,
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
        ) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

impl wire::Sign for Signer<'_> {
    fn timestamp(&self) -> u64 {
        self.timestamp
    }

    fn sign(&self, codec: Codec, body: &mut Vec<u8>) {
        self.keys.sign(codec, body);
    }
}

/// [`wire::assemble_into`], signed by `signer`.
pub(crate) fn assemble_into(
    buf: &mut Vec<u8>,
    codec: Codec,
    origin: &Origin,
    envelopes: &[Encoded],
    signer: Option<Signer<'_>>,
) {
    let signer = signer.as_ref().map(|s| s as &dyn wire::Sign);
    wire::assemble_into(buf, codec, origin, envelopes, signer);
}

/// [`wire::assemble_msgpack_batch_into`], signed by `signer`.
pub(crate) fn assemble_msgpack_batch_into(
    buf: &mut Vec<u8>,
    origin: &Origin,
    envelopes: &[Encoded],
    signer: Option<Signer<'_>>,
) {
    let signer = signer.as_ref().map(|s| s as &dyn wire::Sign);
    wire::assemble_msgpack_batch_into(buf, origin, envelopes, signer);
}
