//! Golden vectors: the exact chat text a node posts, byte for byte, for a
//! few envelopes in each codec, and for an envelope split into chunks.
//!
//! `.seed(N)` fixes a node's randomness (its session id, the frame's four
//! digits, the chunk id), so its output is reproducible. The same strings
//! are the examples of `docs/wire-format.md`. Each golden text is also read
//! back by a node, so the vectors are known to be readable, not only
//! reproducible.
//!
//! If the wire format changes on purpose, a failing test prints the new
//! texts as Rust literals; update them here and in the docs together.

mod common;

use common::messages::{Heartbeat, MetasmokeState, Ping};
use common::{within, Log, RecordingChat};
use socketscience::transport::LineMode;
use socketscience::wire;
use socketscience::{Codec, Envelope, LocalChat, Message, Node, Payload};

const NAME: &str = "Henders/EC2";

fn ping() -> Ping {
    Ping {
        location: NAME.into(),
        timestamp: 1712345678.25,
    }
}

fn ping_and_state() -> Envelope {
    Envelope::new()
        .with(ping())
        .and_then(|e| e.with(MetasmokeState::Down))
        .expect("distinct kinds")
}

/// A ping too long for one 120-byte chat message.
fn long_ping() -> Ping {
    Ping {
        location: "Henders/EC2, on a host whose name is long enough to need chunks".into(),
        timestamp: 1712345678.25,
    }
}

/// What node "Henders/EC2", seeded with `seed`, posts into `chat` for one
/// payload.
async fn posts(chat: LocalChat, codec: Codec, seed: u64, payload: impl Payload) -> Vec<String> {
    assert_unsigned();
    let mut room = chat.watch();
    let node = Node::builder(NAME)
        .transport(chat.join("smokey"))
        .codec(codec)
        .seed(seed)
        .default_node(false)
        .start()
        .await
        .expect("node starts");
    within("send", node.send(payload)).await.expect("send");
    within("shutdown", node.shutdown()).await.expect("shutdown");
    let mut texts = Vec::new();
    while let Ok(message) = room.try_recv() {
        texts.push(message.text.to_string());
    }
    texts
}

/// The vectors are unsigned: a secret in the environment would sign them
/// (with a timestamp, so they would change at every run).
fn assert_unsigned() {
    for var in ["SOCKETSCIENCE_SECRET", "SOCKETSCIENCE_SECRET_PREVIOUS"] {
        assert!(
            std::env::var_os(var).is_none(),
            "unset {var} to run the golden tests: signed envelopes carry the time"
        );
    }
}

#[track_caller]
fn assert_golden(actual: &[String], expected: &[&str]) {
    assert!(
        actual == expected,
        "the chat text differs from the golden vector.\nposted:\n{}\ngolden:\n{}",
        actual
            .iter()
            .map(|t| format!("    {t:?},"))
            .collect::<Vec<_>>()
            .join("\n"),
        expected
            .iter()
            .map(|t| format!("    {t:?},"))
            .collect::<Vec<_>>()
            .join("\n"),
    );
}

// ---------------------------------------------------------------------------
// The vectors (also in docs/wire-format.md).

/// `{"ping":{"location":"Henders/EC2","timestamp":1712345678.25},"_from":"Henders/EC2","_sid":12120239713417281201,"_seq":0}`
const PING_JSON: &str =
    ".\n\u{2}0445eyJwaW5nIjp7ImxvY2F0aW9uIjoiSGVuZGVycy9FQzIiLCJ0aW1lc3RhbXAiOjE3MTIzNDU2NzguMjV9LCJfZnJvbSI6IkhlbmRlcnMvRUMyIiwiX3NpZCI6MTIxMjAyMzk3MTM0MTcyODEyMDEsIl9zZXEiOjB9\u{3}";
/// The same dict (session 3736708066431228558) as `msgpack.dumps` writes it.
const PING_MSGPACK: &str =
    ".\n\u{2}0333hKRwaW5ngqhsb2NhdGlvbqtIZW5kZXJzL0VDMql0aW1lc3RhbXDLQdmEFJOQAAClX2Zyb22rSGVuZGVycy9FQzKkX3NpZM8z23QwQPhajqRfc2VxAA==\u{3}";
/// `{"heartbeat":12.5,"_from":"Henders/EC2","_sid":10728006690767679202,"_seq":0}`
const HEARTBEAT_JSON: &str =
    ".\n\u{2}8329eyJoZWFydGJlYXQiOjEyLjUsIl9mcm9tIjoiSGVuZGVycy9FQzIiLCJfc2lkIjoxMDcyODAwNjY5MDc2NzY3OTIwMiwiX3NlcSI6MH0=\u{3}";
