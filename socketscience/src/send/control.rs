//! The bodies of presence and repair posts: heartbeats, requests, ranges
//! that cannot be repaired and envelopes posted again (reserved keys only;
//! docs/wire-format.md, sections 4 and 6).

use super::envelope::{
    write_array_len, write_map_len, write_msgpack_str, write_msgpack_uint, write_uint_entry,
    Origin, Signer,
};
use crate::wire::{
    Codec, WireRange, KEY_HEARTBEAT, KEY_REPAIR, KEY_REQUEST, KEY_TIMESTAMP, KEY_UNREPAIRABLE,
};

/// An envelope to post again, as [`write_control_body`] writes it.
#[derive(Debug, Clone)]
pub(crate) struct Repost {
    pub(crate) seq: u64,
    pub(crate) kinds: usize,
    pub(crate) bytes: Vec<u8>,
}

// The writers of presence and repair bodies: the send path's MessagePack
// writers (rmp, in wire/msgpack.rs), with the JSON forms of the few shapes
// these bodies have.

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
    election: Option<&[u8]>,
    signer: Option<Signer<'_>>,
) {
    buf.clear();
    match codec {
        Codec::Json => {
            buf.push(b'{');
            buf.extend_from_slice(origin.entries(codec));
            buf.push(b',');
            write_uint_entry(codec, buf, KEY_HEARTBEAT, heartbeat);
            // Failover: the election's `_el` entry, written by the election.
            if let Some(entry) = election {
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
                buf.extend_from_slice(b",\"");
                buf.extend_from_slice(KEY_REPAIR.as_bytes());
                buf.extend_from_slice(b"\":[");
                for (i, e) in repairs.iter().enumerate() {
                    if i > 0 {
                        buf.push(b',');
                    }
                    buf.push(b'[');
                    buf.extend_from_slice(e.seq.to_string().as_bytes());
                    buf.extend_from_slice(b",{");
                    buf.extend_from_slice(&e.bytes);
                    buf.extend_from_slice(b"}]");
                }
                buf.push(b']');
            }
            match signer {
                Some(signer) => {
                    buf.push(b',');
                    write_uint_entry(codec, buf, KEY_TIMESTAMP, signer.timestamp);
                    signer.keys.sign(codec, buf);
                }
                None => buf.push(b'}'),
            }
        }
        Codec::MessagePack => {
            let entries = 3
                + usize::from(!requests.is_empty())
                + usize::from(!unrepairable.is_empty())
                + usize::from(!repairs.is_empty())
                + usize::from(election.is_some())
                + if signer.is_some() { 2 } else { 0 };
            write_map_len(buf, entries);
            buf.extend_from_slice(origin.entries(codec));
            write_uint_entry(codec, buf, KEY_HEARTBEAT, heartbeat);
            if let Some(entry) = election {
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
                write_uint_entry(codec, buf, KEY_TIMESTAMP, signer.timestamp);
                signer.keys.sign(codec, buf);
            }
        }
    }
}
