//! A body read: its messages, still in their codec's bytes, and its
//! metadata; the limits applied while reading it. The codecs' readers are
//! `json.rs` and `msgpack.rs`.

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::json::parse_json_body;
use super::msgpack::parse_msgpack_body;
use super::{Codec, WireError};

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
    /// `_pv`: what the sender says about itself, still in the codec.
    pub meta: Option<&'a [u8]>,
    /// `_pk`: the kinds the sender handles, still in the codec.
    pub kinds: Option<&'a [u8]>,
    /// `_ps`: the kinds the sender handles shared, still in the codec.
    pub shared: Option<&'a [u8]>,
    /// `_sc`: the sender's confirmations of shared jobs, still in the codec.
    pub confirmed: Option<&'a [u8]>,
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

pub(super) enum BodyError {
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

/// Most envelopes one JSON batch may hold.
pub(super) const MAX_BATCH: usize = 4_096;

/// A count must be at least 1 and come with a sequence number.
#[inline]
pub(super) fn check_count(count: Option<u64>, seq: Option<u64>) -> Result<(), BodyError> {
    match count {
        None => Ok(()),
        Some(n) => check_some_count(n, seq),
    }
}

#[inline(never)]
fn check_some_count(n: u64, seq: Option<u64>) -> Result<(), BodyError> {
    if n == 0 {
        return Err("`_count` is 0".into());
    }
    if n > MAX_BATCH as u64 {
        return Err(BodyError::Limit(WireError::TooLarge {
            what: "the number of envelopes in one body",
            size: usize::try_from(n).unwrap_or(usize::MAX),
            max: MAX_BATCH,
        }));
    }
    match seq {
        None => Err("`_count` without `_seq`".into()),
        Some(seq) if seq.checked_add(n).is_none() => Err("`_seq` + `_count` overflows".into()),
        Some(_) => Ok(()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::write::tests::{body, encoded, origin};
    use crate::wire::{assemble, parse_body};

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
