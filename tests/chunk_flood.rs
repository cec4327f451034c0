//! A flood of first chunks that never complete keeps memory flat, and the
//! node keeps serving. (Alone in its binary, so that resident memory is
//! this test's.)

mod common;

use common::{json_frame, rss_bytes, wait_for, Log};
use socketscience::transport::ReassemblyLimits;
use socketscience::{message, LocalChat};

#[message("flood_ping")]
pub struct FloodPing {
    pub n: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_never_finished_chunks_keeps_memory_flat() {
    let chat = LocalChat::with_max_message_len(400);
    let node = common::join(&chat, "flood/0").await;
    let got = Log::default();
    let log = got.clone();
    node.register(move |p: FloodPing| log.push(p.n));
    let defaults = ReassemblyLimits::default();
    let piece = "QUJD".repeat(90); // 360 base64 characters
    const FLOOD: u64 = 100_000;
    const BATCH: u64 = 1_000;
    let mut before = 0;
    for batch in 0..FLOOD / BATCH {
        for i in 0..BATCH {
            let id = batch * BATCH + i;
            // Claims to be the first of 1 000 pieces; no other piece comes.
            chat.say("smokey", &format!(".\n\u{1}{id:08x} 1/1000 {piece}"));
        }
        // Keep the room's own queue short: this measures the node.
        wait_for(&node, "the batch", |s| s.chunks == (batch + 1) * BATCH).await;
        if batch == 4 {
            // After the reassembly buffers have filled once.
            before = rss_bytes();
        }
    }
    let after = rss_bytes();
    chat.say("smokey", &json_frame(r#"{"flood_ping":{"n":7}}"#));
    let stats = wait_for(&node, "the good envelope", |s| s.dispatched == 1).await;
    node.shutdown().await.unwrap();
    assert_eq!(got.items(), [7]);
    let held = defaults.max_partials as u64;
    assert_eq!(stats.partials_dropped, FLOOD - held);
    let growth = after.saturating_sub(before);
    // 95 000 chunks (34 MB of text) arrived after `before`; the node holds
    // at most 64 partials. Allow 8 MiB for allocator noise.
    assert!(
        growth < 8 << 20,
        "resident memory grew by {} KiB during the flood",
        growth >> 10
    );
    eprintln!(
        "flood: resident memory grew by {} KiB over 95 000 chunks",
        growth >> 10
    );
}
