//! MessagePack bodies, read as Python's `msgpack` writes them: keys,
//! integers and values stepped over by their markers, without building
//! them. The writing side is `msgpack_write.rs`, beside it.

use std::borrow::Cow;

use rmp::Marker;

use super::body::{check_count, BodyError, Messages, MAX_BATCH};
pub(crate) use super::msgpack_write::{
    write_array_len, write_map_len, write_msgpack, write_msgpack_str, write_msgpack_uint,
};
use super::{
    BodyLimits, Control, Meta, RawValueRef, WireError, KEY_ASK, KEY_COUNT, KEY_HEARTBEAT,
    KEY_REPLY_TO, KEY_SEQ, KEY_SESSION, KEY_TIMESTAMP,
};

// Reading.

#[inline]
pub(super) fn parse_msgpack_body<'a>(
    body: &'a [u8],
    limits: BodyLimits,
    messages: &mut Messages<'a>,
    known: impl Fn(&[u8]) -> Option<&'static str>,
) -> Result<Meta<'a>, BodyError> {
    let mut rest = body;
    let len = rmp::decode::read_map_len(&mut rest).map_err(not_a_map)?;
    let len = len as usize;
    // The metadata is kept in locals (registers) and the body built once at
    // the end: a `Meta` filled field by field and then moved costs a
    // store-to-load stall per move (seen with `perf annotate`).
    let mut from = None;
    let (mut session, mut seq, mut count, mut timestamp) = (None, None, None, None);
    let mut control = None;
    // `_batch`: how many envelopes; whether kinds stand beside it.
    let (mut batch, mut top_kinds) = (None, false);
    // Sized for the usual body (a kind or a few, and the metadata), not
    // for what the sender claims.
    messages.reserve(len.min(8));
    for _ in 0..len {
        // Keys are compared as bytes: only a kind not handled here is
        // checked for UTF-8.
        let (key, after) = msgpack_str(rest).ok_or("expected a string key")?;
        rest = after;
        if let [b'_', ..] = key {
            // Metadata is read in place; other reserved keys are skipped.
            // (Literal patterns compile to a length switch and integer
            // compares; the constants they spell are checked in the tests.)
            match key {
                b"_from" => {
                    let (name, after) = msgpack_str(rest).ok_or("`_from` is not a string")?;
                    from = Some(std::str::from_utf8(name).map_err(|_| "`_from` is not UTF-8")?);
                    rest = after;
                }
                b"_sid" => session = Some(meta_uint(&mut rest, KEY_SESSION)?),
                b"_seq" => seq = Some(meta_uint(&mut rest, KEY_SEQ)?),
                b"_count" => count = Some(meta_uint(&mut rest, KEY_COUNT)?),
                b"_ts" => timestamp = Some(meta_uint(&mut rest, KEY_TIMESTAMP)?),
                b"_batch" if batch.is_none() => {
                    batch = Some(msgpack_batch(&mut rest, limits, messages, &known)?);
                }
                b"_ask" | b"_re" => {
                    // Questions: kept in order with the kinds.
                    let (value, after) = split_msgpack_value(rest, limits.max_depth)?;
                    rest = after;
                    let kind = if key == b"_ask" {
                        KEY_ASK
                    } else {
                        KEY_REPLY_TO
                    };
                    messages.push((Cow::Borrowed(kind), RawValueRef::MessagePack(value)));
                }
                _ => reserved_entry(&mut control, key, &mut rest, limits)?,
            }
            continue;
        }
        let (value, after) = split_msgpack_value(rest, limits.max_depth)?;
        rest = after;
        // (A batch's messages count here too: a body with both is refused
        // below anyway.)
        if messages.len() == limits.max_kinds {
            return Err(BodyError::Limit(WireError::TooLarge {
                what: "the number of kinds",
                size: messages.len() + 1,
                max: limits.max_kinds,
            }));
        }
        let kind = match known(key) {
            Some(kind) => kind,
            None => std::str::from_utf8(key).map_err(|_| "a key is not UTF-8")?,
        };
        messages.push((Cow::Borrowed(kind), RawValueRef::MessagePack(value)));
        top_kinds = true;
    }
    if !rest.is_empty() {
        return Err(trailing(rest.len()));
    }
    if let Some(n) = batch {
        count = Some(batch_count(n, top_kinds || count.is_some())?);
    }
    check_count(count, seq)?;
    Ok(Meta {
        from: from.map(Cow::Borrowed),
        session,
        seq,
        count,
        timestamp,
        control,
    })
}

