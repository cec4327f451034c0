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
//! `tests/python/smokedetector.py` transcribes what SmokeDetector itself
//! does with a chat message (`chatcommunicate.on_msg`, `SocketScience.receive`
//! and `handle`); one process of it serves every test (requests one per
//! line on stdin). The tests after "Rooms shared with Python instances"
//! check `NodeBuilder::python_peers` against it, the last one as a property.
//!
//! These tests fail, never skip, when `python3` or its `msgpack` library is
//! missing: `scripts/test` installs them.

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::process::Command;
use std::sync::{Arc, Mutex};

use common::messages::{Heartbeat, Location, MetasmokeState, Ping};
use common::python::{
    json_string, python_decode, python_encode, python_encode_signed, python_json_string,
    smokedetector_on_msg, smokedetector_receive, smokedetector_send_receive,
};
use common::{python, within};
use socketscience::wire::{self, BodyLimits, ChatText};
use socketscience::{
    handler, message, Codec, Context, Envelope, Error, LocalChat, Message, Node, Payload,
};
use tokio::sync::mpsc::UnboundedReceiver;

// ---------------------------------------------------------------------------
// Message types

/// With [`Location`] (tests/common/messages.rs), SmokeDetector's status
/// ping (metasmoke.py): `{"location": ..., "timestamp": ...}`, two kinds,
/// each a bare value.
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
fn posted(room: &mut UnboundedReceiver<socketscience::transport::ChatMessage>) -> Vec<String> {
    let mut texts = Vec::new();
    while let Ok(message) = room.try_recv() {
        texts.push(message.text.to_string());
    }
    texts
}

