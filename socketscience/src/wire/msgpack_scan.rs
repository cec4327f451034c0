//! MessagePack values stepped over by their markers, without building
//! them: a string's bytes, an integer that is not negative, the head of a
//! value, and where a whole value ends (its depth checked). The body
//! reader (`msgpack.rs`), the control lists (`control.rs`) and the check
//! of what Python would raise on (`python.rs`) read through them.

use rmp::Marker;

use super::body::BodyError;
use super::WireError;

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
pub(super) fn split_msgpack_value(
    bytes: &[u8],
    max_depth: usize,
) -> Result<(&[u8], &[u8]), BodyError> {
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
}