/// `{"heartbeat":12.5,"_from":"Henders/EC2","_sid":2272419700304988715,"_seq":0}`
const HEARTBEAT_MSGPACK: &str =
    ".\n\u{2}4888hKloZWFydGJlYXTLQCkAAAAAAAClX2Zyb22rSGVuZGVycy9FQzKkX3NpZM8fiUGteUdKK6Rfc2VxAA==\u{3}";
/// `{"metasmoke_state":"down","_from":"Henders/EC2","_sid":3199580926914791666,"_seq":0}`
const STATE_JSON: &str =
    ".\n\u{2}9335eyJtZXRhc21va2Vfc3RhdGUiOiJkb3duIiwiX2Zyb20iOiJIZW5kZXJzL0VDMiIsIl9zaWQiOjMxOTk1ODA5MjY5MTQ3OTE2NjYsIl9zZXEiOjB9\u{3}";
/// `{"metasmoke_state":"down","_from":"Henders/EC2","_sid":13190735811674747962,"_seq":0}`
const STATE_MSGPACK: &str =
    ".\n\u{2}4447hK9tZXRhc21va2Vfc3RhdGWkZG93bqVfZnJvbatIZW5kZXJzL0VDMqRfc2lkz7cO6FVM5bQ6pF9zZXEA\u{3}";
/// `{"ping":{..},"metasmoke_state":"down","_from":"Henders/EC2","_sid":14266376187910451857,"_seq":0}`
const TWO_KINDS_JSON: &str =
    ".\n\u{2}9116eyJwaW5nIjp7ImxvY2F0aW9uIjoiSGVuZGVycy9FQzIiLCJ0aW1lc3RhbXAiOjE3MTIzNDU2NzguMjV9LCJtZXRhc21va2Vfc3RhdGUiOiJkb3duIiwiX2Zyb20iOiJIZW5kZXJzL0VDMiIsIl9zaWQiOjE0MjY2Mzc2MTg3OTEwNDUxODU3LCJfc2VxIjowfQ==\u{3}";
/// `{"ping":{..},"metasmoke_state":"down","_from":"Henders/EC2","_sid":5513550522680090330,"_seq":0}`
const TWO_KINDS_MSGPACK: &str =
    ".\n\u{2}5512haRwaW5ngqhsb2NhdGlvbqtIZW5kZXJzL0VDMql0aW1lc3RhbXDLQdmEFJOQAACvbWV0YXNtb2tlX3N0YXRlpGRvd26lX2Zyb22rSGVuZGVycy9FQzKkX3NpZM9MhBD9A4Qe2qRfc2VxAA==\u{3}";
/// The ping in MessagePack (session 11346115806839496525) on a single-line chat.
const PING_SINGLE_LINE: &str =
    "\u{2}1194hKRwaW5ngqhsb2NhdGlvbqtIZW5kZXJzL0VDMql0aW1lc3RhbXDLQdmEFJOQAAClX2Zyb22rSGVuZGVycy9FQzKkX3NpZM+ddYA2RxzfTaRfc2VxAA==\u{3}";
/// [`long_ping`] in JSON (session 16437497232995612917) in a 120-byte room:
/// 232 base64 characters in three pieces of 78, 78 and 76.
/// `{"_from":"Henders/EC2","_sid":16686411752907911779,"_seq":0,"_batch":[{"ping":{..1712345678.25}},{"ping":{..1712345679.25}},{"ping":{..1712345680.25}}]}`
const BATCH_MSGPACK: &str = ".\n\u{2}4759hKVfZnJvbatIZW5kZXJzL0VDMqRfc2lkz+eSCxSz+rJjpF9zZXEApl9iYXRjaJOBpHBpbmeCqGxvY2F0aW9uq0hlbmRlcnMvRUMyqXRpbWVzdGFtcMtB2YQUk5AAAIGkcGluZ4KobG9jYXRpb26rSGVuZGVycy9FQzKpdGltZXN0YW1wy0HZhBST0AAAgaRwaW5ngqhsb2NhdGlvbqtIZW5kZXJzL0VDMql0aW1lc3RhbXDLQdmEFJQQAAA=\u{3}";

/// 0xc1 0x01 and the raw DEFLATE of `{"_from":"Henders/EC2","_sid":7583431182658920364,"_seq":0,"_batch":[..20 pings..]}`
const COMPRESSED_JSON: &str = ".\n\u{2}6856wQGl0rsKwkAQheF3mTpo9r6zrQi+g0iIyaoL5mKyXci7q1ja5XQDw3+qb6HqNg0dBTrFvo3TvD8eJBVUzaml4IxXWgnhpTWeZams/r7ii0L5Oa51bh4UzguNqb9TWOg5NHVOQ/+3l1MX51x3IwXhhFTaWOd30qxrsbFmpPYlVAuollCtoFpDtYFqC9UOqiFrHrLGkDWGrDFkjSFrDFljyBpD1vhn7bK+AQ==\u{3}";

