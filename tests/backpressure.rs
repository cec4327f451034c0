//! The outgoing queue's bound, through the public API, on a transport that
//! posts only when a test lets it: `try_send` refuses past the capacity,
//! `send().await` waits for room and then goes out in order, and a
//! shutdown refuses a sender still waiting.

mod common;

use std::sync::Arc;

use common::{within, Log, RecordingChat};
use socketscience::transport::LineMode;
use socketscience::wire::{self, BodyLimits, ChatText};
use socketscience::{message, Error, Node};
use tokio::sync::Semaphore;

#[message("bp_numbered")]
#[derive(Debug, Clone, PartialEq)]
pub struct Numbered {
    pub n: u64,
}

/// The `_seq` and `n` of every envelope in `posts` (MessagePack: one
/// envelope per post, since the kind repeats).
fn envelopes(posts: &[String]) -> Vec<(u64, u64)> {
    posts
        .iter()
        .map(|post| {
            let Ok(ChatText::Frame { body }) = wire::parse_chat_text(post) else {
                panic!("not a whole frame: {post:?}")
            };
            let mut bytes = Vec::new();
            wire::decode_base64(body, &mut bytes).expect("base64");
            let body = wire::parse_body(&bytes, BodyLimits::default()).expect("a body");
            assert_eq!(body.messages.len(), 1, "one envelope per post");
            let numbered: Numbered = body.messages[0].1.decode().expect("a Numbered");
            (body.meta.seq.expect("numbered"), numbered.n)
        })
        .collect()
}

/// A node on a chat that posts only when the test adds permits; each post
/// carries one envelope (`python_peers`: otherwise a post takes every
/// envelope waiting), so one post makes room for exactly one.
async fn gated_node(capacity: usize) -> (Node, Arc<Semaphore>, Log<String>) {
    let permits = Arc::new(Semaphore::new(0));
    let posts = Log::default();
    let node = Node::builder("Henders/EC2")
        .transport(RecordingChat {
            lines: LineMode::Multi,
            max_len: 4096,
            gate: Some(permits.clone()),
            posts: posts.clone(),
        })
        .python_peers()
        .outgoing_capacity(capacity)
        .default_node(false)
        .start()
        .await
        .expect("node");
    (node, permits, posts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_try_send_and_send_waits_for_room() {
    let (node, permits, posts) = gated_node(3).await;
    for n in 0..3 {
        node.try_send(Numbered { n }).expect("room for three");
    }
    match node.try_send(Numbered { n: 99 }) {
        Err(Error::QueueFull { capacity: 3, .. }) => {}
        other => panic!("expected QueueFull with capacity 3, got {other:?}"),
    }
    let waiting = tokio::spawn({
        let node = node.clone();
        async move { node.send(Numbered { n: 3 }).await }
    });
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert!(
        !waiting.is_finished(),
        "send().await returned while the queue was full and nothing was posted"
    );
    assert_eq!(node.stats().sent, 3);

    // One post makes room for one envelope: the waiting send goes in.
    permits.add_permits(1);
    within("the waiting send", waiting)
        .await
        .expect("the task")
        .expect("queued once there was room");
    node.try_send(Numbered { n: 4 })
        .expect_err("full again: three waiting");

    permits.add_permits(10);
    within("shutdown", node.shutdown()).await.expect("shutdown");
    assert_eq!(
        envelopes(&posts.items()),
        [(0, 0), (1, 1), (2, 2), (3, 3)],
        "every queued envelope, in order, numbered in queue order; the refused ones never"
    );
    let stats = node.stats();
    assert_eq!((stats.sent, stats.posts), (4, 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_refuses_a_sender_waiting_for_room() {
    let (node, permits, posts) = gated_node(1).await;
    node.try_send(Numbered { n: 0 }).expect("room for one");
    let waiting = tokio::spawn({
        let node = node.clone();
        async move { node.send(Numbered { n: 1 }).await }
    });
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert!(!waiting.is_finished(), "the queue is full");
    // Shutdown refuses new envelopes at once; it then waits for the
    // transport to flush, which needs permits.
    let stopping = tokio::spawn({
        let node = node.clone();
        async move { node.shutdown().await }
    });
    match within("the waiting send", waiting).await.expect("the task") {
        Err(Error::NodeStopped { name }) => assert_eq!(name, "Henders/EC2"),
        other => panic!("expected NodeStopped, got {other:?}"),
    }
    match node.try_send(Numbered { n: 2 }) {
        Err(Error::NodeStopped { .. }) => {}
        other => panic!("expected NodeStopped after shutdown, got {other:?}"),
    }
    permits.add_permits(10);
    within("shutdown", stopping)
        .await
        .expect("the task")
        .expect("shutdown");
    assert_eq!(
        envelopes(&posts.items()),
        [(0, 0)],
        "the queued one is flushed"
    );
}
