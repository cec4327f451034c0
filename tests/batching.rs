//! As many messages per post as the chat allows (issue 18): envelopes that
//! wait share a post as a batch, deflated when it would not fit otherwise;
//! every node reads it, in order; a compressed body that would inflate past
//! `max_envelope_bytes` is refused and counted.

mod common;

use std::time::Duration;

use common::messages::{Location, Ping};
use common::{wait_for, Log, CODECS};
use socketscience::{message, wire, Codec, Context, LocalChat, Node};

#[message("batch_state")]
#[derive(Debug, Clone, PartialEq)]
pub struct State(pub u64);

async fn fleet(chat: &LocalChat, codec: Codec, secret: Option<&str>) -> Vec<Node> {
    let mut nodes = Vec::new();
    for name in ["Henders/EC2", "teward/vps", "Undo/laptop"] {
        let mut builder = Node::builder(name)
            .transport(chat.join("smokey"))
            .codec(codec)
            .default_node(false);
        if let Some(secret) = secret {
            builder = builder.secret(secret);
        }
        nodes.push(builder.start().await.unwrap());
    }
    nodes
}

/// SmokeDetector's ping, with the time as `time.time()` gives it (a
/// fraction that changes in every digit).
fn ping(i: u64) -> Ping {
    Ping {
        location: "Henders/EC2".into(),
        timestamp: 1_712_345_678.0 + i as f64 * 0.013_7,
    }
}

/// The frames `watch` saw, their bodies decoded (and inflated).
fn posted_bodies(
    watch: &mut tokio::sync::mpsc::UnboundedReceiver<socketscience::transport::ChatMessage>,
) -> Vec<(usize, wire::Decoded)> {
    let mut bodies = Vec::new();
    while let Ok(message) = watch.try_recv() {
        let text = wire::clean(&message.text).into_owned();
        let wire::ChatText::Frame { body } = wire::parse_chat_text(&text).unwrap() else {
            panic!("a chunk: every post here fits one chat message");
        };
        let mut bytes = Vec::new();
        wire::decode_base64(body, &mut bytes).unwrap();
        bodies.push((text.len(), wire::decode_body(&bytes).unwrap()));
    }
    bodies
}

/// The issue's goal: on a chat of one post a second and 2 000 characters a
/// post, 1 000 pings from one node reach every node in at most 10 posts,
/// in order. Paused clock: the throttle's seconds pass at once.
#[tokio::test(start_paused = true)]
async fn a_thousand_pings_take_at_most_ten_posts() {
    for codec in CODECS {
        let chat = LocalChat::with_max_message_len(2_000).throttle(Duration::from_secs(1));
        let mut watch = chat.watch();
        let nodes = fleet(&chat, codec, None).await;
        let got = Log::default();
        for node in &nodes {
            let log = got.clone();
            node.register(move |p: Ping, cx: Context| {
                log.push((cx.node().name().to_owned(), p.timestamp))
            });
        }
        for i in 0..1_000 {
            nodes[0].send(ping(i)).await.unwrap();
        }
        for node in &nodes {
            wait_for(node, "1 000 pings", |s| s.dispatched == 1_000).await;
        }
        let posts = nodes[0].stats().posts;
        eprintln!("{codec}: 1 000 pings in {posts} posts");
        assert!(posts <= 10, "{codec}: {posts} posts for 1 000 pings");
        for node in &nodes {
            let seen: Vec<f64> = got
                .items()
                .into_iter()
                .filter(|(n, _)| n == node.name())
                .map(|(_, t)| t)
                .collect();
            let sent: Vec<f64> = (0..1_000).map(|i| ping(i).timestamp).collect();
            assert_eq!(seen, sent, "{codec}: {} in order", node.name());
            let stats = node.stats();
            assert_eq!(stats.rejected(), 0, "{codec}: {stats:#?}");
        }
        for node in &nodes {
            node.shutdown().await.unwrap();
        }
        // Every post fits one chat message; the grouped ones are batches.
        let bodies = posted_bodies(&mut watch);
        // The others answer the first post of a newcomer with a heartbeat
        // (`Node::wait_for_peers`): those carry no envelope.
        let bodies: Vec<_> = bodies
            .into_iter()
            .filter(|(_, b)| b.from.as_deref() == Some("Henders/EC2"))
            .collect();
        assert_eq!(bodies.len() as u64, posts);
        let envelopes: u64 = bodies
            .iter()
            .map(|(_, b)| b.count.unwrap_or(u64::from(!b.messages.is_empty())))
            .sum();
        assert_eq!(envelopes, 1_000);
        for (len, body) in &bodies {
            assert!(*len <= 2_000, "{len} characters");
            if body.count.is_some_and(|n| n > 1) {
                let batch = body.batch.as_ref().expect("a batch");
                assert_eq!(batch.len() as u64, body.count.unwrap());
            }
        }
    }
}