const LONG_PING_CHUNKS: &[&str] = &[
    ".\n\u{1}c5a348ae 1/3 e41db8a4d12b78f5 eyJwaW5nIjp7ImxvY2F0aW9uIjoiSGVuZGVycy9FQzIsIG9uIGEgaG9zdCB3aG9zZSBuYW1lIGlzIG",
    ".\n\u{1}c5a348ae 2/3 e41db8a4d12b78f5 xvbmcgZW5vdWdoIHRvIG5lZWQgY2h1bmtzIiwidGltZXN0YW1wIjoxNzEyMzQ1Njc4LjI1fSwiX2Zy",
    ".\n\u{1}c5a348ae 3/3 e41db8a4d12b78f5 b20iOiJIZW5kZXJzL0VDMiIsIl9zaWQiOjE2NDM3NDk3MjMyOTk1NjEyOTE3LCJfc2VxIjowfQ==",
];

#[tokio::test]
async fn ping_struct() {
    let json = posts(LocalChat::new(), Codec::Json, 1, ping()).await;
    assert_golden(&json, &[PING_JSON]);
    let msgpack = posts(LocalChat::new(), Codec::MessagePack, 2, ping()).await;
    assert_golden(&msgpack, &[PING_MSGPACK]);
}

#[tokio::test]
async fn heartbeat_newtype() {
    let json = posts(LocalChat::new(), Codec::Json, 3, Heartbeat(12.5)).await;
    assert_golden(&json, &[HEARTBEAT_JSON]);
    let msgpack = posts(LocalChat::new(), Codec::MessagePack, 4, Heartbeat(12.5)).await;
    assert_golden(&msgpack, &[HEARTBEAT_MSGPACK]);
}

#[tokio::test]
async fn metasmoke_state_enum() {
    let json = posts(LocalChat::new(), Codec::Json, 5, MetasmokeState::Down).await;
    assert_golden(&json, &[STATE_JSON]);
    let msgpack = posts(
        LocalChat::new(),
        Codec::MessagePack,
        6,
        MetasmokeState::Down,
    )
    .await;
    assert_golden(&msgpack, &[STATE_MSGPACK]);
}

#[tokio::test]
async fn two_kinds_in_one_envelope() {
    let json = posts(LocalChat::new(), Codec::Json, 7, ping_and_state()).await;
    assert_golden(&json, &[TWO_KINDS_JSON]);
    let msgpack = posts(LocalChat::new(), Codec::MessagePack, 8, ping_and_state()).await;
    assert_golden(&msgpack, &[TWO_KINDS_MSGPACK]);
}

#[tokio::test]
async fn single_line_frame() {
    assert_unsigned();
    let posted = Log::default();
    let node = Node::builder(NAME)
        .transport(RecordingChat {
            lines: LineMode::Single,
            max_len: 512,
            gate: None,
            posts: posted.clone(),
        })
        .codec(Codec::MessagePack)
        .seed(9)
        .default_node(false)
        .start()
        .await
        .expect("node starts");
    within("send", node.send(ping())).await.expect("send");
    within("shutdown", node.shutdown()).await.expect("shutdown");
    assert_golden(&posted.items(), &[PING_SINGLE_LINE]);
}

/// What node "Henders/EC2", seeded with `seed`, posts into a chat of
/// `max_len`-byte messages for `pings` pings queued while the chat took
/// nothing: one post of them all.
async fn grouped_posts(codec: Codec, seed: u64, max_len: usize, pings: usize) -> Vec<String> {
    assert_unsigned();
    let posted = Log::default();
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let node = Node::builder(NAME)
        .transport(RecordingChat {
            lines: LineMode::Multi,
            max_len,
            gate: Some(gate.clone()),
            posts: posted.clone(),
        })
        .codec(codec)
        .seed(seed)
        .default_node(false)
        .start()
        .await
        .expect("node starts");
    for i in 0..pings {
        let ping = Ping {
            location: NAME.into(),
            timestamp: 1712345678.25 + i as f64,
        };
        node.try_send(ping).expect("queued");
    }
    gate.add_permits(16);
    within("shutdown", node.shutdown()).await.expect("shutdown");
    posted.items()
}

/// Three pings in one MessagePack post: a batch (the kind repeats).
#[tokio::test]
async fn a_messagepack_batch() {
    let posted = grouped_posts(Codec::MessagePack, 11, 2_000, 3).await;
    assert_golden(&posted, &[BATCH_MSGPACK]);
}