/// A batch's envelope count, checked: not empty, not beside kinds or a
/// `_count`.
#[cold]
#[inline(never)]
fn batch_count(n: u64, beside: bool) -> Result<u64, BodyError> {
    if beside {
        return Err("a batch carries its kinds in `_batch` only".into());
    }
    if n == 0 {
        return Err("an empty `_batch`".into());
    }
    Ok(n)
}

/// Reads a MessagePack `_batch`: a list of maps of kinds (reserved keys in
/// them skipped, but for `_ask` and `_re`, kept like kinds), their messages
/// pushed onto `messages`; gives its length.
#[inline(never)]
fn msgpack_batch<'a>(
    rest: &mut &'a [u8],
    limits: BodyLimits,
    messages: &mut Messages<'a>,
    known: &impl Fn(&[u8]) -> Option<&'static str>,
) -> Result<u64, BodyError> {
    let n = rmp::decode::read_array_len(rest).map_err(|_| "`_batch` is not a list")? as usize;
    if n > MAX_BATCH {
        return Err(BodyError::Limit(WireError::TooLarge {
            what: "the number of envelopes in a batch",
            size: n,
            max: MAX_BATCH,
        }));
    }
    for _ in 0..n {
        let len = rmp::decode::read_map_len(rest).map_err(|_| "a batch item is not a map")?;
        let mut kinds = 0usize;
        for _ in 0..len {
            let (key, after) = msgpack_str(rest).ok_or("expected a string key")?;
            let (value, after) = split_msgpack_value(after, limits.max_depth)?;
            *rest = after;
            if let [b'_', ..] = key {
                // Questions are kept in order with the kinds, as at the top
                // level; other reserved keys are skipped.
                let kind = match key {
                    b"_ask" => KEY_ASK,
                    b"_re" => KEY_REPLY_TO,
                    _ => continue,
                };
                messages.push((Cow::Borrowed(kind), RawValueRef::MessagePack(value)));
                continue;
            }
            kinds += 1;
            if kinds > limits.max_kinds {
                return Err(BodyError::Limit(WireError::TooLarge {
                    what: "the number of kinds",
                    size: kinds,
                    max: limits.max_kinds,
                }));
            }
            let kind = match known(key) {
                Some(kind) => kind,
                None => std::str::from_utf8(key).map_err(|_| "a key is not UTF-8")?,
            };
            messages.push((Cow::Borrowed(kind), RawValueRef::MessagePack(value)));
        }
    }
    Ok(n as u64)
}

/// Reads a reserved key's value other than the envelope's metadata: a
/// `_hb`, `_rq`, `_nak`, `_rp`, `_el`, `_pv` or `_pk` into `control` (the lists raw); any other
/// (`_sig`, keys of later versions) is skipped. Out of line: the usual body
/// has none but `_sig`.
#[cold]
#[inline(never)]
fn reserved_entry<'a>(
    control: &mut Option<Box<Control<'a>>>,
    key: &[u8],
    rest: &mut &'a [u8],
    limits: BodyLimits,
) -> Result<(), BodyError> {
    if key == b"_hb" {
        let heartbeat = meta_uint(rest, KEY_HEARTBEAT)?;
        control.get_or_insert_with(Default::default).heartbeat = Some(heartbeat);
        return Ok(());
    }
    let (value, after) = split_msgpack_value(rest, limits.max_depth)?;
    *rest = after;
    let slot = match key {
        b"_rq" => &mut control.get_or_insert_with(Default::default).requests,
        b"_nak" => &mut control.get_or_insert_with(Default::default).unrepairable,
        b"_rp" => &mut control.get_or_insert_with(Default::default).repairs,
        b"_el" => &mut control.get_or_insert_with(Default::default).election,
        b"_pv" => &mut control.get_or_insert_with(Default::default).meta,
        b"_pk" => &mut control.get_or_insert_with(Default::default).kinds,
        b"_ps" => &mut control.get_or_insert_with(Default::default).shared,
        b"_sc" => &mut control.get_or_insert_with(Default::default).confirmed,
        _ => return Ok(()),
    };
    *slot = Some(value);
    Ok(())
}

