//! Owned decoding and encoding of whole envelopes, for the `socketscience`
//! command, tests and tools: [`decode_body`], [`encode_frame`], [`Value`].
use std::fmt::{self, Write as _};

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Error as _, Serialize, SerializeMap, SerializeSeq, Serializer};

use super::{
    encode_base64, inflate_body, parse_body, write_frame, BodyLimits, Codec, LineMode, WireError,
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
            serde_json::Value::Array(a) => Value::Array(a.into_iter().map(Value::from).collect()),
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
        || (codec == Codec::MessagePack && !super::msgpack::is_map(rmp::Marker::from_u8(body[0])))
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
        let value: Value = serde_json::from_str(r#"{"b":[1,{}],"a":[],"c":{"d":null}}"#).unwrap();
        assert_eq!(
            format!("{value:#}"),
            "{\n  \"b\": [\n    1,\n    {}\n  ],\n  \"a\": [],\n  \"c\": {\n    \"d\": null\n  }\n}"
        );
    }
}
