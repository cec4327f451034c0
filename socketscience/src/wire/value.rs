//! [`Value`], a body's value owned, whatever its codec: read from either
//! codec and written as MessagePack through serde, and shown as the JSON
//! Python's `json.dumps` writes.

use std::fmt::{self, Write as _};

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Error as _, Serialize, SerializeMap, SerializeSeq, Serializer};

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
/// not read: [`decode_body`](super::decode_body) fails on it.) `{}` is compact
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::decode_body;

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