/// Twenty pings in one post of a 400-byte chat: a deflated batch.
#[tokio::test]
async fn a_compressed_batch() {
    let posted = grouped_posts(Codec::Json, 12, 400, 20).await;
    assert_golden(&posted, &[COMPRESSED_JSON]);
    assert!(COMPRESSED_JSON.len() <= 400);
}

#[tokio::test]
async fn chunks() {
    let chat = LocalChat::with_max_message_len(120);
    let posted = posts(chat, Codec::Json, 10, long_ping()).await;
    assert!(posted.len() >= 3, "{posted:?}");
    assert!(posted.iter().all(|c| c.len() <= 120));
    assert_golden(&posted, LONG_PING_CHUNKS);
}

// ---------------------------------------------------------------------------
// The vectors read back

/// Posts `texts` as "smokey" into a fresh room; what a node's handlers of
/// `M` got.
async fn read_back<M: Message + Clone>(texts: &[&str]) -> Vec<M> {
    let chat = LocalChat::with_max_message_len(120);
    let node = Node::builder("golden/reader")
        .transport(chat.join("smokey"))
        .default_node(false)
        .start()
        .await
        .expect("node starts");
    let seen = Log::default();
    let into = seen.clone();
    node.register(move |m: M| into.push(m));
    for text in texts {
        chat.say("smokey", text);
    }
    within("shutdown", node.shutdown()).await.expect("shutdown");
    let stats = node.stats();
    assert_eq!(
        (stats.malformed, stats.bad_values, stats.duplicates),
        (0, 0, 0)
    );
    seen.items()
}

#[tokio::test]
async fn golden_texts_are_readable() {
    assert_eq!(
        read_back::<Ping>(&[
            PING_JSON,
            PING_MSGPACK,
            TWO_KINDS_JSON,
            TWO_KINDS_MSGPACK,
            PING_SINGLE_LINE
        ])
        .await,
        vec![ping(); 5]
    );
    assert_eq!(read_back::<Ping>(LONG_PING_CHUNKS).await, [long_ping()]);
    let pings = |n: usize| -> Vec<Ping> {
        (0..n)
            .map(|i| Ping {
                location: NAME.into(),
                timestamp: 1712345678.25 + i as f64,
            })
            .collect()
    };
    assert_eq!(read_back::<Ping>(&[BATCH_MSGPACK]).await, pings(3));
    assert_eq!(read_back::<Ping>(&[COMPRESSED_JSON]).await, pings(20));
    assert_eq!(
        read_back::<Heartbeat>(&[HEARTBEAT_JSON, HEARTBEAT_MSGPACK]).await,
        [Heartbeat(12.5); 2]
    );
    assert_eq!(
        read_back::<MetasmokeState>(&[
            STATE_JSON,
            STATE_MSGPACK,
            TWO_KINDS_JSON,
            TWO_KINDS_MSGPACK
        ])
        .await,
        [MetasmokeState::Down; 4]
    );
}

/// docs/wire-format.md shows these very vectors, as Rust literals.
#[test]
fn the_docs_show_the_golden_vectors() {
    let docs = include_str!("../docs/wire-format.md");
    let vectors = [
        PING_JSON,
        PING_MSGPACK,
        HEARTBEAT_JSON,
        HEARTBEAT_MSGPACK,
        STATE_JSON,
        STATE_MSGPACK,
        TWO_KINDS_JSON,
        TWO_KINDS_MSGPACK,
        PING_SINGLE_LINE,
        BATCH_MSGPACK,
        COMPRESSED_JSON,
    ];
    for text in vectors.iter().chain(LONG_PING_CHUNKS) {
        let literal = format!("{text:?}");
        assert!(
            docs.contains(&literal),
            "docs/wire-format.md lacks {literal}"
        );
    }
}

/// The chunks of [`LONG_PING_CHUNKS`] are the base64 body of one frame cut
/// in order, and none looks like a frame to a Python receiver.
#[test]
fn chunk_pieces_make_the_body() {
    let mut body = String::new();
    for (i, text) in LONG_PING_CHUNKS.iter().enumerate() {
        assert!(!text.starts_with(wire::FRAME_START));
        assert!(!text.ends_with(wire::FRAME_END));
        let Ok(wire::ChatText::Chunk(chunk)) = wire::parse_chat_text(text) else {
            panic!("not a chunk: {text:?}");
        };
        assert_eq!(chunk.index as usize, i + 1);
        assert_eq!(chunk.total as usize, LONG_PING_CHUNKS.len());
        body.push_str(chunk.piece);
    }
    let mut bytes = Vec::new();
    wire::decode_base64(&body, &mut bytes).expect("base64");
    let parsed = wire::parse_body(&bytes, Default::default()).expect("a body");
    assert_eq!(parsed.messages[0].0, "ping");
    assert_eq!(parsed.meta.from.as_deref(), Some(NAME));
}
