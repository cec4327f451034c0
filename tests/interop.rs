//! Wire compatibility with SmokeDetector's Python SocketScience, checked
//! against the real Python `msgpack` library.
//!
//! `tests/python/wire.py` writes and reads frames the way SocketScience
//! does. Python -> Rust: its frames are posted into a [`LocalChat`] as the
//! fleet's chat account and must reach typed handlers. Rust -> Python: what
//! a node set to [`Codec::MessagePack`] posts must decode in Python to the
//! expected dict, and must be byte for byte the frame Python writes for
//! that dict with the same four digits.
//!
//! These tests fail, never skip, when `python3` or its `msgpack` library is
//! missing: `scripts/test` installs them.

mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use socketscience::wire::{self, BodyLimits, ChatText};
use socketscience::{
    handler, message, Codec, Context, Envelope, LocalChat, Message, Node, Payload,
};
use support::within;
use tokio::sync::mpsc::UnboundedReceiver;

// ---------------------------------------------------------------------------
// Message types

#[message("ping")]
#[derive(Debug, Clone, PartialEq)]
pub struct Ping {
    pub location: String,
    pub timestamp: f64,
}

/// A newtype: its value on the wire is the bare float.
#[message("heartbeat")]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Heartbeat(pub f64);

/// A unit enum: its value on the wire is the lowercase variant name.
#[message("metasmoke_state")]
#[serde(rename_all = "lowercase")]
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MetasmokeState {
    Up,
    Down,
}

/// SmokeDetector's status ping (metasmoke.py) sends
/// `{"location": ..., "timestamp": ...}`: two kinds, each a bare value.
#[message("location")]
#[derive(Debug, Clone, PartialEq)]
pub struct Location(pub String);

#[message("timestamp")]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timestamp(pub f64);

/// Nested inside [`Rich`]. (A `#[message]` only because this test crate has
/// no serde dependency of its own to derive with.)
#[message("rich_inner")]
#[derive(Debug, Clone, PartialEq)]
pub struct Inner {
    pub name: String,
    pub depth: Vec<Vec<i16>>,
}

/// Every shape of value a payload dict may hold.
#[message("rich")]
#[derive(Debug, Clone, PartialEq)]
pub struct Rich {
    pub text: String,
    pub min: i64,
    pub max: u64,
    pub small: i8,
    pub medium: i32,
    pub large: u32,
    pub ratio: f64,
    pub tiny: f64,
    pub huge: f64,
    pub flag: bool,
    pub nothing: Option<String>,
    pub tags: Vec<String>,
    pub counts: BTreeMap<String, Vec<i64>>,
    pub inner: Inner,
    pub list: Vec<Inner>,
    pub pair: (u8, String),
}

/// An `f32` field: rmp_serde writes MessagePack float32, Python float64.
#[message("ratio32")]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratio32(pub f32);

/// Integer map keys: fine in MessagePack, refused by Python's `msgpack.loads`.
#[message("by_id")]
#[derive(Debug, Clone, PartialEq)]
pub struct ById(pub BTreeMap<u32, String>);

fn rich() -> Rich {
    let inner = Inner {
        name: "ö".into(),
        depth: vec![vec![1, 2], vec![], vec![-3]],
    };
    Rich {
        text: "Grüße aus Zürich, 世界! 🚀🔥 \"q\" \\ line1\nline2".into(),
        min: i64::MIN,
        max: u64::MAX,
        small: -5,
        medium: -200,
        large: 70_000,
        ratio: 0.1,
        tiny: 5e-324,
        huge: -1.5e300,
        flag: true,
        nothing: None,
        tags: vec!["a".into(), "ü".into(), "🦀".into(), String::new()],
        counts: BTreeMap::from([
            ("z".to_owned(), vec![]),
            ("ä".to_owned(), vec![1, -1, 300, -40_000, 4_294_967_296]),
        ]),
        inner,
        list: vec![Inner {
            name: String::new(),
            depth: vec![],
        }],
        pair: (7, "sieben".into()),
    }
}

/// [`rich()`] as a Python dict entry, in Python's compact JSON. The map's
/// keys are in the order Rust writes them (struct fields in declaration
/// order, `BTreeMap` sorted by bytes), which is what makes the MessagePack
/// bytes equal.
const RICH: &str = r#""rich":{"text":"Grüße aus Zürich, 世界! 🚀🔥 \"q\" \\ line1\nline2","min":-9223372036854775808,"max":18446744073709551615,"small":-5,"medium":-200,"large":70000,"ratio":0.1,"tiny":5e-324,"huge":-1.5e+300,"flag":true,"nothing":null,"tags":["a","ü","🦀",""],"counts":{"z":[],"ä":[1,-1,300,-40000,4294967296]},"inner":{"name":"ö","depth":[[1,2],[],[-3]]},"list":[{"name":"","depth":[]}],"pair":[7,"sieben"]}"#;

