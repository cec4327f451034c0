//! Presence and repair bodies (`_hb`, `_rq`, `_nak`, `_rp`; `_el`, `_pv`, `_pk` are written elsewhere): their lists
//! read, and the bodies written (reserved keys only; docs/wire-format.md,
//! sections 4 and 6).

use serde_json::value::RawValue;

use super::msgpack_scan::{msgpack_uint, skip_msgpack};
use super::msgpack_write::{write_array_len, write_map_len, write_msgpack_str, write_msgpack_uint};
use super::write::{write_json_list, write_uint_entry, Origin};
use super::{Codec, Sign, KEY_HEARTBEAT, KEY_REPAIR, KEY_REQUEST, KEY_TIMESTAMP, KEY_UNREPAIRABLE};

/// One range of a `_rq` or `_nak` list: `[instance, session, first, end]`
/// (envelopes `first..end` of that session).
pub(crate) type WireRange = (String, u64, u64, u64);

/// Reads a `_rq` or `_nak` list (at most `max` ranges).
pub(crate) fn read_ranges(codec: Codec, raw: &[u8], max: usize) -> Result<Vec<WireRange>, String> {
    let ranges: Vec<WireRange> = codec.decode(raw)?;
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

/// An envelope to post again, as [`write_control_body`] writes it.
#[derive(Debug, Clone)]
pub(crate) struct Repost {
    pub(crate) seq: u64,
    pub(crate) kinds: usize,
    pub(crate) bytes: Vec<u8>,
}

// Writing: the MessagePack writers of msgpack_write.rs, with the JSON forms
// of the few shapes these bodies have.

fn write_key(codec: Codec, buf: &mut Vec<u8>, key: &str) {
    match codec {
        Codec::Json => {
            buf.push(b'"');
            buf.extend_from_slice(key.as_bytes());
            buf.extend_from_slice(b"\":");
        }
        Codec::MessagePack => write_msgpack_str(buf, key),
    }
}

fn write_uint(codec: Codec, buf: &mut Vec<u8>, n: u64) {
    match codec {
        Codec::Json => buf.extend_from_slice(n.to_string().as_bytes()),
        Codec::MessagePack => write_msgpack_uint(buf, n),
    }
}

/// `key: [[instance, session, first, end], ...]`.
fn write_entry(codec: Codec, buf: &mut Vec<u8>, key: &str, list: &[WireRange]) {
    write_key(codec, buf, key);
    match codec {
        Codec::Json => buf.push(b'['),
        Codec::MessagePack => write_array_len(buf, list.len()),
    }
    for (i, (instance, session, first, end)) in list.iter().enumerate() {
        match codec {
            Codec::Json => {
                if i > 0 {
                    buf.push(b',');
                }
                buf.push(b'[');
                // A JSON string, escaped as serde_json does it.
                let quoted = serde_json::Value::from(instance.as_str()).to_string();
                buf.extend_from_slice(quoted.as_bytes());
                for n in [session, first, end] {
                    buf.push(b',');
                    write_uint(codec, buf, *n);
                }
                buf.push(b']');
            }
            Codec::MessagePack => {
                write_array_len(buf, 4);
                write_msgpack_str(buf, instance);
                for n in [session, first, end] {
                    write_msgpack_uint(buf, *n);
                }
            }
        }
    }
    if codec == Codec::Json {
        buf.push(b']');
    }
}

/// The body of a presence or repair post: `origin`'s metadata, a heartbeat
/// (`_hb`, how many envelopes it posted), the lists that are not empty, and
/// the timestamp and signature with a signer. Only reserved keys: a Python
/// SocketScience receiver calls no callback for it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_control_body(
    buf: &mut Vec<u8>,
    codec: Codec,
    origin: &Origin,
    heartbeat: u64,
    requests: &[WireRange],
    unrepairable: &[WireRange],
    repairs: &[Repost],
    entries: &[&[u8]],
    signer: Option<&dyn Sign>,
) {
    buf.clear();
    match codec {
        Codec::Json => {
            buf.push(b'{');
            buf.extend_from_slice(origin.entries(codec));
            buf.push(b',');
            write_uint_entry(codec, buf, KEY_HEARTBEAT, heartbeat);
            // Entries written elsewhere: the election's `_el`, presence's
            // `_pv` and `_pk`.
            for entry in entries {
                buf.push(b',');
                buf.extend_from_slice(entry);
            }
            for (key, list) in [(KEY_REQUEST, requests), (KEY_UNREPAIRABLE, unrepairable)] {
                if !list.is_empty() {
                    buf.push(b',');
                    write_entry(codec, buf, key, list);
                }
            }
            if !repairs.is_empty() {
                write_json_list(buf, KEY_REPAIR, repairs, |buf, e| {
                    buf.push(b'[');
                    buf.extend_from_slice(e.seq.to_string().as_bytes());
                    buf.extend_from_slice(b",{");
                    buf.extend_from_slice(&e.bytes);
                    buf.extend_from_slice(b"}]");
                });
            }
            match signer {
                Some(signer) => {
                    buf.push(b',');
                    write_uint_entry(codec, buf, KEY_TIMESTAMP, signer.timestamp());
                    signer.sign(codec, buf);
                }
                None => buf.push(b'}'),
            }
        }
        Codec::MessagePack => {
            let count = 3
                + entries.len()
                + usize::from(!requests.is_empty())
                + usize::from(!unrepairable.is_empty())
                + usize::from(!repairs.is_empty())
                + if signer.is_some() { 2 } else { 0 };
            write_map_len(buf, count);
            buf.extend_from_slice(origin.entries(codec));
            write_uint_entry(codec, buf, KEY_HEARTBEAT, heartbeat);
            for entry in entries {
                buf.extend_from_slice(entry);
            }
            for (key, list) in [(KEY_REQUEST, requests), (KEY_UNREPAIRABLE, unrepairable)] {
                if !list.is_empty() {
                    write_entry(codec, buf, key, list);
                }
            }
            if !repairs.is_empty() {
                write_key(codec, buf, KEY_REPAIR);
                write_array_len(buf, repairs.len());
                for e in repairs {
                    write_array_len(buf, 2);
                    write_msgpack_uint(buf, e.seq);
                    write_map_len(buf, e.kinds);
                    buf.extend_from_slice(&e.bytes);
                }
            }
            if let Some(signer) = signer {
                write_uint_entry(codec, buf, KEY_TIMESTAMP, signer.timestamp());
                signer.sign(codec, buf);
            }
        }
    }
}