#[cold]
#[inline(never)]
fn not_a_map(e: rmp::decode::ValueReadError) -> BodyError {
    format!("expected a map: {e}").into()
}

#[cold]
#[inline(never)]
fn trailing(bytes: usize) -> BodyError {
    format!("{bytes} trailing bytes after the map").into()
}

/// A MessagePack string's bytes (not checked for UTF-8), and what follows.
/// (Read here rather than with rmp's `read_str_len`, which reads through
/// `Read` and its error paths: this runs for every key of every body.)
pub(super) fn msgpack_str(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&marker, rest) = bytes.split_first()?;
    let (len, rest) = match marker {
        0xa0..=0xbf => (usize::from(marker & 0x1f), rest), // fixstr
        0xd9 => {
            let (n, rest) = rest.split_first()?; // str 8
            (usize::from(*n), rest)
        }
        0xda => {
            let (n, rest) = rest.split_first_chunk()?; // str 16
            (usize::from(u16::from_be_bytes(*n)), rest)
        }
        0xdb => {
            let (n, rest) = rest.split_first_chunk()?; // str 32
            (u32::from_be_bytes(*n) as usize, rest)
        }
        _ => return None,
    };
    (len <= rest.len()).then(|| rest.split_at(len))
}

/// Takes the metadata integer `key` off the front of `rest`.
#[inline(always)]
fn meta_uint(rest: &mut &[u8], key: &'static str) -> Result<u64, BodyError> {
    let (n, after) = msgpack_uint(rest).ok_or_else(|| not_uint(key))?;
    *rest = after;
    Ok(n)
}

#[cold]
#[inline(never)]
fn not_uint(key: &str) -> BodyError {
    format!("`{key}` is not an unsigned integer").into()
}

/// A MessagePack integer that is not negative, in any integer form, at the
/// front of `bytes`, and what follows. (Read here rather than with rmp's
/// `read_int`, which reads through `Read` and converts through a generic
/// number: every body has two or three of these.)
#[inline(always)]
pub(super) fn msgpack_uint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    fn take<const N: usize>(bytes: &[u8]) -> Option<([u8; N], &[u8])> {
        bytes.split_first_chunk().map(|(n, rest)| (*n, rest))
    }
    let (&marker, rest) = bytes.split_first()?;
    match Marker::from_u8(marker) {
        Marker::FixPos(n) => Some((u64::from(n), rest)),
        Marker::U8 => take(rest).map(|(b, rest)| (u8::from_be_bytes(b).into(), rest)),
        Marker::U16 => take(rest).map(|(b, rest)| (u16::from_be_bytes(b).into(), rest)),
        Marker::U32 => take(rest).map(|(b, rest)| (u32::from_be_bytes(b).into(), rest)),
        Marker::U64 => take(rest).map(|(b, rest)| (u64::from_be_bytes(b), rest)),
        // Signed forms, if the value is not negative.
        Marker::I8 => {
            take(rest).and_then(|(b, rest)| Some((i8::from_be_bytes(b).try_into().ok()?, rest)))
        }
        Marker::I16 => {
            take(rest).and_then(|(b, rest)| Some((i16::from_be_bytes(b).try_into().ok()?, rest)))
        }
        Marker::I32 => {
            take(rest).and_then(|(b, rest)| Some((i32::from_be_bytes(b).try_into().ok()?, rest)))
        }
        Marker::I64 => {
            take(rest).and_then(|(b, rest)| Some((i64::from_be_bytes(b).try_into().ok()?, rest)))
        }
        _ => None,
    }
}

/// Splits one MessagePack value off the front of `bytes`, checking depth:
/// walks the markers, allocating nothing.
fn split_msgpack_value(bytes: &[u8], max_depth: usize) -> Result<(&[u8], &[u8]), BodyError> {
    match skip_msgpack(bytes, max_depth) {
        Ok(end) => Ok(bytes.split_at(end)),
        Err(e) => Err(unskippable(e, max_depth)),
    }
}

#[cold]
#[inline(never)]
fn unskippable(e: Skip, max_depth: usize) -> BodyError {
    match e {
        Skip::CutShort => "the value is cut short".into(),
        Skip::Reserved => "a reserved MessagePack marker (0xc1)".into(),
        Skip::TooDeep => BodyError::Limit(WireError::TooLarge {
            what: "the nesting depth",
            size: max_depth + 1,
            max: max_depth,
        }),
    }
}