// ---------------------------------------------------------------------------
// The headline handler: a `#[handler]` taking a typed struct.

/// A ping as a node's handler saw it.
#[derive(Debug, Clone, PartialEq)]
struct SeenPing {
    node: String,
    account: String,
    instance: Option<String>,
    ping: Ping,
}

static PINGS: Mutex<Vec<SeenPing>> = Mutex::new(Vec::new());

#[handler]
fn record_ping(ping: Ping, cx: Context) {
    let seen = SeenPing {
        node: cx.node().name().to_owned(),
        account: cx.sender().account().to_owned(),
        instance: cx.sender().instance().map(str::to_owned),
        ping,
    };
    PINGS.lock().unwrap_or_else(|e| e.into_inner()).push(seen);
}

/// The pings the `#[handler]` saw in node `node` (every test's nodes share
/// the handler, so each test names its nodes apart).
fn pings_seen_by(node: &str) -> Vec<SeenPing> {
    PINGS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|p| p.node == node)
        .cloned()
        .collect()
}

// ---------------------------------------------------------------------------
// Python

/// Runs `tests/python/wire.py <command>` with `input` on stdin; its output
/// lines. Panics (the test fails) when python3 or msgpack is missing.
fn python(command: &str, input: &str) -> Vec<String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/wire.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(command)
        .env("PYTHONIOENCODING", "utf-8")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run python3 ({e}): the interop tests need python3 and its msgpack \
                 library (scripts/test installs them)"
            )
        });
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.write_all(input.as_bytes()).expect("write to wire.py");
    drop(stdin);
    let out = child.wait_with_output().expect("wait for wire.py");
    assert!(
        out.status.success(),
        "wire.py {command} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("wire.py prints UTF-8")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `s` as a JSON string literal, ASCII only.
fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c => {
                for unit in c.encode_utf16(&mut [0; 2]) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
    out
}

/// `s` as Python's `json.dumps(s, ensure_ascii=False)` writes it.
fn python_json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c < ' ' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_strings(texts: &[String]) -> String {
    let items: Vec<String> = texts.iter().map(|t| json_string(t)).collect();
    format!("[{}]", items.join(","))
}

/// Reads a JSON string literal (as wire.py prints frames), through the
/// crate's public body parser.
fn parse_json_string(literal: &str) -> String {
    let body = format!("{{\"s\":{literal}}}");
    let parsed = wire::parse_body(body.as_bytes(), BodyLimits::default())
        .unwrap_or_else(|e| panic!("not a JSON string: {literal}: {e}"));
    parsed.messages[0]
        .1
        .decode::<String>()
        .unwrap_or_else(|e| panic!("not a JSON string: {literal}: {e}"))
}

/// The frames Python's SocketScience writes for these payload dicts (JSON
/// text) with these four digits.
fn python_encode(payloads: &[(&str, u16)]) -> Vec<String> {
    let unsigned: Vec<(&str, u16, Option<&str>)> =
        payloads.iter().map(|&(p, d)| (p, d, None)).collect();
    python_encode_signed(&unsigned)
}

/// Like [`python_encode`], each body signed under its secret if it has one.
fn python_encode_signed(payloads: &[(&str, u16, Option<&str>)]) -> Vec<String> {
    let items: Vec<String> = payloads
        .iter()
        .map(|(payload, digits, secret)| match secret {
            Some(secret) => format!(
                "{{\"payload\":{payload},\"digits\":{digits},\"secret\":{}}}",
                json_string(secret)
            ),
            None => format!("{{\"payload\":{payload},\"digits\":{digits}}}"),
        })
        .collect();
    let lines = python("encode", &format!("[{}]", items.join(",")));
    assert_eq!(lines.len(), payloads.len(), "one frame per payload");
    lines.iter().map(|l| parse_json_string(l)).collect()
}

/// What Python reads from each chat text, as compact JSON with the keys in
/// the order they were written.
fn python_decode(texts: &[String]) -> Vec<String> {
    let lines = python("decode", &json_strings(texts));
    assert_eq!(lines.len(), texts.len(), "one dict per frame");
    lines
}

/// What SmokeDetector's own receive path does with each chat text.
fn smokedetector_receive(texts: &[String]) -> Vec<String> {
    let lines = python("receive", &json_strings(texts));
    assert_eq!(lines.len(), texts.len(), "one outcome per text");
    lines
}

// ---------------------------------------------------------------------------
// Rust side

/// A node in `chat` that writes MessagePack and trusts every account.
async fn msgpack_node(chat: &LocalChat, name: &str, seed: u64) -> Node {
    Node::builder(name)
        .transport(chat.join("rust-bot"))
        .codec(Codec::MessagePack)
        .trust("*")
        .seed(seed)
        .default_node(false)
        .start()
        .await
        .expect("node starts")
}

/// Records every message of type `M` the node reads.
fn record<M: Message>(node: &Node) -> Arc<Mutex<Vec<M>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let into = seen.clone();
    node.register(move |m: M| into.lock().unwrap_or_else(|e| e.into_inner()).push(m));
    seen
}