/// What a fresh node `name` (JSON, the default codec) posts for one
/// `Heartbeat(1.0)`, and the node (stopped).
async fn json_heartbeat_posts(name: &str) -> (Vec<String>, Node) {
    let chat = LocalChat::new();
    let mut room = chat.watch();
    let node = Node::builder(name)
        .transport(chat.join("rust-bot"))
        .default_node(false)
        .start()
        .await
        .expect("node starts");
    within("send", node.send(Heartbeat(1.0)))
        .await
        .expect("send");
    within("shutdown", node.shutdown()).await.expect("shutdown");
    (posted(&mut room), node)
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
        r#"{"ping":{"location":"Undo/laptop","timestamp":1712345678.5},"metasmoke_state":"down","location":"Undo/laptop"}"#,
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
            r#"{"ping":{"location":"Undo/laptop","timestamp":1712345678.5},"metasmoke_state":"down","location":"Undo/laptop"}"#
        ]
    );
    assert_eq!(
        smokedetector_receive(&[shown]),
        [
            r#"{"payload":{"ping":{"location":"Undo/laptop","timestamp":1712345678.5},"metasmoke_state":"down","location":"Undo/laptop"}}"#
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
    // SmokeDetector reads the `location` of every payload with a `ping`
    // (see `python_peers_refuses_what_smokedetector_raises_on`).
    let ping = Envelope::new()
        .with(Ping {
            location: "Henders/EC2".into(),
            timestamp: 1712345678.25,
        })
        .and_then(|e| e.with(Location("Henders/EC2".into())))
        .expect("distinct kinds");
    const KINDS: &str =
        r#""ping":{"location":"Henders/EC2","timestamp":1712345678.25},"location":"Henders/EC2""#;
    let (frames, node) = rust_frames("Henders/EC2", 11, vec![boxed(ping)]).await;
    assert_python_agrees(&frames, &[with_meta(KINDS, &node, 0)]);
    // SmokeDetector's receive path hands its callbacks the same dict.
    let outcomes = smokedetector_on_msg(&frames, &["ping"], true);
    assert_eq!(
        outcomes[0].brief(),
        format!("{{\"payload\":{}}}", with_meta(KINDS, &node, 0))
    );
    assert_eq!(
        outcomes[0].calls,
        [(
            "ping".to_owned(),
            "{'location': 'Henders/EC2', 'timestamp': 1712345678.25}".to_owned()
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
        python::wire("verify", &input)
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
    wire::write_frame(
        &mut single,
        socketscience::transport::LineMode::Single,
        0,
        body,
    );
    assert_eq!(smokedetector_receive(&[single]), [r#"{"malformed":true}"#]);

    // A JSON frame: SmokeDetector's msgpack.loads raises on it.
    let (frames, json) = json_heartbeat_posts("interop/json").await;
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

// ---------------------------------------------------------------------------
// Rooms shared with Python instances (docs/wire-format.md, section 9)

/// A unit struct: nil on the wire, as `null` in JSON and `None` in Python.
#[message("unit")]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Unit;

/// 128-bit integers: numbers on the wire while they fit 64 bits.
#[message("wide")]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Wide {
    pub small: u128,
    pub negative: i128,
    pub max: u128,
    pub min: i128,
}

#[message("huge")]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Huge(pub u128);

/// A node in `chat`, account `smokey`, made for a room with Python
/// instances.
async fn python_peer(chat: &LocalChat, name: &str) -> Node {
    Node::builder(name)
        .transport(chat.join("smokey"))
        .python_peers()
        .default_node(false)
        .start()
        .await
        .expect("node starts")
}

/// A question with a long text (answered with a `location`).
#[message("long_question", reply = Location)]
#[derive(Debug, Clone, PartialEq)]
pub struct LongQuestion(pub String);

/// Point 3 for questions: a node with `python_peers()` posts each envelope
/// whole, in one post, questions and answers too; a question too long for
/// one post is refused when asked, with the reason, not posted in chunks.
#[tokio::test]
async fn python_peers_refuses_a_question_too_long_for_one_post() {
    let chat = LocalChat::with_max_message_len(400);
    let mut room = chat.watch();
    let node = python_peer(&chat, "interop/asks").await;
    let asked = node
        .ask(LongQuestion("x".repeat(1_000)))
        .within(std::time::Duration::from_millis(200))
        .await;
    match asked {
        Err(Error::NotForPython { reason, .. }) => {
            assert!(reason.contains("in chunks"), "{reason}")
        }
        Err(other) => panic!("expected NotForPython, got {other}"),
        Ok(answers) => panic!("asked and posted ({} answers)", answers.len()),
    }
    within("shutdown", node.shutdown()).await.expect("shutdown");
    assert!(posted(&mut room).is_empty(), "nothing was posted");
}

/// Point 1: a unit struct reaches Python as `None`, byte for byte what
/// Python writes for it; Rust reads it back, and the empty array older
/// nodes wrote too.
#[tokio::test]
async fn unit_structs_reach_python_as_none() {
    let (frames, node) = rust_frames("interop/unit", 20, vec![boxed(Unit)]).await;
    assert_python_agrees(&frames, &[with_meta(r#""unit":null"#, &node, 0)]);
    let outcome = &smokedetector_on_msg(&frames, &["unit"], true)[0];
    assert_eq!(outcome.calls, [("unit".to_owned(), "None".to_owned())]);

    let python = python_encode(&[(r#"{"unit":null}"#, 1), (r#"{"unit":[]}"#, 2)]);
    let chat = LocalChat::new();
    let receiver = msgpack_node(&chat, "interop/unit-receiver", 21).await;
    let units = record::<Unit>(&receiver);
    for frame in &python {
        chat.say("smokey", frame);
    }
    within("shutdown", receiver.shutdown())
        .await
        .expect("shutdown");
    assert_eq!(taken(&units), [Unit, Unit]);
}

/// Point 2: `u128` and `i128` travel as MessagePack integers while they fit
/// 64 bits (Python reads numbers, as it writes them); beyond, the send is
/// refused, saying why, as Python's own `msgpack.dumps` refuses them.
#[tokio::test]
async fn wide_integers_reach_python_as_numbers_or_are_refused() {
    let wide = Wide {
        small: 7,
        negative: -300,
        max: u64::MAX.into(),
        min: i64::MIN.into(),
    };
    const DICT: &str = r#""wide":{"small":7,"negative":-300,"max":18446744073709551615,"min":-9223372036854775808}"#;
    let (frames, node) = rust_frames("interop/wide", 22, vec![boxed(wide)]).await;
    assert_python_agrees(&frames, &[with_meta(DICT, &node, 0)]);

    // Python's numbers read back into the 128-bit fields.
    let python = python_encode(&[(&format!("{{{DICT}}}"), 3)]);
    let chat = LocalChat::new();
    let receiver = msgpack_node(&chat, "interop/wide-receiver", 23).await;
    let wides = record::<Wide>(&receiver);
    chat.say("smokey", &python[0]);
    let too_wide = receiver.send(Huge(u128::from(u64::MAX) + 1)).await;
    within("shutdown", receiver.shutdown())
        .await
        .expect("shutdown");
    assert_eq!(taken(&wides), [wide]);
    match too_wide {
        Err(e @ Error::Encode { kind: "huge", .. }) => {
            assert!(e.to_string().contains("does not fit 64 bits"), "{e}")
        }
        other => panic!("expected an encoding error, got {other:?}"),
    }
    assert_eq!(receiver.stats().sent, 0);
    let python =
        python::smokedetector(&serde_json::json!({"send": ["{\"huge\": 18446744073709551616}"]}));
    assert_eq!(python[0]["raised"], "OverflowError", "{python}");
}

/// Point 3: a node with `python_peers()` posts each envelope alone, as it
/// was sent, even when they queue up together (a node that merges would
/// put them in one post), and SmokeDetector treats each post exactly as it
/// treats its own `send` of the same payload.
#[tokio::test]
async fn python_peers_posts_each_envelope_alone_as_sent() {
    let chat = LocalChat::new();
    let mut room = chat.watch();
    let node = python_peer(&chat, "interop/peers").await;
    assert_eq!(node.codec(), Codec::MessagePack);
    let down = Envelope::new()
        .with(MetasmokeState::Down)
        .and_then(|e| e.with(Location("Henders/EC2".into())))
        .expect("distinct kinds");
    // No await in between: on this single-threaded runtime the transport
    // finds them all queued.
    node.try_send(Heartbeat(12.5)).expect("queued");
    node.try_send(down).expect("queued");
    node.try_send(Location("Henders/EC2".into()))
        .expect("queued");
    node.try_send(Heartbeat(13.5)).expect("queued");
    within("shutdown", node.shutdown()).await.expect("shutdown");
    let frames = posted(&mut room);
    assert_eq!(frames.len(), 4, "one post per envelope: {frames:?}");
    let payloads = [
        r#"{"heartbeat":12.5}"#,
        r#"{"metasmoke_state":"down","location":"Henders/EC2"}"#,
        r#"{"location":"Henders/EC2"}"#,
        r#"{"heartbeat":13.5}"#,
    ]
    .map(str::to_owned);
    let callbacks = ["heartbeat", "metasmoke_state", "location"];
    let rust = smokedetector_on_msg(&frames, &callbacks, true);
    let python = smokedetector_send_receive(&payloads, &callbacks);
    for (i, (rust, python)) in rust.iter().zip(&python).enumerate() {
        assert_eq!(rust.raised, None, "{rust:?}");
        assert_eq!(
            (&rust.calls, &rust.effects, rust.malformed),
            (&python.calls, &python.effects, python.malformed),
            "{}",
            payloads[i]
        );
    }
    assert!(rust[1].effects.contains(&"MSStatus.set_down()".to_owned()));
    // The same sends from a MessagePack node without `python_peers()` share
    // one post: whether SmokeDetector sees `metasmoke_state` beside a
    // `location` depends on what else waited in the queue.
    let (merged, _) = {
        let chat = LocalChat::new();
        let mut room = chat.watch();
        let node = msgpack_node(&chat, "interop/merges", 24).await;
        node.try_send(Heartbeat(12.5)).expect("queued");
        node.try_send(MetasmokeState::Down).expect("queued");
        node.try_send(Location("Henders/EC2".into()))
            .expect("queued");
        within("shutdown", node.shutdown()).await.expect("shutdown");
        (posted(&mut room), node)
    };
    assert_eq!(merged.len(), 1, "{merged:?}");
}

/// Point 3: what a node with `python_peers()` refuses at send, each with a
/// reason that says what to do: what would make SmokeDetector raise (and
/// does when SmokeDetector sends it itself), and what does not fit one post.
#[tokio::test]
async fn python_peers_refuses_what_smokedetector_raises_on() {
    let chat = LocalChat::with_max_message_len(400);
    let mut room = chat.watch();
    let node = python_peer(&chat, "interop/refuses").await;
    let reason = |result: socketscience::Result<()>| match result {
        Err(Error::NotForPython { reason, .. }) => reason,
        other => panic!("expected NotForPython, got {other:?}"),
    };
    let ping = Ping {
        location: "Henders/EC2".into(),
        timestamp: 1.0,
    };
    let refused = [
        (
            reason(node.try_send(ping.clone())),
            r#"{"ping":{"location":"Henders/EC2","timestamp":1.0}}"#,
        ),
        (
            reason(node.try_send(MetasmokeState::Down)),
            r#"{"metasmoke_state":"down"}"#,
        ),
        (
            reason(node.try_send(MetasmokeState::Up)),
            r#"{"metasmoke_state":"up"}"#,
        ),
    ];
    let payloads: Vec<String> = refused.iter().map(|(_, p)| p.to_string()).collect();
    for (outcome, (reason, payload)) in smokedetector_send_receive(&payloads, &[])
        .iter()
        .zip(&refused)
    {
        assert!(reason.contains("add a `location` kind"), "{reason}");
        assert_eq!(outcome.raised.as_deref(), Some("KeyError"), "{payload}");
        assert_eq!(outcome.error.as_deref(), Some("'location'"), "{payload}");
    }
    // Integer map keys: Python's msgpack.loads refuses them (ValueError,
    // see `known_differences_with_python_msgpack`).
    let by_id = reason(node.try_send(ById(BTreeMap::from([(7, "seven".to_owned())]))));
    assert!(by_id.contains("use string keys"), "{by_id}");
    // Too long for one chat message: Python cannot read chunks.
    let long = reason(node.try_send(Location("x".repeat(400))));
    assert!(long.contains("cannot read an envelope in chunks"), "{long}");
    // With a `location`, or a state Python does not act on, it goes.
    let with_location = Envelope::new()
        .with(ping)
        .and_then(|e| e.with(Location("Henders/EC2".into())))
        .expect("distinct kinds");
    node.try_send(with_location).expect("sent");
    node.try_send(Location("x".repeat(200)))
        .expect("fits one post");
    within("shutdown", node.shutdown()).await.expect("shutdown");
    let posts = posted(&mut room);
    assert_eq!(posts.len(), 2, "{posts:?}");
    assert!(posts.iter().all(|p| p.starts_with(wire::FRAME_START)));
    for outcome in smokedetector_on_msg(&posts, &["ping", "location"], true) {
        assert_eq!(outcome.raised, None, "{outcome:?}");
    }
    assert_eq!(node.stats().sent, 2);
}

/// Point 3: options `python_peers()` cannot keep fail at start.
#[tokio::test]
async fn python_peers_refuses_json_and_single_line_chats_at_start() {
    let chat = LocalChat::new();
    let json = Node::builder("interop/peers-json")
        .transport(chat.join("smokey"))
        .python_peers()
        .codec(Codec::Json)
        .default_node(false)
        .start()
        .await;
    assert!(
        matches!(
            &json,
            Err(Error::InvalidOption {
                option: "codec",
                ..
            })
        ),
        "{json:?}"
    );
    let irc_like = common::RecordingChat {
        lines: socketscience::transport::LineMode::Single,
        max_len: 400,
        gate: None,
        posts: common::Log::default(),
    };
    let single = Node::builder("interop/peers-single-line")
        .transport(irc_like)
        .python_peers()
        .default_node(false)
        .start()
        .await;
    match single {
        Err(
            e @ Error::InvalidOption {
                option: "python_peers",
                ..
            },
        ) => assert!(e.to_string().contains("multi-line"), "{e}"),
        other => panic!("expected InvalidOption, got {other:?}"),
    }
}

/// Collects what `tracing` writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

/// Point 3: a node not made for Python peers says so, once, when it reads
/// a Python instance's envelope (MessagePack without `_from`); a node with
/// `python_peers()` does not.
#[tokio::test]
async fn a_node_without_python_peers_warns_when_python_shares_the_room() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    // This test's runtime is single-threaded: the nodes log on this thread.
    let _guard = tracing::subscriber::set_default(subscriber);
    let frames = python_encode(&[(r#"{"heartbeat":1.5}"#, 1), (r#"{"heartbeat":2.5}"#, 2)]);
    let chat = LocalChat::new();
    let plain = msgpack_node(&chat, "interop/warns", 25).await;
    let peer = python_peer(&chat, "interop/quiet").await;
    let heartbeats = record::<Heartbeat>(&peer);
    for frame in &frames {
        chat.say("smokey", frame);
    }
    within("shutdown", plain.shutdown())
        .await
        .expect("shutdown");
    within("shutdown", peer.shutdown()).await.expect("shutdown");
    assert_eq!(taken(&heartbeats), [Heartbeat(1.5), Heartbeat(2.5)]);
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).expect("UTF-8 logs");
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("Python SocketScience instance seems to share this room"))
        .collect();
    assert_eq!(warnings.len(), 1, "{logs}");
    assert!(warnings[0].contains("interop/warns"), "{logs}");
    assert!(warnings[0].contains(".python_peers()"), "{logs}");
}

/// Point 4: SmokeDetector hands `SocketScience.receive` every message in
/// its "direct" room that is not a reply or a command, from any account:
/// a stranger can switch it to "metasmoke is down", and a Rust node of
/// another account in its default configuration makes it raise. A Rust
/// node reads only the accounts it trusts.
#[tokio::test]
async fn python_instances_read_every_account_rust_nodes_only_trusted_ones() {
    let frames = python_encode(&[(r#"{"metasmoke_state":"down","location":"a stranger"}"#, 5)]);
    let outcome = &smokedetector_on_msg(&frames, &[], false)[0];
    assert_eq!(outcome.raised, None, "{outcome:?}");
    assert!(
        outcome.effects.contains(&"MSStatus.set_down()".to_owned()),
        "{outcome:?}"
    );

    let (posts, _) = json_heartbeat_posts("interop/other-account").await;
    assert_eq!(
        smokedetector_on_msg(&posts, &[], false)[0]
            .raised
            .as_deref(),
        Some("ExtraData")
    );

    let chat = LocalChat::new();
    let node = python_peer(&chat, "interop/trusts-its-own").await;
    let states = record::<MetasmokeState>(&node);
    chat.say("a stranger", &frames[0]);
    within("shutdown", node.shutdown()).await.expect("shutdown");
    assert_eq!(taken(&states), []);
    assert_eq!(node.stats().untrusted, 1);
}

/// Point 5: what the `socketscience` command is made of agrees with
/// Python: `wire::encode_frame` writes a map in its own order, byte for
/// byte what `msgpack.dumps` writes for the dict; `wire::decode_body` shows
/// a body holding bytes, NaN and infinities (which SmokeDetector reads),
/// printed as Python's `json.dumps` prints them.
#[test]
fn the_command_line_tools_agree_with_python() {
    let payload = r#"{"zeta":{"b":1,"a":[{"y":null,"x":2.5}]},"alpha":"first?","_from":"cli"}"#;
    let value: wire::Value = serde_json::from_str(payload).expect("JSON");
    let rust = wire::encode_frame(
        Codec::MessagePack,
        socketscience::transport::LineMode::Multi,
        77,
        &value,
    )
    .expect("encodes");
    let python = python_encode(&[(payload, 77)]);
    assert_eq!(rust, python[0]);

    let frame = smokedetector_send_bytes();
    let outcome = &smokedetector_on_msg(std::slice::from_ref(&frame), &[], true)[0];
    let decoded = wire::decode_body(&body_bytes(&frame)).expect("shown, not refused");
    let shown = wire::Value::Map(
        decoded
            .messages
            .into_iter()
            .map(|(kind, value)| (wire::Value::String(kind), value))
            .collect(),
    );
    assert_eq!(Some(shown.to_string()), outcome.payload);
}

/// A frame SmokeDetector's `send` writes for a payload holding bytes, NaN
/// and infinities.
fn smokedetector_send_bytes() -> String {
    let script = r#"
import base64, msgpack, sys
payload = {"sig": b"\x00\xff", "n": float("nan"), "i": float("inf"), "m": -float("inf"), "f": 1e16, "k": 1.5}
sys.stdout.write(".\n\x020001" + base64.b64encode(msgpack.dumps(payload)).decode() + "\x03")
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).expect("UTF-8")
}

// ---------------------------------------------------------------------------
// The mixed-fleet property

/// A note with every shape of value.
#[message("note")]
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub text: String,
    pub n: i64,
    pub tags: Vec<String>,
    pub extra: Option<f64>,
    pub flag: bool,
}

/// Any JSON-like value.
#[message("any")]
#[derive(Debug, Clone, PartialEq)]
pub struct Anything(pub serde_json::Value);

/// One message of the property's catalog, with its value.
#[derive(Debug, Clone)]
enum Item {
    Ping(Ping),
    State(MetasmokeState),
    Location(Location),
    Heartbeat(Heartbeat),
    Timestamp(Timestamp),
    Unit,
    Huge(u128),
    Note(Note),
    Anything(serde_json::Value),
}

/// The kinds Python registers recording callbacks for.
const CATALOG: [&str; 9] = [
    "ping",
    "metasmoke_state",
    "location",
    "heartbeat",
    "timestamp",
    "unit",
    "huge",
    "note",
    "any",
];

/// `f` as Python's `json.loads` reads it back to the same float.
fn py_float(f: f64) -> String {
    match f {
        f if f.is_nan() => "NaN".into(),
        f if f == f64::INFINITY => "Infinity".into(),
        f if f == f64::NEG_INFINITY => "-Infinity".into(),
        // Debug: the shortest digits that read back the same, always with
        // a `.` or an exponent, so Python reads a float.
        f => format!("{f:?}"),
    }
}

impl Item {
    fn kind(&self) -> &'static str {
        match self {
            Item::Ping(_) => "ping",
            Item::State(_) => "metasmoke_state",
            Item::Location(_) => "location",
            Item::Heartbeat(_) => "heartbeat",
            Item::Timestamp(_) => "timestamp",
            Item::Unit => "unit",
            Item::Huge(_) => "huge",
            Item::Note(_) => "note",
            Item::Anything(_) => "any",
        }
    }

    /// The value as Python writes it in its payload dict, in JSON that
    /// Python's `json.loads` reads: written here from the Rust value,
    /// independently of the crate's encoders.
    fn python(&self) -> String {
        match self {
            Item::Ping(p) => format!(
                "{{\"location\":{},\"timestamp\":{}}}",
                json_string(&p.location),
                py_float(p.timestamp)
            ),
            Item::State(MetasmokeState::Up) => "\"up\"".into(),
            Item::State(MetasmokeState::Down) => "\"down\"".into(),
            Item::Location(Location(l)) => json_string(l),
            Item::Heartbeat(Heartbeat(f)) | Item::Timestamp(Timestamp(f)) => py_float(*f),
            Item::Unit => "null".into(),
            Item::Huge(n) => n.to_string(),
            Item::Note(n) => format!(
                "{{\"text\":{},\"n\":{},\"tags\":[{}],\"extra\":{},\"flag\":{}}}",
                json_string(&n.text),
                n.n,
                n.tags
                    .iter()
                    .map(|t| json_string(t))
                    .collect::<Vec<_>>()
                    .join(","),
                n.extra.map_or("null".into(), py_float),
                n.flag
            ),
            Item::Anything(v) => v.to_string(),
        }
    }

    fn push(self, envelope: &mut Envelope) {
        let pushed = match self {
            Item::Ping(p) => envelope.push(p),
            Item::State(s) => envelope.push(s),
            Item::Location(l) => envelope.push(l),
            Item::Heartbeat(h) => envelope.push(h),
            Item::Timestamp(t) => envelope.push(t),
            Item::Unit => envelope.push(Unit),
            Item::Huge(n) => envelope.push(Huge(n)),
            Item::Note(n) => envelope.push(n),
            Item::Anything(v) => envelope.push(Anything(v)),
        };
        pushed.expect("distinct kinds");
    }
}

mod strategies {
    use super::*;
    use proptest::prelude::*;

    pub fn text() -> impl Strategy<Value = String> {
        prop::collection::vec(any::<char>(), 0..12).prop_map(String::from_iter)
    }

    /// Every `f64`: NaN and the infinities too.
    pub fn float() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(-0.0),
            (0u32..2_000_000_000).prop_map(f64::from),
        ]
    }

    fn json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("JSON has no NaN", |f| f.is_finite())
                .prop_map(serde_json::Value::from),
            text().prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                prop::collection::btree_map(text(), inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    pub fn item() -> impl Strategy<Value = Item> {
        prop_oneof![
            (text(), float()).prop_map(|(location, timestamp)| Item::Ping(Ping {
                location,
                timestamp
            })),
            prop_oneof![Just(MetasmokeState::Up), Just(MetasmokeState::Down)].prop_map(Item::State),
            // Often a location, so that pings and states often go.
            prop_oneof![Just("Henders/EC2".to_owned()), text()]
                .prop_map(|l| Item::Location(Location(l))),
            float().prop_map(|f| Item::Heartbeat(Heartbeat(f))),
            float().prop_map(|f| Item::Timestamp(Timestamp(f))),
            Just(Item::Unit),
            prop_oneof![any::<u64>().prop_map(u128::from), any::<u128>(),].prop_map(Item::Huge),
            (
                text(),
                any::<i64>(),
                prop::collection::vec(text(), 0..3),
                prop::option::of(float()),
                any::<bool>()
            )
                .prop_map(|(text, n, tags, extra, flag)| Item::Note(Note {
                    text,
                    n,
                    tags,
                    extra,
                    flag
                })),
            json().prop_map(Item::Anything),
        ]
    }

    /// An envelope: up to 5 messages, each kind once, in any order.
    pub fn envelope() -> impl Strategy<Value = Vec<Item>> {
        prop::collection::vec(item(), 0..6).prop_map(|items| {
            let mut seen = Vec::new();
            items
                .into_iter()
                .filter(|i| {
                    let new = !seen.contains(&i.kind());
                    seen.push(i.kind());
                    new
                })
                .collect()
        })
    }
}

/// One envelope of the property: which node sent it, its payload as
/// Python writes it, and what became of the send.
struct Sent {
    node: usize,
    payload: String,
    result: socketscience::Result<()>,
}

/// Sends `sends` (node, envelope) from three nodes with `python_peers()`
/// in one room, each burst without waiting (so that envelopes queue up
/// together); every post in the room, and each send.
fn run_fleet(sends: Vec<(usize, Vec<Item>)>) -> (Vec<String>, Vec<Sent>, Vec<String>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        let chat = LocalChat::new();
        let mut room = chat.watch();
        let mut nodes = Vec::new();
        for i in 0..3 {
            nodes.push(python_peer(&chat, &format!("interop/fleet-{i}")).await);
        }
        let mut sent = Vec::new();
        for (node, items) in sends {
            let payload = format!(
                "{{{}}}",
                items
                    .iter()
                    .map(|i| format!("{}:{}", json_string(i.kind()), i.python()))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let mut envelope = Envelope::new();
            for item in items {
                item.push(&mut envelope);
            }
            let result = nodes[node].try_send(envelope);
            sent.push(Sent {
                node,
                payload,
                result,
            });
        }
        for node in &nodes {
            within("shutdown", node.shutdown()).await.expect("shutdown");
        }
        let names = nodes.iter().map(|n| n.name().to_owned()).collect();
        (posted(&mut room), sent, names)
    })
}

/// The fleet property (issue 13): whatever sequence of envelopes several
/// nodes with `python_peers()` send, each is posted alone, whole, as sent,
/// and SmokeDetector treats each post exactly as it treats its own `send`
/// of the same payload: the same callbacks with the same values, the same
/// effects, no exception. What a node refuses to send is exactly what makes
/// SmokeDetector's own `send` or receive path raise.
#[test]
fn python_treats_every_post_of_a_python_peers_fleet_as_its_own() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let mut config = Config::with_cases(64);
    if let Some(cases) = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
    {
        config.cases = cases;
    }
    config.failure_persistence = None;
    let sends = prop::collection::vec((0usize..3, strategies::envelope()), 1..8);
    let mut runner = TestRunner::new(config);
    runner
        .run(&sends, |sends| {
            let (posts, sent, names) = run_fleet(sends);
            // Each accepted envelope is one post: find it by sender and number.
            let mut by_envelope = std::collections::HashMap::new();
            for post in &posts {
                let decoded = wire::decode_body(&body_bytes(post))
                    .map_err(|e| TestCaseError::fail(format!("{e}: {post:?}")))?;
                prop_assert_eq!(decoded.count, None, "merged: {:?}", post);
                // A heartbeat (a node answering a newcomer) holds no
                // envelope; Python ignores it
                // (`python_ignores_heartbeats_and_repair_posts`).
                let Some(seq) = decoded.seq else {
                    prop_assert!(decoded.messages.is_empty(), "{:?}", post);
                    continue;
                };
                let key = (decoded.from.expect("_from"), seq);
                prop_assert!(by_envelope.insert(key, post.clone()).is_none());
            }
            let mut next_seq = [0u64; 3];
            let mut rust_posts = Vec::new();
            for s in sent.iter().filter(|s| s.result.is_ok()) {
                let key = (names[s.node].clone(), next_seq[s.node]);
                next_seq[s.node] += 1;
                match by_envelope.remove(&key) {
                    Some(post) => rust_posts.push(post),
                    None => return Err(TestCaseError::fail(format!("no post for {key:?}"))),
                }
            }
            prop_assert!(
                by_envelope.is_empty(),
                "posts nobody sent: {:?}",
                by_envelope
            );

            let payloads: Vec<String> = sent.iter().map(|s| s.payload.clone()).collect();
            let python = smokedetector_send_receive(&payloads, &CATALOG);
            let rust = smokedetector_on_msg(&rust_posts, &CATALOG, true);
            let mut rust = rust.into_iter();
            for (s, python) in sent.iter().zip(python) {
                match &s.result {
                    Ok(()) => {
                        let rust = rust.next().expect("one outcome per post");
                        prop_assert_eq!(&rust.raised, &None, "{}: {:?}", s.payload, rust);
                        prop_assert_eq!(
                            (&rust.calls, &rust.effects, rust.malformed),
                            (&python.calls, &python.effects, python.malformed),
                            "{}",
                            s.payload
                        );
                    }
                    Err(e) => {
                        prop_assert!(
                            matches!(e, Error::NotForPython { .. } | Error::Encode { .. }),
                            "{}: {}",
                            s.payload,
                            e
                        );
                        prop_assert!(
                            python.raised.is_some(),
                            "refused ({}), but SmokeDetector takes {}: {:?}",
                            e,
                            s.payload,
                            python
                        );
                    }
                }
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
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
        &common::json_frame(&format!(
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
    for outcome in smokedetector_on_msg(control, &["heartbeat"], true) {
        assert_eq!(outcome.raised, None, "{outcome:?}");
        assert!(outcome.calls.is_empty(), "{outcome:?}");
        let payload: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
            outcome
                .payload
                .as_deref()
                .unwrap_or_else(|| panic!("SmokeDetector did not read it: {outcome:?}")),
        )
        .expect("a JSON object");
        assert!(payload.keys().all(|k| k.starts_with('_')), "{outcome:?}");
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
