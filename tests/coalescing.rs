//! A throttled chat: envelopes that wait share posts, in order, and every
//! post stays readable by its receivers.

mod common;

use std::time::Duration;

use common::messages::Ping;
use common::{wait_for, Log};
use socketscience::{message, Codec, Context, Envelope, LocalChat, Node};
use tokio::time::Instant;

#[message("coalesce_state")]
#[derive(Debug, Clone, PartialEq)]
pub struct State(pub u64);

async fn fleet(chat: &LocalChat, codec: Codec) -> Vec<Node> {
    let mut nodes = Vec::new();
    for name in ["Henders/EC2", "teward/vps", "Undo/laptop"] {
        let node = Node::builder(name)
            .transport(chat.join("smokey"))
            .codec(codec)
            .default_node(false)
            .start()
            .await
            .unwrap();
        nodes.push(node);
    }
    nodes
}

/// Time is paused (tokio's test clock): the throttle's seconds pass
/// instantly and exactly, so the delay below counts throttle intervals.
#[tokio::test(start_paused = true)]
async fn two_hundred_pings_through_a_throttled_chat_share_few_posts() {
    let chat = LocalChat::with_max_message_len(2_000).throttle(Duration::from_secs(1));
    let nodes = fleet(&chat, Codec::Json).await;
    let got = Log::default();
    for node in &nodes {
        let log = got.clone();
        node.register(move |p: Ping, cx: Context| {
            log.push((cx.node().name().to_owned(), p.timestamp as u64))
        });
    }
    let start = Instant::now();
    for i in 0..200 {
        nodes[0]
            .try_send(Ping {
                location: "Henders/EC2".into(),
                timestamp: 1_700_000_000.0 + i as f64,
            })
            .unwrap();
    }
    for node in &nodes {
        wait_for(node, "200 pings", |s| s.dispatched == 200).await;
    }
    let delay = start.elapsed();
    let posts = nodes[0].stats().posts;
    eprintln!(
        "200 pings: {posts} posts, last dispatched everywhere after {delay:?} (paused clock)"
    );
    assert!(posts <= 12, "{posts} posts");
    assert!(delay <= Duration::from_secs(15), "{delay:?}");
    for node in &nodes {
        let order: Vec<u64> = got
            .items()
            .into_iter()
            .filter(|(n, _)| n == node.name())
            .map(|(_, t)| t - 1_700_000_000)
            .collect();
        assert_eq!(order, (0..200).collect::<Vec<_>>(), "{}", node.name());
    }
    for node in &nodes {
        node.shutdown().await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn messagepack_merges_distinct_kinds_and_batches_repeated_ones() {
    let chat = LocalChat::with_max_message_len(2_000).throttle(Duration::from_secs(1));
    let mut watch = chat.watch();
    let nodes = fleet(&chat, Codec::MessagePack).await;
    let got = Log::default();
    for node in &nodes {
        let (a, b) = (got.clone(), got.clone());
        let name = node.name().to_owned();
        let name2 = name.clone();
        node.register(move |p: Ping| a.push((name.clone(), format!("ping {}", p.timestamp))));
        node.register(move |s: State| b.push((name2.clone(), format!("state {}", s.0))));
    }
    // ping, state, ping, state, ...: a kind repeats, so a batch.
    for i in 0..20u64 {
        let ping = Ping {
            location: "x".into(),
            timestamp: i as f64,
        };
        nodes[0].try_send(ping).unwrap();
        nodes[0].try_send(State(i)).unwrap();
    }
    for node in &nodes {
        wait_for(node, "40 messages", |s| s.dispatched == 40).await;
    }
    for node in &nodes {
        node.shutdown().await.unwrap();
    }
    let mut posts = 0;
    while let Ok(message) = watch.try_recv() {
        // Every post is one plain frame with no kind twice: what Python reads.
        let text = socketscience::wire::clean(&message.text).into_owned();
        let socketscience::wire::ChatText::Frame { body } =
            socketscience::wire::parse_chat_text(&text).unwrap()
        else {
            panic!("not a frame");
        };
        let mut bytes = Vec::new();
        socketscience::wire::decode_base64(body, &mut bytes).unwrap();
        let parsed = socketscience::wire::decode_body(&bytes).unwrap();
        // A merged map holds each kind once; where kinds repeat, a batch
        // (nodes without `python_peers` share posts between Rust nodes).
        match parsed.batch {
            Some(batch) => assert_eq!(batch.len() as u64, parsed.count.unwrap()),
            None => assert!(parsed.messages.len() <= 2),
        }
        posts += 1;
    }
    assert!(posts < 40, "{posts} posts for 40 envelopes");
    let expected: Vec<String> = (0..20)
        .flat_map(|i| [format!("ping {i}"), format!("state {i}")])
        .collect();
    for node in &nodes {
        let seen: Vec<String> = got
            .items()
            .into_iter()
            .filter(|(n, _)| n == node.name())
            .map(|(_, m)| m)
            .collect();
        assert_eq!(seen, expected, "{}: per-sender order", node.name());
    }
}

#[tokio::test(start_paused = true)]
async fn an_envelope_too_large_for_one_post_is_chunked_between_batches() {
    let chat = LocalChat::with_max_message_len(500).throttle(Duration::from_millis(100));
    let nodes = fleet(&chat, Codec::Json).await;
    let got = Log::default();
    for node in &nodes {
        let log = got.clone();
        let name = node.name().to_owned();
        node.register(move |s: State| log.push((name.clone(), s.0)));
    }
    for i in 0..100 {
        if i == 50 {
            let big = Ping {
                location: "y".repeat(2_000),
                timestamp: 0.0,
            };
            nodes[0]
                .try_send(Envelope::new().with(State(i)).unwrap().with(big).unwrap())
                .unwrap();
        } else {
            nodes[0].try_send(State(i)).unwrap();
        }
    }
    for node in &nodes {
        wait_for(node, "100 states", |s| s.envelopes == 100).await;
    }
    for node in &nodes {
        let seen: Vec<u64> = got
            .items()
            .into_iter()
            .filter(|(n, _)| n == node.name())
            .map(|(_, m)| m)
            .collect();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
        node.shutdown().await.unwrap();
    }
}