fn taken<M: Clone>(seen: &Arc<Mutex<Vec<M>>>) -> Vec<M> {
    seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Everything posted in the room so far.
fn posted(room: &mut UnboundedReceiver<socketscience::ChatMessage>) -> Vec<String> {
    let mut texts = Vec::new();
    while let Ok(message) = room.try_recv() {
        texts.push(message.text.to_string());
    }
    texts
}

/// Sends each payload from a fresh MessagePack node, one at a time (each
/// after the previous one was posted, so that none share a post); the
/// frames it posted and the node (stopped).
async fn rust_frames(
    name: &str,
    seed: u64,
    payloads: Vec<Box<dyn SendBoxed>>,
) -> (Vec<String>, Node) {
    let chat = LocalChat::new();
    let mut room = chat.watch();
    let node = msgpack_node(&chat, name, seed).await;
    let mut frames = Vec::new();
    for payload in payloads {
        within("send", payload.send(&node)).await;
        let post = within("the post", room.recv())
            .await
            .expect("the room is open");
        frames.push(post.text.to_string());
    }
    within("shutdown", node.shutdown()).await.expect("shutdown");
    assert_eq!(
        posted(&mut room),
        Vec::<String>::new(),
        "one post per payload"
    );
    (frames, node)
}

/// A payload that can be sent through a node, boxed.
trait SendBoxed {
    fn send<'a>(
        self: Box<Self>,
        node: &'a Node,
    ) -> std::pin::Pin<Box<dyn Future<Output = ()> + 'a>>;
}

impl<P: Payload + 'static> SendBoxed for P {
    fn send<'a>(
        self: Box<Self>,
        node: &'a Node,
    ) -> std::pin::Pin<Box<dyn Future<Output = ()> + 'a>> {
        Box::pin(async move { node.send(*self).await.expect("send") })
    }
}

fn boxed(payload: impl Payload + 'static) -> Box<dyn SendBoxed> {
    Box::new(payload)
}

/// The dict a Rust node's envelope is, in Python's compact JSON: the kinds,
/// then the reserved keys in the order the node writes them.
fn with_meta(kinds: &str, node: &Node, seq: u64) -> String {
    format!(
        "{{{kinds},\"_from\":{},\"_sid\":{},\"_seq\":{seq}}}",
        python_json_string(node.name()),
        node.session()
    )
}

/// The four digits of a frame.
fn digits(frame: &str) -> u16 {
    frame
        .strip_prefix(wire::FRAME_START)
        .and_then(|rest| rest.get(..4))
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("not a frame: {frame:?}"))
}

/// The decoded body of a frame, as the crate reads it.
fn body_bytes(frame: &str) -> Vec<u8> {
    let cleaned = wire::clean(frame);
    let Ok(ChatText::Frame { body }) = wire::parse_chat_text(&cleaned) else {
        panic!("not a frame: {frame:?}");
    };
    let mut bytes = Vec::new();
    wire::decode_base64(body, &mut bytes).expect("base64");
    bytes
}

/// Asserts that Python reads each frame as the dict `expected[i]`, and that
/// Python writes, for that dict and the frame's digits, the very same frame.
fn assert_python_agrees(frames: &[String], expected: &[String]) {
    assert_eq!(frames.len(), expected.len(), "frames: {frames:?}");
    let decoded = python_decode(frames);
    for (got, want) in decoded.iter().zip(expected) {
        assert_eq!(got, want, "what Python reads from the Rust frame");
    }
    let requests: Vec<(&str, u16)> = expected
        .iter()
        .zip(frames)
        .map(|(dict, frame)| (dict.as_str(), digits(frame)))
        .collect();
    let python_frames = python_encode(&requests);
    for ((python, rust), dict) in python_frames.iter().zip(frames).zip(expected) {
        assert_eq!(
            body_bytes(rust),
            body_bytes(python),
            "MessagePack body bytes of {dict}"
        );
        assert_eq!(rust, python, "the whole frame for {dict}");
    }
}

