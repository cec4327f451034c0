//! Owned decoding and encoding of whole envelopes, for the `socketscience`
//! command, tests and tools: [`decode_body`], [`encode_frame`]. The
//! values they carry, [`Value`], are in `value.rs`.

use serde::Serialize;

use super::{
    encode_base64, inflate_body, parse_body, write_frame, BodyLimits, Codec, LineMode, Value,
    WireError, KEY_BATCH,
};

/// The messages of a decoded body: kind and value, in the body's order.
type Messages = Vec<(String, Value)>;

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
/// owned values, within the default limits (at most 64 kinds, nested at
/// most 32 deep). Every value is shown, bytes and non-finite floats
/// included.
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

/// Writes `payload`, a map (a [`Value::Map`], a `serde_json::Map`, ...),
/// as one frame: the map in `codec` (MessagePack as Python's
/// `msgpack.dumps` writes it, entries in the map's own order), base64,
/// then the frame around it with the four `digits` (taken modulo
/// 10000).
///
/// Every key is written as given, reserved ones (`_from`, ...) included.
/// The frame is not split: see [`split_into_chunks`] for long ones.
///
/// ```
/// use socketscience::wire::{encode_frame, Codec, LineMode};
///
/// let payload = serde_json::json!({"metasmoke_state": "down"});
/// let frame = encode_frame(Codec::Json, LineMode::Multi, 42, &payload)?;
/// assert_eq!(frame, ".\n\u{2}0042eyJtZXRhc21va2Vfc3RhdGUiOiJkb3duIn0=\u{3}");
/// # Ok::<(), socketscience::wire::WireError>(())
/// ```
///
/// [`split_into_chunks`]: super::split_into_chunks
pub fn encode_frame<T: FramePayload + ?Sized>(
    codec: Codec,
    lines: LineMode,
    digits: u16,
    payload: &T,
) -> Result<String, WireError> {
    let body = payload
        .encode(codec)
        .map_err(|reason| WireError::Body { codec, reason })?;
    if Codec::sniff(&body) != codec
        || (codec == Codec::MessagePack
            && !super::msgpack_scan::is_map(rmp::Marker::from_u8(body[0])))
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

/// What [`encode_frame`] writes: a map of kinds to values, as a [`Value`]
/// or as `serde_json`'s `Value` or `Map`.
pub trait FramePayload: sealed::Sealed {
    /// The payload in `codec`, or why it cannot be written.
    #[doc(hidden)]
    fn encode(&self, codec: Codec) -> Result<Vec<u8>, String>;
}

mod sealed {
    pub trait Sealed {}
}

/// A serde value in `codec` (MessagePack as Python's `msgpack.dumps`
/// writes it).
fn encode_serde<T: Serialize + ?Sized>(codec: Codec, payload: &T) -> Result<Vec<u8>, String> {
    match codec {
        Codec::Json => serde_json::to_vec(payload).map_err(|e| e.to_string()),
        Codec::MessagePack => {
            let mut buf = Vec::new();
            super::write_msgpack(&mut buf, payload).map(|()| buf)
        }
    }
}

macro_rules! frame_payload {
    ($($ty:ty),*) => {$(
        impl sealed::Sealed for $ty {}
        impl FramePayload for $ty {
            fn encode(&self, codec: Codec) -> Result<Vec<u8>, String> {
                encode_serde(codec, self)
            }
        }
    )*};
}

frame_payload!(
    Value,
    serde_json::Value,
    serde_json::Map<String, serde_json::Value>
);

#[cfg(test)]
mod tests {
    use super::super::{clean, decode_base64, parse_chat_text, ChatText};
    use super::*;

    fn round_trip(codec: Codec, lines: LineMode, payload: serde_json::Value) -> Decoded {
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
            for lines in [LineMode::Multi, LineMode::Single] {
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
            LineMode::Multi,
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
            LineMode::Multi,
            serde_json::json!({"_seq": 5, "_count": 3, "a": 1}),
        );
        assert_eq!((decoded.count, decoded.batch), (Some(3), None));
    }

    #[test]
    fn msgpack_is_what_python_writes() {
        // msgpack.dumps({"n": 1, "s": "x"}) == b'\x82\xa1n\x01\xa1s\xa1x'
        let frame = encode_frame(
            Codec::MessagePack,
            LineMode::Multi,
            0,
            serde_json::json!({"n": 1, "s": "x"}).as_object().unwrap(),
        )
        .unwrap();
        let mut expected = String::from(".\n\u{2}0000");
        encode_base64(b"\x82\xa1n\x01\xa1s\xa1x", &mut expected);
        expected.push('\u{3}');
        assert_eq!(frame, expected);
    }
}
