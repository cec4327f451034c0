//! The JSON body reader: one pass over the object, values kept as raw
//! JSON, batch items read in place.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::Deserializer as _;
use serde_json::value::RawValue;

use super::body::{check_count, BodyError, Messages, MAX_BATCH};
use super::{
    BodyLimits, Meta, RawValueRef, WireError, KEY_ASK, KEY_BATCH, KEY_COUNT, KEY_ELECTION,
    KEY_FROM, KEY_HEARTBEAT, KEY_PEER_KINDS, KEY_PEER_META, KEY_REPAIR, KEY_REPLY_TO, KEY_REQUEST,
    KEY_SEQ, KEY_SESSION, KEY_SHARED_CONFIRMED, KEY_SHARED_KINDS, KEY_TIMESTAMP, KEY_UNREPAIRABLE,
};

/// A map key that borrows when it can.
struct Key<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// Checks nesting depth of a JSON value without building it.
fn json_depth_ok(raw: &str, max_depth: usize) -> bool {
    // Each level takes an opening and a closing bracket.
    if raw.len() <= max_depth.saturating_mul(2) {
        return true;
    }
    // Strings may contain brackets; skip them.
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for b in raw.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max_depth {
                    return false;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

/// What one pass over a JSON body collects. Batch items push their
/// messages straight into `messages`: the body is read once.
struct JsonBody<'m, 'de> {
    limits: BodyLimits,
    meta: Meta<'de>,
    messages: &'m mut Messages<'de>,
    batch: Option<u64>,
    top_level_kinds: bool,
    over: Option<WireError>,
}

impl<'de> JsonBody<'_, 'de> {
    fn over(&mut self, what: &'static str, size: usize, max: usize) {
        self.over
            .get_or_insert(WireError::TooLarge { what, size, max });
    }

    /// Reads a map's entries: metadata at the top level only, kinds always.
    fn visit_entries<A: MapAccess<'de>>(&mut self, map: &mut A, top: bool) -> Result<(), A::Error> {
        let mut kinds = 0;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if self.over.is_some() {
                // Over a limit: read past the rest without keeping it.
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            match (&*key, top) {
                (KEY_FROM, true) => self.meta.from = Some(map.next_value::<Key<'de>>()?.0),
                (KEY_SESSION, true) => self.meta.session = Some(map.next_value()?),
                (KEY_SEQ, true) => self.meta.seq = Some(map.next_value()?),
                (KEY_COUNT, true) => self.meta.count = Some(map.next_value()?),
                (KEY_TIMESTAMP, true) => self.meta.timestamp = Some(map.next_value()?),
                (KEY_HEARTBEAT, true) => {
                    let control = self.meta.control.get_or_insert_with(Default::default);
                    control.heartbeat = Some(map.next_value()?);
                }
                (
                    KEY_REQUEST | KEY_UNREPAIRABLE | KEY_REPAIR | KEY_ELECTION | KEY_PEER_META
                    | KEY_PEER_KINDS | KEY_SHARED_KINDS | KEY_SHARED_CONFIRMED,
                    true,
                ) => {
                    let raw = map.next_value::<&'de RawValue>()?.get().as_bytes();
                    let control = self.meta.control.get_or_insert_with(Default::default);
                    *match &*key {
                        KEY_REQUEST => &mut control.requests,
                        KEY_UNREPAIRABLE => &mut control.unrepairable,
                        KEY_ELECTION => &mut control.election,
                        KEY_PEER_META => &mut control.meta,
                        KEY_PEER_KINDS => &mut control.kinds,
                        KEY_SHARED_KINDS => &mut control.shared,
                        KEY_SHARED_CONFIRMED => &mut control.confirmed,
                        _ => &mut control.repairs,
                    } = Some(raw);
                }
                (KEY_BATCH, true) => {
                    let n = map.next_value_seed(BatchSeed(self))?;
                    self.batch = Some(n);
                }
                (k, _) if k.starts_with('_') => {
                    if k == KEY_ASK || k == KEY_REPLY_TO {
                        // Questions: kept in order with the kinds (the next
                        // one is the question or the reply).
                        let raw: &'de RawValue = map.next_value()?;
                        let kind = if k == KEY_ASK { KEY_ASK } else { KEY_REPLY_TO };
                        self.messages
                            .push((Cow::Borrowed(kind), RawValueRef::Json(raw)));
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                _ => {
                    let raw: &'de RawValue = map.next_value()?;
                    kinds += 1;
                    self.top_level_kinds |= top;
                    let limits = self.limits;
                    if kinds > limits.max_kinds {
                        self.over("the number of kinds", kinds, limits.max_kinds);
                    } else if !json_depth_ok(raw.get(), limits.max_depth) {
                        self.over("the nesting depth", limits.max_depth + 1, limits.max_depth);
                    } else {
                        self.messages.push((key, RawValueRef::Json(raw)));
                    }
                }
            }
        }
        Ok(())
    }
}

/// The top-level map.
impl<'de> Visitor<'de> for &mut JsonBody<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of message kinds to values")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.visit_entries(&mut map, true)
    }
}

/// `_batch`: a list of maps of kinds; gives its length.
struct BatchSeed<'a, 'm, 'de>(&'a mut JsonBody<'m, 'de>);

impl<'de> de::DeserializeSeed<'de> for BatchSeed<'_, '_, 'de> {
    type Value = u64;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for BatchSeed<'_, '_, 'de> {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of maps of message kinds to values")
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<u64, A::Error> {
        let mut n = 0u64;
        while seq.next_element_seed(ItemSeed(&mut *self.0))?.is_some() {
            n += 1;
            if n > MAX_BATCH as u64 {
                self.0
                    .over("the number of envelopes in a batch", n as usize, MAX_BATCH);
            }
        }
        Ok(n)
    }
}

/// One envelope of a batch: a map of kinds, no metadata.
struct ItemSeed<'a, 'm, 'de>(&'a mut JsonBody<'m, 'de>);

impl<'de> de::DeserializeSeed<'de> for ItemSeed<'_, '_, 'de> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ItemSeed<'_, '_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of message kinds to values")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.0.visit_entries(&mut map, false)
    }
}

pub(super) fn parse_json_body<'a>(
    body: &'a [u8],
    limits: BodyLimits,
    messages: &mut Messages<'a>,
) -> Result<Meta<'a>, BodyError> {
    let mut parsed = JsonBody {
        limits,
        meta: Meta::default(),
        messages,
        batch: None,
        top_level_kinds: false,
        over: None,
    };
    // One UTF-8 check of the whole body (std's, fast on ASCII) instead of
    // one per string.
    let text = std::str::from_utf8(body).map_err(|e| e.to_string())?;
    let mut de = serde_json::Deserializer::from_str(text);
    de.deserialize_map(&mut parsed)
        .and_then(|()| de.end())
        .map_err(|e| e.to_string())?;
    if let Some(e) = parsed.over {
        return Err(BodyError::Limit(e));
    }
    let mut meta = parsed.meta;
    if let Some(n) = parsed.batch {
        if parsed.top_level_kinds || meta.count.is_some() {
            return Err("a batch carries its kinds in `_batch` only"
                .to_owned()
                .into());
        }
        if n == 0 {
            return Err("an empty `_batch`".to_owned().into());
        }
        meta.count = Some(n);
    }
    check_count(meta.count, meta.seq)?;
    Ok(meta)
}