/// Stack Exchange chat's habit: zero-width characters in long runs of
/// characters, and whitespace around the message.
fn as_stack_exchange_shows(frame: &str) -> String {
    let mut out = String::from(" \n");
    for (i, c) in frame.chars().enumerate() {
        out.push(c);
        if i > 8 && i % 9 == 0 {
            out.push(if i % 2 == 0 { '\u{200B}' } else { '\u{200C}' });
        }
    }
    out.push_str("\n ");
    out
}

// ---------------------------------------------------------------------------
// Python -> Rust

/// The headline: a frame written by the Python algorithm for a ping dict is
/// dispatched to a `#[handler]` taking a `Ping`.
#[tokio::test]
async fn python_ping_reaches_a_typed_handler() {
    const NODE: &str = "interop/python-ping";
    let frames = python_encode(&[
        (
            r#"{"ping":{"location":"Henders/EC2","timestamp":1712345678.25}}"#,
            1234,
        ),
        // A 4-digit DDDD with leading zeros.
        (
            r#"{"ping":{"location":"teward/vps 🐧","timestamp":0.5}}"#,
            7,
        ),
    ]);
    assert!(frames[0].starts_with(".\n\u{2}1234g"), "{:?}", frames[0]);
    assert!(frames[1].starts_with(".\n\u{2}0007g"), "{:?}", frames[1]);
    // A ping frame as SmokeDetector's own test suite has it
    // (test/test_socketscience.py): an integer timestamp.
    let smokedetector =
        ".\n\u{2}3359gaRwaW5ngqhsb2NhdGlvbqtIZW5kZXJzL0VDMql0aW1lc3RhbXDOWseSrg==\u{3}";

    let chat = LocalChat::new();
    let node = msgpack_node(&chat, NODE, 1).await;
    for frame in &frames {
        chat.say("smokey", frame);
    }
    chat.say("smokey", smokedetector);
    within("shutdown", node.shutdown()).await.expect("shutdown");

    let from_python = |location: &str, timestamp: f64| SeenPing {
        node: NODE.into(),
        account: "smokey".into(),
        instance: None, // Python sends no `_from`
        ping: Ping {
            location: location.into(),
            timestamp,
        },
    };
    assert_eq!(
        pings_seen_by(NODE),
        [
            from_python("Henders/EC2", 1712345678.25),
            from_python("teward/vps 🐧", 0.5),
            from_python("Henders/EC2", 1523028654.0),
        ]
    );
    let stats = node.stats();
    assert_eq!(stats.dispatched, 3);
    assert_eq!((stats.malformed, stats.bad_values), (0, 0));
}

/// Stack Exchange inserts U+200B and U+200C into long runs and the message
/// arrives with whitespace around it: the frame still dispatches, in Rust
/// and in Python.
#[tokio::test]
async fn python_frame_with_zero_width_characters_dispatches() {
    const NODE: &str = "interop/zero-width";
    let frames = python_encode(&[(
        r#"{"ping":{"location":"Undo/laptop","timestamp":1712345678.5},"metasmoke_state":"down"}"#,
        42,
    )]);
    let shown = as_stack_exchange_shows(&frames[0]);
    assert!(shown.contains('\u{200B}') && shown.contains('\u{200C}'));
    assert!(shown[..shown.len() / 2].contains('\u{200B}'));

    let chat = LocalChat::new();
    let node = msgpack_node(&chat, NODE, 2).await;
    let states = record::<MetasmokeState>(&node);
    chat.say("smokey", &shown);
    within("shutdown", node.shutdown()).await.expect("shutdown");

    assert_eq!(
        pings_seen_by(NODE)
            .into_iter()
            .map(|p| p.ping)
            .collect::<Vec<_>>(),
        [Ping {
            location: "Undo/laptop".into(),
            timestamp: 1712345678.5
        }]
    );
    assert_eq!(taken(&states), [MetasmokeState::Down]);
    assert_eq!(node.stats().malformed, 0);

    // Python reads the mangled text too, both ways.
    assert_eq!(
        python_decode(std::slice::from_ref(&shown)),
        [
            r#"{"ping":{"location":"Undo/laptop","timestamp":1712345678.5},"metasmoke_state":"down"}"#
        ]
    );
    assert_eq!(
        smokedetector_receive(&[shown]),
        [
            r#"{"payload":{"ping":{"location":"Undo/laptop","timestamp":1712345678.5},"metasmoke_state":"down"}}"#
        ]
    );
}

