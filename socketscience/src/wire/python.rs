//! What SmokeDetector's Python SocketScience would raise on: checked
//! before a node posts a MessagePack envelope that Python instances read.

use rmp::Marker;

use super::msgpack_scan::{is_map, msgpack_head, msgpack_str};

/// Why SmokeDetector's Python SocketScience would raise on a payload whose
/// kinds are the MessagePack map entries `entries` (as a node writes them),
/// if it would: its `msgpack.loads` refuses map keys that are neither
/// strings nor bytes (`ValueError`, its default `strict_map_key`), and its
/// `SocketScience.handle` reads the payload's `location` when the payload
/// has `ping`, or `metasmoke_state` equal to `"down"` or `"up"`
/// (`KeyError` without one).
pub(crate) fn python_would_raise(entries: &[u8]) -> Option<String> {
    let (mut location, mut reads_location) = (false, None);
    let mut rest = entries;
    while !rest.is_empty() {
        let (key, after) = msgpack_str(rest)?;
        let kind = String::from_utf8_lossy(key);
        let end = match python_keys(after, 0, 0) {
            Ok(end) => end,
            Err(why) => {
                return Some(format!(
                    "the value of `{kind}` {why}, and that instance stops reading the room"
                ))
            }
        };
        let (value, after) = after.split_at(end);
        rest = after;
        match key {
            b"location" => location = true,
            b"ping" => reads_location = reads_location.or(Some("a `ping`")),
            b"metasmoke_state" if matches!(value, b"\xa4down" | b"\xa2up") => {
                reads_location =
                    reads_location.or(Some("a `metasmoke_state` of \"down\" or \"up\""))
            }
            _ => {}
        }
    }
    let what = reads_location.filter(|_| !location)?;
    Some(format!(
        "SmokeDetector's `SocketScience.handle` reads the `location` of every payload with \
         {what}, and raises `KeyError` without one, after which that instance stops reading \
         the room: add a `location` kind to this envelope (such as \
         `#[message(\"location\")] struct Location(String)`, with this instance's name)"
    ))
}

/// Where the MessagePack value at `pos`, `depth` maps or lists inside the
/// envelope's map, ends, if Python's `msgpack.loads` reads it: every map's
/// keys are strings or bytes, and it nests no deeper than Python reads
/// (1 024 maps or lists, the envelope's included); why not, otherwise.
fn python_keys(bytes: &[u8], pos: usize, depth: usize) -> Result<usize, &'static str> {
    let marker = bytes.get(pos).copied();
    let head = msgpack_head(bytes, pos).map_err(|_| "cannot be read back")?;
    if !head.nested {
        return Ok(head.end);
    }
    if depth + 2 > 1_024 {
        return Err(
            "is nested deeper than Python's `msgpack.loads` reads (1 024 maps or lists, \
             the envelope's included): it raises `StackError`",
        );
    }
    let map = marker.is_some_and(|m| is_map(Marker::from_u8(m)));
    let mut pos = head.end;
    for item in 0..head.items {
        if map
            && item % 2 == 0
            && !bytes.get(pos).is_some_and(|&m| {
                matches!(
                    Marker::from_u8(m),
                    Marker::FixStr(_)
                        | Marker::Str8
                        | Marker::Str16
                        | Marker::Str32
                        | Marker::Bin8
                        | Marker::Bin16
                        | Marker::Bin32
                )
            })
        {
            return Err(
                "holds a map whose key is not a string: Python's `msgpack.loads` refuses \
                 the whole payload (`ValueError`, its default `strict_map_key`); use string keys",
            );
        }
        pos = python_keys(bytes, pos, depth + 1)?;
    }
    Ok(pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_python_would_raise_on() {
        let entry = |key: &str, value: &[u8]| {
            let mut buf = Vec::new();
            rmp::encode::write_str(&mut buf, key).unwrap();
            buf.extend_from_slice(value);
            buf
        };
        // Python's msgpack.loads reads 1 024 nested maps or lists, the
        // envelope's own map included, and raises StackError past that.
        for (lists, raises) in [(1_023, false), (1_024, true)] {
            let mut nested = vec![0x91; lists - 1];
            nested.push(0x90);
            let why = python_would_raise(&entry("deep", &nested));
            assert_eq!(why.is_some(), raises, "{lists}: {why:?}");
        }
        let int_key = entry("by_id", b"\x81\x07\xa1x");
        assert!(python_would_raise(&int_key)
            .unwrap()
            .contains("use string keys"));
        assert_eq!(
            python_would_raise(&entry("by_name", b"\x81\xa1k\xc4\x01x")),
            None
        );
        let down = entry("metasmoke_state", b"\xa4down");
        assert!(python_would_raise(&down).unwrap().contains("`location`"));
        let other = entry("metasmoke_state", b"\xa7unknown");
        assert_eq!(python_would_raise(&other), None);
        let ping = entry("ping", b"\x01");
        assert!(python_would_raise(&ping).is_some());
        let with_location = [ping, entry("location", b"\xa1x")].concat();
        assert_eq!(python_would_raise(&with_location), None);
    }
}
