//! The presence and repair lists of a body (`_rq`, `_nak`, `_rp`), read.

use serde_json::value::RawValue;

use super::msgpack::{msgpack_uint, skip_msgpack};
use super::Codec;

/// One range of a `_rq` or `_nak` list: `[instance, session, first, end]`
/// (envelopes `first..end` of that session).
pub(crate) type WireRange = (String, u64, u64, u64);

/// Reads a `_rq` or `_nak` list (at most `max` ranges).
pub(crate) fn read_ranges(codec: Codec, raw: &[u8], max: usize) -> Result<Vec<WireRange>, String> {
    let ranges: Vec<WireRange> = match codec {
        Codec::Json => serde_json::from_slice(raw).map_err(|e| e.to_string())?,
        Codec::MessagePack => rmp_serde::from_slice(raw).map_err(|e| e.to_string())?,
    };
    if ranges.len() > max {
        return Err(format!("{} ranges, more than {max}", ranges.len()));
    }
    Ok(ranges)
}

/// Reads a `_rp` list: each envelope's sequence number and its map of
/// kinds (still in the codec, to read as a body). At most `max` envelopes.
pub(crate) fn read_repairs(
    codec: Codec,
    raw: &[u8],
    max: usize,
    max_depth: usize,
) -> Result<Vec<(u64, &[u8])>, String> {
    match codec {
        Codec::Json => {
            let items: Vec<(u64, &RawValue)> =
                serde_json::from_slice(raw).map_err(|e| e.to_string())?;
            if items.len() > max {
                return Err(format!("{} envelopes, more than {max}", items.len()));
            }
            Ok(items
                .into_iter()
                .map(|(seq, raw)| (seq, raw.get().as_bytes()))
                .collect())
        }
        Codec::MessagePack => {
            let mut rest = raw;
            let n = rmp::decode::read_array_len(&mut rest).map_err(|e| e.to_string())? as usize;
            if n > max {
                return Err(format!("{n} envelopes, more than {max}"));
            }
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                if rmp::decode::read_array_len(&mut rest).map_err(|e| e.to_string())? != 2 {
                    return Err("an item is not [seq, map]".into());
                }
                let (seq, after) = msgpack_uint(rest).ok_or("a sequence number is not a uint")?;
                let end = skip_msgpack(after, max_depth)
                    .map_err(|_| "an envelope cannot be read".to_string())?;
                let (map, after) = after.split_at(end);
                items.push((seq, map));
                rest = after;
            }
            if !rest.is_empty() {
                return Err("trailing bytes after the list".into());
            }
            Ok(items)
        }
    }
}
