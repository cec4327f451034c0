//! Outgoing envelopes: one or several messages in one chat message.

use std::fmt;

use crate::error::{Error, Result};
use crate::message::Message;
use crate::wire::Codec;

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
    fn message_count(&self) -> usize;
    #[doc(hidden)]
    fn write_messages(&self, w: &mut BodyWriter) -> Result<()>;
}

impl<M: Message> sealed::Sealed for M {}
impl<M: Message> Payload for M {
    fn message_count(&self) -> usize {
        1
    }
    fn write_messages(&self, w: &mut BodyWriter) -> Result<()> {
        w.message(M::KIND, self)
    }
}

impl sealed::Sealed for Envelope {}
impl Payload for Envelope {
    fn message_count(&self) -> usize {
        self.entries.len()
    }
    fn write_messages(&self, w: &mut BodyWriter) -> Result<()> {
        self.entries
            .iter()
            .try_for_each(|(kind, message)| message.write(kind, w))
    }
}

/// Writes an envelope body in one codec.
///
/// The node encodes every outgoing envelope through this, once.
pub struct BodyWriter {
    codec: Codec,
    buf: Vec<u8>,
    first: bool,
}

impl BodyWriter {
    /// Starts a body of `entries` map entries (messages plus metadata).
    pub(crate) fn new(codec: Codec, entries: usize) -> BodyWriter {
        let mut buf = Vec::with_capacity(128);
        match codec {
            Codec::Json => buf.push(b'{'),
            Codec::MessagePack => {
                let _ = rmp::encode::write_map_len(&mut buf, entries as u32);
            }
        }
        BodyWriter {
            codec,
            buf,
            first: true,
        }
    }

    pub(crate) fn codec(&self) -> Codec {
        self.codec
    }

    fn key(&mut self, key: &str) {
        match self.codec {
            Codec::Json => {
                if !self.first {
                    self.buf.push(b',');
                }
                // Serialising a &str to JSON cannot fail.
                let _ = serde_json::to_writer(&mut self.buf, key);
                self.buf.push(b':');
            }
            Codec::MessagePack => {
                let _ = rmp::encode::write_str(&mut self.buf, key);
            }
        }
        self.first = false;
    }

    /// Writes one `kind: value` entry.
    pub(crate) fn entry<T: serde::Serialize + ?Sized>(
        &mut self,
        key: &str,
        value: &T,
    ) -> Result<(), String> {
        let mark = self.buf.len();
        let first = self.first;
        self.key(key);
        let result = match self.codec {
            Codec::Json => serde_json::to_writer(&mut self.buf, value).map_err(|e| e.to_string()),
            Codec::MessagePack => {
                rmp_serde::encode::write_named(&mut self.buf, value).map_err(|e| e.to_string())
            }
        };
        if result.is_err() {
            self.buf.truncate(mark);
            self.first = first;
        }
        result
    }

    /// Finishes the body.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        if self.codec == Codec::Json {
            self.buf.push(b'}');
        }
        self.buf
    }
}

impl BodyWriter {
    /// Writes one message, turning a serde failure into [`Error::Encode`].
    pub(crate) fn message<T: serde::Serialize + ?Sized>(
        &mut self,
        kind: &'static str,
        value: &T,
    ) -> Result<()> {
        let codec = self.codec();
        self.entry(kind, value).map_err(|reason| Error::Encode {
            kind,
            codec,
            reason,
        })
    }
}

impl BodyWriter {
    /// Bytes written so far.
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Writes the reserved metadata: instance name, session and sequence number.
    pub(crate) fn meta(&mut self, from: &str, session: u64, seq: u64) {
        // Strings and integers always serialise.
        let _ = self.entry(crate::wire::KEY_FROM, from);
        let _ = self.entry(crate::wire::KEY_SESSION, &session);
        let _ = self.entry(crate::wire::KEY_SEQ, &seq);
    }
}