/// Newtypes, unit enums, several kinds in one dict, an unknown kind, an
/// integer where Rust has a float, and every shape of value.
#[tokio::test]
async fn python_payloads_decode_into_typed_values() {
    const NODE: &str = "interop/python-kinds";
    let rich_payload = format!("{{{RICH}}}");
    let frames = python_encode(&[
        (r#"{"heartbeat":12.5}"#, 1),
        (r#"{"metasmoke_state":"down"}"#, 2),
        // Several kinds; one no Rust handler takes; an int for a float.
        (
            r#"{"ping":{"location":"Henders/EC2","timestamp":1.0},"metasmoke_state":"up","not_in_rust":[1,{"a":null}],"heartbeat":3}"#,
            3,
        ),
        // What SmokeDetector's metasmoke.py sends while metasmoke is down.
        (
            r#"{"location":"Henders/EC2","timestamp":1712345678.123456}"#,
            4,
        ),
        (&rich_payload, 5),
    ]);

    let chat = LocalChat::new();
    let node = msgpack_node(&chat, NODE, 3).await;
    let heartbeats = record::<Heartbeat>(&node);
    let states = record::<MetasmokeState>(&node);
    let locations = record::<Location>(&node);
    let timestamps = record::<Timestamp>(&node);
    let riches = record::<Rich>(&node);
    for frame in &frames {
        chat.say("smokey", frame);
    }
    within("shutdown", node.shutdown()).await.expect("shutdown");

    assert_eq!(taken(&heartbeats), [Heartbeat(12.5), Heartbeat(3.0)]);
    assert_eq!(taken(&states), [MetasmokeState::Down, MetasmokeState::Up]);
    assert_eq!(
        pings_seen_by(NODE)
            .into_iter()
            .map(|p| p.ping)
            .collect::<Vec<_>>(),
        [Ping {
            location: "Henders/EC2".into(),
            timestamp: 1.0
        }]
    );
    assert_eq!(taken(&locations), [Location("Henders/EC2".into())]);
    assert_eq!(taken(&timestamps), [Timestamp(1712345678.123456)]);
    assert_eq!(taken(&riches), [rich()]);
    let stats = node.stats();
    assert_eq!(stats.envelopes, 5);
    assert_eq!(stats.unknown_kinds, 1, "not_in_rust");
    assert_eq!((stats.malformed, stats.bad_values), (0, 0));
    assert_eq!(stats.dispatched, 8);
}

/// A Python dict that carries the reserved keys is deduplicated by
/// (`_from`, `_sid`, `_seq`) like a Rust node's envelope.
#[tokio::test]
async fn python_frames_with_reserved_keys_are_deduplicated() {
    let frames = python_encode(&[
        (
            r#"{"heartbeat":1.5,"_from":"py/one","_sid":18446744073709551615,"_seq":0}"#,
            10,
        ),
        (
            r#"{"heartbeat":2.5,"_from":"py/one","_sid":18446744073709551615,"_seq":1}"#,
            11,
        ),
    ]);
    let chat = LocalChat::new();
    let node = msgpack_node(&chat, "interop/dedupe", 4).await;
    let heartbeats = record::<Heartbeat>(&node);
    chat.say("smokey", &frames[0]);
    chat.say("smokey", &frames[1]);
    chat.say("smokey", &frames[0]); // repeated: dropped
    within("shutdown", node.shutdown()).await.expect("shutdown");
    assert_eq!(taken(&heartbeats), [Heartbeat(1.5), Heartbeat(2.5)]);
    assert_eq!(node.stats().duplicates, 1);
}

// ---------------------------------------------------------------------------
// Rust -> Python

/// The headline the other way: a Rust node set to MessagePack writes frames
/// Python reads as the same dict, byte for byte what Python writes.
#[tokio::test]
async fn rust_ping_is_read_by_python() {
    let ping = Ping {
        location: "Henders/EC2".into(),
        timestamp: 1712345678.25,
    };
    let (frames, node) = rust_frames("Henders/EC2", 11, vec![boxed(ping)]).await;
    assert_python_agrees(
        &frames,
        &[with_meta(
            r#""ping":{"location":"Henders/EC2","timestamp":1712345678.25}"#,
            &node,
            0,
        )],
    );
    // SmokeDetector's receive path hands its callbacks the same dict.
    assert_eq!(
        smokedetector_receive(&frames),
        [format!(
            "{{\"payload\":{}}}",
            with_meta(
                r#""ping":{"location":"Henders/EC2","timestamp":1712345678.25}"#,
                &node,
                0,
            )
        )]
    );
}

#[tokio::test]
async fn rust_kinds_are_read_by_python() {
    let envelope = Envelope::new()
        .with(Ping {
            location: "teward/vps".into(),
            timestamp: -0.25,
        })
        .and_then(|e| e.with(MetasmokeState::Down))
        .and_then(|e| e.with(Heartbeat(99.0)))
        .expect("distinct kinds");
    let (frames, node) = rust_frames(
        "Undo/laptop 🐧",
        12,
        vec![
            boxed(Heartbeat(12.5)),
            boxed(MetasmokeState::Down),
            boxed(MetasmokeState::Up),
            boxed(envelope),
            boxed(rich()),
            boxed(Location("Henders/EC2".into())),
        ],
    )
    .await;
    assert_python_agrees(
        &frames,
        &[
            with_meta(r#""heartbeat":12.5"#, &node, 0),
            with_meta(r#""metasmoke_state":"down""#, &node, 1),
            with_meta(r#""metasmoke_state":"up""#, &node, 2),
            with_meta(
                r#""ping":{"location":"teward/vps","timestamp":-0.25},"metasmoke_state":"down","heartbeat":99.0"#,
                &node,
                3,
            ),
            with_meta(RICH, &node, 4),
            with_meta(r#""location":"Henders/EC2""#, &node, 5),
        ],
    );
}

/// Envelopes that wait together share one post: with MessagePack, one map
/// merging their kinds (while no kind repeats) and `_count`. Python's
/// SocketScience hands each kind to its callbacks as usual.
#[tokio::test]
async fn merged_envelopes_are_read_by_python() {
    let chat = LocalChat::new();
    let mut room = chat.watch();
    let node = msgpack_node(&chat, "interop/merged", 18).await;
    // No await in between: on this single-threaded runtime the transport
    // takes them from the queue together.
    node.try_send(Heartbeat(12.5)).expect("queued");
    node.try_send(MetasmokeState::Down).expect("queued");
    node.try_send(Location("Henders/EC2".into()))
        .expect("queued");
    within("shutdown", node.shutdown()).await.expect("shutdown");
    let frames = posted(&mut room);
    let meta = with_meta(
        r#""heartbeat":12.5,"metasmoke_state":"down","location":"Henders/EC2""#,
        &node,
        0,
    );
    let dict = format!("{},\"_count\":3}}", meta.trim_end_matches('}'));
    assert_python_agrees(&frames, std::slice::from_ref(&dict));
    assert_eq!(
        smokedetector_receive(&frames),
        [format!("{{\"payload\":{dict}}}")]
    );
}

/// Signed envelopes (HMAC-SHA256 in a last `_sig` entry): Python reads them
/// (the signature is one more key without a callback) and can check the
/// signature by the documented scheme; a body Python signs the same way is
/// accepted by a Rust node holding the secret, while unsigned and forged
/// ones are refused.
#[tokio::test]
async fn signed_envelopes_interoperate() {
    const SECRET: &str = "correct horse battery staple";
    let chat = LocalChat::new();
    let mut room = chat.watch();
    let node = Node::builder("interop/signed")
        .transport(chat.join("rust-bot"))
        .codec(Codec::MessagePack)
        .trust("*")
        .secret(SECRET)
        .seed(19)
        .default_node(false)
        .start()
        .await
        .expect("node starts");
    let heartbeats = record::<Heartbeat>(&node);
    within("send", node.send(Heartbeat(12.5)))
        .await
        .expect("send");
    let frame = within("the post", room.recv())
        .await
        .expect("the room is open")
        .text
        .to_string();

    let frames = [frame];
    let decoded = &python_decode(&frames)[0];
    let head = format!(
        r#"{{"heartbeat":12.5,"_from":"interop/signed","_sid":{},"_seq":0,"_ts":"#,
        node.session()
    );
    assert!(decoded.starts_with(&head), "{decoded}");
    assert!(decoded.contains(r#","_sig":{"$bin":""#), "{decoded}");
    let verify = |secret: &str| {
        let input = format!(
            "[{{\"frame\":{},\"secret\":{}}}]",
            json_string(&frames[0]),
            json_string(secret)
        );
        python("verify", &input)
    };
    assert_eq!(verify(SECRET), ["true"]);
    assert_eq!(verify("another secret"), ["false"]);
    let received = &smokedetector_receive(&frames)[0];
    assert!(
        received.starts_with(r#"{"payload":{"heartbeat":12.5,"#),
        "{received}"
    );

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis();
    let payload = |value: f64, seq: u64| {
        format!(
            r#"{{"heartbeat":{value:?},"_from":"py/signer","_sid":1,"_seq":{seq},"_ts":{now}}}"#
        )
    };
    let (good, unsigned, forged) = (payload(2.5, 0), payload(3.5, 1), payload(4.5, 2));
    let python_frames = python_encode_signed(&[
        (&good, 1, Some(SECRET)),
        (&unsigned, 2, None),
        (&forged, 3, Some("not the secret")),
    ]);
    for frame in &python_frames {
        chat.say("smokey", frame);
    }
    within("shutdown", node.shutdown()).await.expect("shutdown");
    assert_eq!(taken(&heartbeats), [Heartbeat(12.5), Heartbeat(2.5)]);
    let stats = node.stats();
    assert_eq!((stats.unsigned, stats.bad_signature), (1, 1));
}

/// What a Python receiver does with the parts of the wire that are ours:
/// it logs "malformed direct message" for chunks and single-line frames.
/// And what it cannot read: JSON bodies (the default between Rust nodes).
#[tokio::test]
async fn python_ignores_chunks_and_cannot_read_json() {
    // A chunked envelope: a 120-byte room.
    let chat = LocalChat::with_max_message_len(120);
    let mut room = chat.watch();
    let node = msgpack_node(&chat, "interop/chunks", 13).await;
    let receiver = Node::builder("interop/chunks-receiver")
        .transport(chat.join("rust-bot"))
        .default_node(false)
        .start()
        .await
        .expect("node starts");
    let long = Ping {
        location: "a location long enough to need several chunks: ".repeat(4),
        timestamp: 1.0,
    };
    within("send", node.send(long.clone())).await.expect("send");
    within("shutdown", node.shutdown()).await.expect("shutdown");
    within("shutdown", receiver.shutdown())
        .await
        .expect("shutdown");
    let chunks = posted(&mut room);
    assert!(chunks.len() >= 3, "{chunks:?}");
    assert!(chunks.iter().all(|c| c.starts_with(wire::CHUNK_START)));
    // The Rust receiver put it together.
    assert_eq!(
        pings_seen_by("interop/chunks-receiver")
            .into_iter()
            .map(|p| p.ping)
            .collect::<Vec<_>>(),
        [long]
    );
    let outcomes = smokedetector_receive(&chunks);
    assert!(
        outcomes.iter().all(|o| o == r#"{"malformed":true}"#),
        "{outcomes:?}"
    );

    // A single-line frame (IRC) of a MessagePack body.
    let (frames, _) = rust_frames("interop/single", 14, vec![boxed(Heartbeat(1.0))]).await;
    let body = frames[0]
        .strip_prefix(wire::FRAME_START)
        .and_then(|rest| rest.get(4..))
        .and_then(|rest| rest.strip_suffix(wire::FRAME_END))
        .expect("a frame");
    let mut single = String::new();
    wire::write_frame(&mut single, socketscience::Lines::Single, 0, body);
    assert_eq!(smokedetector_receive(&[single]), [r#"{"malformed":true}"#]);

    // A JSON frame: SmokeDetector's msgpack.loads raises on it.
    let chat = LocalChat::new();
    let mut room = chat.watch();
    let json = Node::builder("interop/json")
        .transport(chat.join("rust-bot"))
        .default_node(false)
        .start()
        .await
        .expect("node starts");
    within("send", json.send(Heartbeat(1.0)))
        .await
        .expect("send");
    within("shutdown", json.shutdown()).await.expect("shutdown");
    let frames = posted(&mut room);
    assert_eq!(
        smokedetector_receive(&frames),
        [r#"{"exception":"ExtraData"}"#]
    );
    // The design's decoder (both codecs) reads it.
    assert_eq!(
        python_decode(&frames),
        [with_meta(r#""heartbeat":1.0"#, &json, 0)]
    );
}

/// Two differences between rmp_serde and Python's msgpack, pinned down so
/// that docs/wire-format.md stays true.
#[tokio::test]
async fn known_differences_with_python_msgpack() {
    // f32 is written as MessagePack float32 (0xca); Python writes every
    // float as float64 (0xcb). Python reads float32 fine, and a Rust f32
    // reads Python's float64 fine: only the bytes differ.
    let (frames, node) = rust_frames("interop/f32", 15, vec![boxed(Ratio32(0.5))]).await;
    let body = body_bytes(&frames[0]);
    let float32_half = [0xca, 0x3f, 0x00, 0x00, 0x00];
    assert!(
        body.windows(5).any(|w| w == float32_half),
        "float32 0.5 in {body:02x?}"
    );
    let dict = with_meta(r#""ratio32":0.5"#, &node, 0);
    assert_eq!(python_decode(&frames), std::slice::from_ref(&dict));
    let python = python_encode(&[(&dict, digits(&frames[0]))]);
    let python_body = body_bytes(&python[0]);
    assert!(python_body
        .windows(9)
        .any(|w| w == [0xcb, 0x3f, 0xe0, 0, 0, 0, 0, 0, 0]));
    assert_ne!(python_body, body);

    let chat = LocalChat::new();
    let receiver = msgpack_node(&chat, "interop/f32-receiver", 16).await;
    let ratios = record::<Ratio32>(&receiver);
    chat.say("smokey", &python[0]);
    within("shutdown", receiver.shutdown())
        .await
        .expect("shutdown");
    assert_eq!(taken(&ratios), [Ratio32(0.5)]);

    // Integer map keys: valid MessagePack, but Python's msgpack.loads (with
    // its default strict_map_key=True) refuses the whole envelope.
    let (frames, _) = rust_frames(
        "interop/int-keys",
        17,
        vec![boxed(ById(BTreeMap::from([(7, "seven".to_owned())])))],
    )
    .await;
    assert_eq!(
        smokedetector_receive(&frames),
        [r#"{"exception":"ValueError"}"#]
    );
}

/// A MessagePack node's heartbeats and repair posts hold reserved keys
/// only: Python's SocketScience reads each as a dict and calls no callback
/// (and SmokeDetector's receive path does not raise).
#[tokio::test]
async fn python_ignores_heartbeats_and_repair_posts() {
    let chat = LocalChat::new();
    let mut room = chat.watch();
    let node = Node::builder("Henders/EC2")
        .transport(chat.join("rust-bot"))
        .codec(Codec::MessagePack)
        .trust("*")
        .heartbeat(std::time::Duration::from_millis(200))
        .default_node(false)
        .start()
        .await
        .expect("node starts");
    node.send(Heartbeat(1.5)).await.expect("send");
    // Another instance missed it and asks for it again.
    chat.say(
        "other-bot",
        &support::json_frame(&format!(
            r#"{{"_from":"Undo/laptop","_sid":7,"_hb":0,"_rq":[["Henders/EC2",{},0,1]]}}"#,
            node.session()
        )),
    );
    within("a repair and a heartbeat", async {
        while node.stats().resent < 1 || node.stats().heartbeats < 1 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    within("shutdown", node.shutdown()).await.expect("shutdown");
    let mut frames = Vec::new();
    while let Ok(message) = room.try_recv() {
        if &*message.account == "rust-bot" {
            frames.push(message.text.to_string());
        }
    }
    // The data frame, then the repair and heartbeat posts.
    let control = &frames[1..];
    assert!(control.len() >= 2, "{frames:?}");
    for (frame, dict) in control.iter().zip(python_decode(control)) {
        let dict: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&dict).expect("Python printed a dict");
        assert!(dict.contains_key("_hb"), "{dict:?}");
        assert!(
            dict.keys().all(|k| k.starts_with('_')),
            "{frame:?}: {dict:?}"
        );
    }
    for outcome in smokedetector_receive(control) {
        let outcome: serde_json::Value = serde_json::from_str(&outcome).expect("JSON");
        let payload = outcome["payload"]
            .as_object()
            .unwrap_or_else(|| panic!("SmokeDetector did not read it: {outcome}"));
        assert!(payload.keys().all(|k| k.starts_with('_')), "{outcome}");
    }
    assert!(
        control.iter().any(|f| {
            let body = body_bytes(f);
            wire::parse_body(&body, BodyLimits::default())
                .is_ok_and(|b| b.meta.control.is_some_and(|c| c.repairs.is_some()))
        }),
        "one of them is the repair"
    );
}