/// Kinds repeat in a MessagePack batch (a merged map cannot hold them), and
/// signed groups are deflated and verified like any body.
#[tokio::test(start_paused = true)]
async fn repeated_kinds_share_signed_compressed_posts_in_order() {
    for codec in CODECS {
        let chat = LocalChat::with_max_message_len(600).throttle(Duration::from_secs(1));
        let mut watch = chat.watch();
        let nodes = fleet(&chat, codec, Some("fleet secret")).await;
        let got = Log::default();
        for node in &nodes {
            let (a, b) = (got.clone(), got.clone());
            let name = node.name().to_owned();
            let name2 = name.clone();
            node.register(move |p: Ping| a.push((name.clone(), format!("ping {}", p.timestamp))));
            node.register(move |s: State| b.push((name2.clone(), format!("state {}", s.0))));
        }
        for i in 0..150u64 {
            nodes[0].send(ping(i)).await.unwrap();
            nodes[0].send(State(i)).await.unwrap();
        }
        for node in &nodes {
            wait_for(node, "300 messages", |s| s.dispatched == 300).await;
        }
        let expected: Vec<String> = (0..150)
            .flat_map(|i| [format!("ping {}", ping(i).timestamp), format!("state {i}")])
            .collect();
        for node in &nodes {
            let seen: Vec<String> = got
                .items()
                .into_iter()
                .filter(|(n, _)| n == node.name())
                .map(|(_, m)| m)
                .collect();
            assert_eq!(seen, expected, "{codec}: {}", node.name());
            let stats = node.stats();
            assert_eq!(stats.rejected(), 0, "{codec}: {stats:#?}");
        }
        for node in &nodes {
            node.shutdown().await.unwrap();
        }
        let bodies = posted_bodies(&mut watch);
        let most = bodies
            .iter()
            .filter_map(|(_, b)| b.count)
            .max()
            .unwrap_or(1);
        eprintln!(
            "{codec}: 300 envelopes in {} posts, at most {most} a post",
            bodies.len()
        );
        // 600 characters carry 450 bytes: without compression about 7
        // envelopes of these.
        assert!(most >= 15, "{codec}: at most {most} envelopes in a post");
    }
}

/// A compressed body of a few hundred bytes that would inflate to 1 MiB,
/// past `max_envelope_bytes`: refused before it is read, and counted.
#[tokio::test]
async fn a_compression_bomb_is_refused_and_counted() {
    let chat = LocalChat::new();
    let node = Node::builder("Henders/EC2")
        .transport(chat.join("smokey"))
        .default_node(false)
        .max_envelope_bytes(64 << 10)
        .start()
        .await
        .unwrap();
    let got = Log::default();
    let log = got.clone();
    node.register(move |s: State| log.push(s.0));
    // A real body, padded with 1 MiB of spaces (JSON allows them).
    let mut body = br#"{"batch_state":7,"_from":"mallory","_sid":1,"_seq":0}"#.to_vec();
    body.splice(1..1, std::iter::repeat_n(b' ', 1 << 20));
    let mut bomb = Vec::new();
    wire::deflate_body(&body, &mut bomb);
    assert!(bomb.len() < 2_048, "{} bytes", bomb.len());
    let mut b64 = String::new();
    wire::encode_base64(&bomb, &mut b64);
    let mut text = String::new();
    wire::write_frame(&mut text, wire::LineMode::Multi, 1, &b64);
    chat.say("smokey", &text);
    // The same body small enough is read: the refusal is the size's.
    let small = br#"{"batch_state":8,"_from":"mallory","_sid":1,"_seq":0}"#;
    let mut packed = Vec::new();
    wire::deflate_body(small, &mut packed);
    let mut b64 = String::new();
    wire::encode_base64(&packed, &mut b64);
    let mut text = String::new();
    wire::write_frame(&mut text, wire::LineMode::Multi, 2, &b64);
    chat.say("smokey", &text);
    let stats = wait_for(&node, "the small body", |s| s.dispatched == 1).await;
    assert_eq!(stats.compressed_refused, 1, "{stats:#?}");
    assert_eq!(stats.malformed, 0);
    assert_eq!(got.items(), [8]);
    node.shutdown().await.unwrap();
}

/// With `python_peers()`, nothing of this applies: on the same throttled
/// chat, 50 queued pings go out one plain MessagePack envelope per post,
/// never a batch, never deflated.
#[tokio::test(start_paused = true)]
async fn python_peers_never_batch_or_deflate() {
    let chat = LocalChat::with_max_message_len(2_000).throttle(Duration::from_secs(1));
    let mut watch = chat.watch();
    let node = Node::builder("Henders/EC2")
        .transport(chat.join("smokey"))
        .python_peers()
        // 50 posts at one a second outlast the default bound on shutdown.
        .shutdown_timeout(Duration::from_secs(120))
        .default_node(false)
        .start()
        .await
        .unwrap();
    for i in 0..50 {
        let envelope = socketscience::Envelope::new()
            .with(ping(i))
            .and_then(|e| e.with(Location("Henders/EC2".into())))
            .unwrap();
        node.send(envelope).await.unwrap();
    }
    node.shutdown().await.unwrap();
    let mut posts = 0;
    while let Ok(message) = watch.try_recv() {
        let text = wire::clean(&message.text).into_owned();
        let wire::ChatText::Frame { body } = wire::parse_chat_text(&text).unwrap() else {
            panic!("a chunk");
        };
        let mut bytes = Vec::new();
        wire::decode_base64(body, &mut bytes).unwrap();
        assert_ne!(bytes[0], wire::COMPRESSED, "a deflated post");
        let decoded = wire::decode_body(&bytes).unwrap();
        assert_eq!(decoded.codec, Codec::MessagePack);
        assert_eq!((decoded.count, decoded.batch.is_some()), (None, false));
        assert_eq!(decoded.messages.len(), 2);
        posts += 1;
    }
    assert_eq!(posts, 50);
}