/// Why a MessagePack value could not be skipped (one byte, so that results
/// stay in registers on the hot path).
pub(super) enum Skip {
    CutShort,
    Reserved,
    TooDeep,
}

/// The head of the MessagePack value at some position.
pub(super) struct Head {
    /// Where the value's own bytes end (its items, if any, follow).
    pub(super) end: usize,
    /// How many items follow: a map's keys and values, an array's elements.
    pub(super) items: usize,
    /// Whether it is a map or an array (one level of nesting, even empty,
    /// as a JSON bracket is).
    pub(super) nested: bool,
}

/// Reads the head of the MessagePack value at `pos` (by rmp's markers),
/// checking that its own bytes are whole. (rmp's own `MessageLen` would
/// panic on an ext value, and does not refuse the reserved marker.)
#[inline(always)]
pub(super) fn msgpack_head(bytes: &[u8], pos: usize) -> Result<Head, Skip> {
    let marker = Marker::from_u8(*bytes.get(pos).ok_or(Skip::CutShort)?);
    let mut pos = pos + 1;
    // A big-endian length of `n` bytes at the cursor.
    let mut length = |n: usize| -> Result<usize, Skip> {
        let field = bytes.get(pos..pos + n).ok_or(Skip::CutShort)?;
        pos += n;
        Ok(field
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b)))
    };
    // (bytes to skip, items that follow)
    let (skip, items) = match marker {
        Marker::FixPos(_) | Marker::FixNeg(_) | Marker::Null | Marker::False | Marker::True => {
            (0, 0)
        }
        Marker::FixMap(n) => (0, 2 * usize::from(n)),
        Marker::FixArray(n) => (0, usize::from(n)),
        Marker::FixStr(n) => (usize::from(n), 0),
        Marker::Reserved => return Err(Skip::Reserved),
        Marker::Bin8 | Marker::Str8 => (length(1)?, 0),
        Marker::Bin16 | Marker::Str16 => (length(2)?, 0),
        Marker::Bin32 | Marker::Str32 => (length(4)?, 0),
        // An ext's type byte follows its length.
        Marker::Ext8 => (length(1)? + 1, 0),
        Marker::Ext16 => (length(2)? + 1, 0),
        Marker::Ext32 => (length(4)? + 1, 0),
        Marker::U8 | Marker::I8 => (1, 0),
        Marker::U16 | Marker::I16 => (2, 0),
        Marker::F32 | Marker::U32 | Marker::I32 => (4, 0),
        Marker::F64 | Marker::U64 | Marker::I64 => (8, 0),
        Marker::FixExt1 => (2, 0),
        Marker::FixExt2 => (3, 0),
        Marker::FixExt4 => (5, 0),
        Marker::FixExt8 => (9, 0),
        Marker::FixExt16 => (17, 0),
        Marker::Array16 => (0, length(2)?),
        Marker::Array32 => (0, length(4)?),
        Marker::Map16 => (0, 2 * length(2)?),
        Marker::Map32 => (0, 2 * length(4)?),
    };
    let end = pos
        .checked_add(skip)
        .filter(|end| *end <= bytes.len())
        .ok_or(Skip::CutShort)?;
    Ok(Head {
        end,
        items,
        nested: is_nested(marker),
    })
}

/// Whether a value with this marker is a map or an array.
#[inline(always)]
pub(super) fn is_nested(marker: Marker) -> bool {
    matches!(
        marker,
        Marker::FixMap(_)
            | Marker::FixArray(_)
            | Marker::Array16
            | Marker::Array32
            | Marker::Map16
            | Marker::Map32
    )
}

/// Whether a value with this marker is a map.
pub(super) fn is_map(marker: Marker) -> bool {
    matches!(marker, Marker::FixMap(_) | Marker::Map16 | Marker::Map32)
}

/// Where the MessagePack value at the front of `bytes` ends, checking that
/// it is whole and not nested deeper than `max_depth`.
pub(super) fn skip_msgpack(bytes: &[u8], max_depth: usize) -> Result<usize, Skip> {
    let head = msgpack_head(bytes, 0)?;
    if head.nested {
        skip_items(bytes, head, 1, max_depth)
    } else {
        Ok(head.end)
    }
}

