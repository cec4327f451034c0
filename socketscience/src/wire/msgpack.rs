//! MessagePack bodies, read as Python's `msgpack` writes them: the
//! envelope's metadata read in place, its kinds and values split off
//! without building them (by `msgpack_scan.rs`, beside it), reserved
//! entries kept raw. The writing side is `msgpack_write.rs`.

use std::borrow::Cow;

use super::body::{check_count, BodyError, Messages, MAX_BATCH};
use super::msgpack_scan::{msgpack_str, msgpack_uint, split_msgpack_value};
use super::{
    BodyLimits, Control, Meta, RawValueRef, WireError, KEY_ASK, KEY_COUNT, KEY_HEARTBEAT,
    KEY_REPLY_TO, KEY_SEQ, KEY_SESSION, KEY_TIMESTAMP,
};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{parse_body, KEY_BATCH, KEY_FROM};

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
