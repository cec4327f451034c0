//! 100 000 hostile messages of every kind, plus never-finished chunks: the
//! node keeps serving good envelopes and its memory stays flat. (Alone in
//! its binary, so that resident memory is this test's.)

mod common;

use std::time::Duration;

use common::{json_frame, rss_bytes, wait_for, Log};
use socketscience::{message, LocalChat, Node};

#[message("order")]
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub n: u64,
}

async fn signed_frames(secret: &str, n: u64) -> Vec<String> {
    let chat = LocalChat::new();
    let mut watch = chat.watch();
    let node = Node::builder(format!("source-{secret}"))
        .transport(chat.join("smokey"))
        .secret(secret)
        .default_node(false)
        .start()
        .await
        .unwrap();
    for i in 0..n {
        node.send(Order { n: i }).await.unwrap();
        wait_for(&node, "posted", |s| s.posts == s.sent).await;
    }
    node.shutdown().await.unwrap();
    let mut frames = Vec::new();
    while let Ok(m) = watch.try_recv() {
        frames.push(m.text.to_string());
    }
    frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_flood_leaves_the_node_serving_with_flat_memory() {
    let secret = "fleet secret";
    let stale = signed_frames(secret, 50).await;
    let forged = signed_frames("guess", 50).await;
    let chat = LocalChat::new();
    let node = Node::builder("target")
        .transport(chat.join("smokey"))
        .secret(secret)
        .max_envelope_bytes(16 << 10)
        .max_clock_skew(Duration::from_secs(2))
        .default_node(false)
        .start()
        .await
        .unwrap();
    let got = Log::default();
    let log = got.clone();
    node.register(move |o: Order| log.push(o.n));
    // Past the clock skew, the kept frames are stale.
    tokio::time::sleep(Duration::from_millis(2_500)).await;

    let unsigned = json_frame(r#"{"order":{"n":666}}"#);
    let oversized = json_frame(&format!(
        r#"{{"order":{{"n":1}},"pad":"{}"}}"#,
        "x".repeat(20_000)
    ));
    let garbage = ".\n\u{2}0000!!garbage!!\u{3}".to_owned();
    let piece = "QUJD".repeat(100);
    const FLOOD: u64 = 100_000;
    const BATCH: u64 = 1_000;
    let mut before = 0;
    for batch in 0..FLOOD / BATCH {
        // A fresh envelope, seen once, then replayed within the batch.
        let replayable = signed_frames(secret, 1).await;
        chat.say("smokey", &replayable[0]);
        for i in 0..BATCH {
            let n = batch * BATCH + i;
            match n % 8 {
                0 => chat.say("mallory", &unsigned),
                1 => chat.say("smokey", &unsigned),
                2 => chat.say("smokey", &forged[(n / 8) as usize % forged.len()]),
                3 => chat.say("smokey", &stale[(n / 8) as usize % stale.len()]),
                4 => chat.say("smokey", &replayable[0]),
                5 => chat.say("smokey", &garbage),
                6 => chat.say("smokey", &oversized),
                _ => chat.say("smokey", &format!(".\n\u{1}{n:08x} 1/9 {piece}")),
            }
        }
        // (The node's own posts, echoed, count too: asking the room about
        // the replaced sessions of the source, heartbeats.)
        wait_for(&node, "the batch", |s| {
            s.received - s.own_echoes == (batch + 1) * (BATCH + 1)
        })
        .await;
        if batch == 4 {
            before = rss_bytes();
        }
    }
    let after = rss_bytes();
    // Still serving.
    let fresh = signed_frames(secret, 1).await;
    chat.say("smokey", &fresh[0]);
    let batches = FLOOD / BATCH;
    let stats = wait_for(&node, "the fresh order", |s| s.dispatched == batches + 1).await;
    node.shutdown().await.unwrap();
    assert_eq!(
        got.items(),
        vec![0; batches as usize + 1],
        "the fresh ones (n = 0), nothing else"
    );
    let each = FLOOD / 8;
    assert_eq!(stats.untrusted, each);
    // Unsigned frames, and the chunks (without a tag: a node with a
    // secret refuses them before it keeps anything of them).
    assert_eq!(stats.unsigned, 2 * each);
    assert_eq!(stats.bad_signature, each);
    assert_eq!(stats.stale, each);
    assert_eq!(stats.replayed, each);
    assert_eq!(stats.malformed, each);
    assert_eq!(stats.too_large, each);
    assert_eq!(stats.chunks, each);
    assert_eq!(stats.partials_dropped, 0);
    let growth = after.saturating_sub(before);
    eprintln!(
        "hostile flood: resident memory grew by {} KiB over 95 000 messages",
        growth >> 10
    );
    assert!(
        growth < 8 << 20,
        "resident memory grew by {} KiB",
        growth >> 10
    );
}