/// Where the items of the map or array `head`, at `depth`, end. Only maps
/// and arrays recurse; every item takes at least a byte, so a false count
/// runs out quickly.
fn skip_items(bytes: &[u8], head: Head, depth: usize, max_depth: usize) -> Result<usize, Skip> {
    if depth > max_depth {
        return Err(Skip::TooDeep);
    }
    let mut pos = head.end;
    for _ in 0..head.items {
        let item = msgpack_head(bytes, pos)?;
        pos = if item.nested {
            skip_items(bytes, item, depth + 1, max_depth)?
        } else {
            item.end
        };
    }
    Ok(pos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{parse_body, KEY_BATCH, KEY_FROM};
    use serde::Serialize;
    use std::collections::BTreeMap;

    fn bytes<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
        let mut buf = Vec::new();
        write_msgpack(&mut buf, value).map(|()| buf)
    }

    #[derive(serde::Serialize)]
    struct Unit;

    #[derive(serde::Serialize)]
    struct Fields {
        unit: Unit,
        wide: u128,
        list: Vec<Option<Unit>>,
        map: BTreeMap<String, i128>,
    }

    #[test]
    fn unit_structs_are_nil_at_every_level() {
        assert_eq!(bytes(&Unit).unwrap(), [0xc0]);
        let fields = Fields {
            unit: Unit,
            wide: 300,
            list: vec![Some(Unit), None],
            map: BTreeMap::from([("n".to_owned(), -1)]),
        };
        let mut expected = vec![0x84];
        expected.extend(b"\xa4unit\xc0");
        expected.extend(b"\xa4wide\xcd\x01\x2c");
        expected.extend(b"\xa4list\x92\xc0\xc0");
        expected.extend(b"\xa3map\x81\xa1n\xff");
        assert_eq!(bytes(&fields).unwrap(), expected);
    }

    #[test]
    fn wide_integers_are_64_bit_integers_or_refused() {
        assert_eq!(
            bytes(&u128::from(u64::MAX)).unwrap(),
            b"\xcf\xff\xff\xff\xff\xff\xff\xff\xff"
        );
        assert_eq!(
            bytes(&i128::from(u64::MAX)).unwrap(),
            b"\xcf\xff\xff\xff\xff\xff\xff\xff\xff"
        );
        assert_eq!(
            bytes(&i128::from(i64::MIN)).unwrap(),
            b"\xd3\x80\0\0\0\0\0\0\0"
        );
        assert_eq!(bytes(&5i128).unwrap(), [5]);
        for e in [
            bytes(&(u128::from(u64::MAX) + 1)).unwrap_err(),
            bytes(&(i128::from(i64::MIN) - 1)).unwrap_err(),
        ] {
            assert!(e.contains("does not fit 64 bits"), "{e}");
        }
    }

    #[test]
    fn the_msgpack_reader_matches_the_metadata_keys_by_their_constants() {
        let mut body = Vec::new();
        rmp::encode::write_map_len(&mut body, 5).unwrap();
        for (key, value) in [
            (KEY_SESSION, 7u64),
            (KEY_SEQ, 8),
            (KEY_COUNT, 2),
            (KEY_TIMESTAMP, 9),
        ] {
            rmp::encode::write_str(&mut body, key).unwrap();
            rmp::encode::write_uint(&mut body, value).unwrap();
        }
        rmp::encode::write_str(&mut body, KEY_FROM).unwrap();
        rmp::encode::write_str(&mut body, "Henders/EC2").unwrap();
        let meta = parse_body(&body, BodyLimits::default()).unwrap().meta;
        assert_eq!(
            meta,
            Meta {
                from: Some("Henders/EC2".into()),
                session: Some(7),
                seq: Some(8),
                count: Some(2),
                timestamp: Some(9),
                ..Meta::default()
            }
        );
    }

    #[test]
    fn msgpack_integers_and_strings_in_every_form() {
        for n in [
            0u64,
            1,
            127,
            128,
            255,
            256,
            65_535,
            65_536,
            u32::MAX.into(),
            u64::MAX,
        ] {
            let mut buf = Vec::new();
            rmp::encode::write_uint(&mut buf, n).unwrap();
            buf.push(0xc0);
            assert_eq!(msgpack_uint(&buf), Some((n, &[0xc0][..])), "{buf:x?}");
            if let Ok(signed) = i64::try_from(n) {
                let mut buf = Vec::new();
                rmp::encode::write_sint(&mut buf, signed).unwrap();
                assert_eq!(msgpack_uint(&buf), Some((n, &[][..])), "{buf:x?}");
            }
        }
        let negative_or_not_integers: [&[u8]; 7] = [
            &[0xff],
            &[0xd0, 0x80],
            &[0xd3, 0xff, 0, 0, 0, 0, 0, 0, 0],
            &[0xcd, 1],
            &[0xcb, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0xc0],
            &[],
        ];
        for bad in negative_or_not_integers {
            assert_eq!(msgpack_uint(bad), None, "{bad:x?}");
        }
        for len in [0, 31, 32, 255, 256, 65_535, 65_536] {
            let text = "k".repeat(len);
            let mut buf = Vec::new();
            rmp::encode::write_str(&mut buf, &text).unwrap();
            buf.push(0xc0);
            assert_eq!(
                msgpack_str(&buf),
                Some((text.as_bytes(), &[0xc0][..])),
                "{len}"
            );
            assert_eq!(msgpack_str(&buf[..buf.len() - 2]), None, "cut short, {len}");
        }
        assert_eq!(msgpack_str(&[0xc4, 0]), None, "bin is not a string");
    }
    /// MessagePack batches: read in order, kinds may repeat; refused when
    /// empty, beside kinds or a `_count`, or over a limit.
    #[test]
    fn msgpack_batches_are_read_and_checked() {
        let body = |entries: &[(&str, serde_json::Value)]| {
            let mut buf = Vec::new();
            rmp::encode::write_map_len(&mut buf, entries.len() as u32).unwrap();
            for (key, value) in entries {
                rmp::encode::write_str(&mut buf, key).unwrap();
                rmp_serde::encode::write_named(&mut buf, value).unwrap();
            }
            buf
        };
        use serde_json::json;
        let good = body(&[
            (KEY_SEQ, json!(4)),
            (KEY_BATCH, json!([{"a": 1}, {"a": 2, "_x": 0}, {"b": 3}])),
        ]);
        let parsed = parse_body(&good, BodyLimits::default()).unwrap();
        assert_eq!(parsed.meta.seq, Some(4));
        assert_eq!(parsed.meta.count, Some(3));
        let kinds: Vec<&str> = parsed.messages.iter().map(|(k, _)| &**k).collect();
        assert_eq!(kinds, ["a", "a", "b"]);
        // Questions and replies stay in order with the kinds, as at the top.
        let asks = body(&[
            (KEY_SEQ, json!(0)),
            (
                KEY_BATCH,
                json!([{"_ask": 7, "q": 1}, {"_re": ["x", 7], "r": 2}]),
            ),
        ]);
        let parsed = parse_body(&asks, BodyLimits::default()).unwrap();
        let kinds: Vec<&str> = parsed.messages.iter().map(|(k, _)| &**k).collect();
        assert_eq!(kinds, [KEY_ASK, "q", KEY_REPLY_TO, "r"]);
        for bad in [
            body(&[(KEY_SEQ, json!(4)), (KEY_BATCH, json!([]))]),
            body(&[
                (KEY_SEQ, json!(4)),
                ("a", json!(1)),
                (KEY_BATCH, json!([{"a": 2}])),
            ]),
            body(&[
                (KEY_SEQ, json!(4)),
                (KEY_BATCH, json!([{"a": 2}])),
                ("a", json!(1)),
            ]),
            body(&[
                (KEY_SEQ, json!(4)),
                (KEY_COUNT, json!(1)),
                (KEY_BATCH, json!([{"a": 2}])),
            ]),
            body(&[(KEY_BATCH, json!([{"a": 2}]))]),
            body(&[(KEY_SEQ, json!(4)), (KEY_BATCH, json!([1]))]),
            body(&[(KEY_SEQ, json!(4)), (KEY_BATCH, json!({"a": 1}))]),
        ] {
            assert!(
                matches!(
                    parse_body(&bad, BodyLimits::default()),
                    Err(WireError::Body { .. })
                ),
                "{bad:02x?}"
            );
        }
        let wide = body(&[
            (KEY_SEQ, json!(0)),
            (KEY_BATCH, json!([{"a": 1, "b": 2, "c": 3}])),
        ]);
        let limits = BodyLimits {
            max_kinds: 2,
            max_depth: 32,
        };
        assert!(matches!(
            parse_body(&wide, limits),
            Err(WireError::TooLarge { .. })
        ));
    }
}
