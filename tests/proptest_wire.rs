//! Properties of the wire: envelopes round-trip in both codecs, any chat text
//! decodes to a value or an error (never a panic), chunks fit and rejoin.
//!
//! Each property runs 256 cases unless `PROPTEST_CASES` says otherwise.

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{Map, Value};
use socketscience::wire::{self, ChatText, Codec, Decoded, LineMode, WireError};

/// 256 cases, or what `PROPTEST_CASES` asks for. Failing cases are saved
/// next to this file, in `proptest_wire.proptest-regressions`.
fn config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 256;
    }
    config.failure_persistence = Some(Box::new(FileFailurePersistence::WithSource(
        "proptest-regressions",
    )));
    config
}

fn codec() -> impl Strategy<Value = Codec> {
    prop_oneof![Just(Codec::Json), Just(Codec::MessagePack)]
}

fn lines() -> impl Strategy<Value = LineMode> {
    prop_oneof![Just(LineMode::Multi), Just(LineMode::Single)]
}

/// Any text: every Unicode scalar value, control characters included.
fn text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..max).prop_map(String::from_iter)
}

/// Every finite `f64`: normal and subnormal, both zeros, both signs.
/// MessagePack carries the bits as they are.
fn finite_f64() -> impl Strategy<Value = f64> {
    use prop::num::f64::{NEGATIVE, NORMAL, POSITIVE, SUBNORMAL, ZERO};
    POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO
}

/// The floats JSON envelopes are tested with: integers, eighths and
/// decimals of up to 10 significant digits, which serde_json reads back bit
/// for bit.
///
/// Not every finite `f64`: without its `float_roundtrip` feature, serde_json
/// reads some 17-digit floats one unit in the last place off (it writes
/// `1.2041316579933601e-136` and reads back `1.20413165799336e-136`; about
/// one in eight timestamps like `1722016499.2289793`). Once socketscience
/// turns that feature on, this should be `finite_f64()`.
fn json_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        (-1_000_000i32..1_000_000).prop_map(f64::from),
        (-1_000_000i32..1_000_000).prop_map(|n| f64::from(n) / 8.0),
        (-1_000_000_000i64..1_000_000_000, 0u32..6)
            .prop_map(|(n, decimals)| n as f64 / 10f64.powi(decimals as i32)),
    ]
}

/// A JSON-like value: null, bools, `i64`, `u64`, finite `f64`, any
/// strings, and arrays and maps nested up to 3 deep.
///
/// Numbers are generated as what they read back as: an `f64` stays an
/// `f64` (`1.0` is written `1.0` in JSON and as a float64 in MessagePack),
/// integers stay integers, so values compare exactly (`wire::Value` compares floats bit for bit).
fn value(float: BoxedStrategy<f64>) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        float.prop_map(Value::from),
        text(12).prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(text(8), inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// A message kind: not empty, not starting with `_` (reserved).
fn kind() -> impl Strategy<Value = String> {
    (
        any::<char>().prop_filter("`_` starts reserved keys", |c| *c != '_'),
        text(16),
    )
        .prop_map(|(first, rest)| format!("{first}{rest}"))
}

fn messages(float: BoxedStrategy<f64>) -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(kind(), value(float), 0..8)
        .prop_map(|map| map.into_iter().collect())
}

/// Metadata a sender may add: `_from`, `_sid`, `_seq`.
fn meta() -> impl Strategy<Value = (Option<String>, Option<u64>, Option<u64>)> {
    (
        prop::option::of(text(24)),
        prop::option::of(any::<u64>()),
        prop::option::of(any::<u64>()),
    )
}

/// The receiving path for one chat message, as the node and the command
/// take it: clean, parse, base64, body.
fn receive(text: &str) -> Result<Decoded, WireError> {
    let text = wire::clean(text);
    match wire::parse_chat_text(&text)? {
        ChatText::Frame { body } => {
            let mut bytes = Vec::new();
            wire::decode_base64(body, &mut bytes)?;
            wire::decode_body(&bytes)
        }
        // A chunk alone carries no envelope; its fields were checked.
        ChatText::Chunk(chunk) => {
            assert!(chunk.index >= 1 && chunk.index <= chunk.total && chunk.total >= 2);
            assert!(!chunk.piece.is_empty());
            Err(WireError::NotAFrame)
        }
    }
}

fn frame(codec: Codec, lines: LineMode, digits: u16, payload: &Map<String, Value>) -> String {
    wire::encode_frame(codec, lines, digits, payload).expect("a JSON map always encodes")
}

fn round_trips(
    codec: Codec,
    lines: LineMode,
    digits: u16,
    messages: Map<String, Value>,
    (from, session, seq): (Option<String>, Option<u64>, Option<u64>),
) -> Result<(), TestCaseError> {
    let mut payload = messages.clone();
    if let Some(from) = &from {
        payload.insert(wire::KEY_FROM.into(), Value::from(from.clone()));
    }
    if let Some(session) = session {
        payload.insert(wire::KEY_SESSION.into(), Value::from(session));
    }
    if let Some(seq) = seq {
        payload.insert(wire::KEY_SEQ.into(), Value::from(seq));
    }
    let text = frame(codec, lines, digits, &payload);
    let decoded = receive(&text).map_err(|e| TestCaseError::fail(format!("{e}: {text:?}")))?;
    prop_assert_eq!(decoded.codec, codec);
    prop_assert_eq!(decoded.from, from);
    prop_assert_eq!(decoded.session, session);
    prop_assert_eq!(decoded.seq, seq);
    // (wire::Value compares floats bit for bit, as `same` does.)
    let sent = wire::Value::from(Value::Object(messages));
    let got = wire::Value::Map(
        decoded
            .messages
            .into_iter()
            .map(|(kind, value)| (wire::Value::String(kind), value))
            .collect(),
    );
    prop_assert!(sent == got, "sent {sent}\n got {got}");
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// (a) MessagePack: every value, every finite float, bit for bit.
    #[test]
    fn msgpack_envelopes_round_trip(
        lines in lines(),
        digits in 0u16..10_000,
        messages in messages(finite_f64().boxed()),
        meta in meta(),
    ) {
        round_trips(Codec::MessagePack, lines, digits, messages, meta)?;
    }

    /// (a) JSON, with the floats of [`json_f64`].
    #[test]
    fn json_envelopes_round_trip(
        lines in lines(),
        digits in 0u16..10_000,
        messages in messages(json_f64().boxed()),
        meta in meta(),
    ) {
        round_trips(Codec::Json, lines, digits, messages, meta)?;
    }

    /// (b) Any text gives a value or an error.
    #[test]
    fn any_text_decodes_or_errs(text in text(300)) {
        let _ = receive(&text);
    }

    /// (b) Any bytes, read as Latin-1, give a value or an error.
    #[test]
    fn any_latin1_decodes_or_errs(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let text: String = bytes.iter().map(|&b| char::from(b)).collect();
        let _ = receive(&text);
    }

    /// (b) Any bytes in a well-formed frame (so the body parsers see them)
    /// give a value or an error.
    #[test]
    fn any_body_decodes_or_errs(
        lines in lines(),
        first in prop_oneof![Just(None), Just(Some(b'{')), (0x80u8..=0x8f).prop_map(Some),
                             Just(Some(0xde)), Just(Some(0xdf))],
        rest in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let body: Vec<u8> = first.into_iter().chain(rest).collect();
        let _ = wire::decode_body(&body);
        let mut b64 = String::new();
        wire::encode_base64(&body, &mut b64);
        let mut text = String::new();
        wire::write_frame(&mut text, lines, 1, &b64);
        let _ = receive(&text);
    }

    /// (c) A batch of envelopes, deflated, reads back as the same
    /// envelopes in order, in both codecs.
    #[test]
    fn compressed_batches_round_trip(
        codec in codec(),
        envelopes in prop::collection::vec(messages(json_f64().boxed()), 1..12),
        seq in 0u64..1_000_000,
    ) {
        let envelopes: Vec<Map<String, Value>> =
            envelopes.into_iter().filter(|m| !m.is_empty()).collect();
        prop_assume!(!envelopes.is_empty());
        let mut payload = Map::new();
        payload.insert(wire::KEY_FROM.into(), Value::from("Henders/EC2"));
        payload.insert(wire::KEY_SEQ.into(), Value::from(seq));
        payload.insert(
            wire::KEY_BATCH.into(),
            Value::Array(envelopes.iter().cloned().map(Value::Object).collect()),
        );
        let text = frame(codec, LineMode::Multi, 1, &payload);
        let ChatText::Frame { body } = wire::parse_chat_text(&text).unwrap() else {
            unreachable!("a frame")
        };
        let mut plain = Vec::new();
        wire::decode_base64(body, &mut plain).unwrap();
        let mut packed = Vec::new();
        wire::deflate_body(&plain, &mut packed);
        let decoded = wire::decode_body(&packed)
            .map_err(|e| TestCaseError::fail(format!("{e}: {payload:?}")))?;
        prop_assert_eq!(decoded.codec, codec);
        prop_assert_eq!(decoded.seq, Some(seq));
        prop_assert_eq!(decoded.count, Some(envelopes.len() as u64));
        let batch = decoded.batch.expect("a batch");
        prop_assert_eq!(batch.len(), envelopes.len());
        for (sent, got) in envelopes.into_iter().zip(batch) {
            // (wire::Value compares floats bit for bit.)
            let sent = wire::Value::from(Value::Object(sent));
            let got = wire::Value::Map(
                got.into_iter()
                    .map(|(kind, value)| (wire::Value::String(kind), value))
                    .collect(),
            );
            prop_assert!(sent == got, "sent {sent}\n got {got}");
        }
    }

    /// (b) Any bytes after the compressed body's marker, and any body
    /// deflated, give a value or an error, within the inflate limit.
    #[test]
    fn any_compressed_body_decodes_or_errs(
        method in prop_oneof![Just(wire::COMPRESSION_DEFLATE), any::<u8>()],
        rest in prop::collection::vec(any::<u8>(), 0..300),
        deflate in any::<bool>(),
    ) {
        let body: Vec<u8> = if deflate {
            let mut packed = Vec::new();
            wire::deflate_body(&rest, &mut packed);
            packed
        } else {
            [wire::COMPRESSED, method].into_iter().chain(rest).collect()
        };
        let _ = wire::decode_body(&body);
        let mut out = Vec::new();
        match wire::inflate_body(&body, 64, &mut out) {
            Ok(true) => prop_assert!(out.len() <= 64),
            Ok(false) => prop_assert!(false, "a compressed body read as plain"),
            Err(_) => {}
        }
    }

    /// (b) Frames that are almost right give a value or an error; cut
    /// short, they are an error.
    #[test]
    fn mutated_frames_decode_or_err(
        codec in codec(),
        lines in lines(),
        messages in messages(json_f64().boxed()),
        at in any::<prop::sample::Index>(),
        mutation in 0u8..5,
        c in any::<char>(),
        garbage in text(64),
    ) {
        let good = frame(codec, lines, 1234, &messages);
        let chars: Vec<char> = good.chars().collect();
        let i = at.index(chars.len());
        let text: String = match mutation {
            // Truncated: no longer ends with \x03, so never a frame.
            0 => {
                let cut: String = chars[..i].iter().collect();
                prop_assert!(receive(&cut).is_err(), "{:?}", cut);
                cut
            }
            // One character replaced.
            1 => chars.iter().enumerate().map(|(j, &d)| if j == i { c } else { d }).collect(),
            // One character inserted.
            2 => chars[..i].iter().chain([&c]).chain(&chars[i..]).collect(),
            // A correct start, then garbage.
            3 => format!("{}{}{}", chars[..i].iter().collect::<String>(), garbage, wire::FRAME_END),
            // A chunk header, then garbage.
            _ => format!("{}{garbage}", wire::CHUNK_START),
        };
        let _ = receive(&text);
    }

    /// (c) Chunks fit `max_len`, parse back in order, and rejoin to the body.
    #[test]
    fn chunks_fit_and_rejoin(
        lines in lines(),
        id in any::<u32>(),
        body in prop::collection::vec(any::<u8>(), 1..3_000),
        max_len in 40usize..600,
    ) {
        let mut b64 = String::new();
        wire::encode_base64(&body, &mut b64);
        let chunks = wire::split_into_chunks(lines, id, &b64, max_len);
        prop_assert!(chunks.is_some(), "no chunks for max_len {}", max_len);
        let chunks = chunks.unwrap_or_default();
        prop_assert!(chunks.len() >= 2);
        let mut joined = String::new();
        for (i, text) in chunks.iter().enumerate() {
            prop_assert!(text.len() <= max_len, "{} > {}", text.len(), max_len);
            prop_assert!(!text.starts_with(wire::FRAME_START));
            let chunk = match wire::parse_chat_text(text) {
                Ok(ChatText::Chunk(chunk)) => chunk,
                other => return Err(TestCaseError::fail(format!("{other:?}: {text:?}"))),
            };
            prop_assert_eq!(chunk.id, id);
            prop_assert_eq!(chunk.index as usize, i + 1);
            prop_assert_eq!(chunk.total as usize, chunks.len());
            joined.push_str(chunk.piece);
        }
        prop_assert_eq!(joined, b64);
    }
}
