//! Deflated envelopes held ahead of gaps: a 300-byte post inflates to
//! 250 KB, and the envelopes of a session that come before their turn are
//! held until the gap before them is repaired. 1 560 such posts from 30
//! made-up instances (each under the bound of one session) once took a
//! node from 8 MiB to over a gigabyte; the bound for all sessions (32 MiB,
//! counted inflated) holds. (Alone in its binary, so that resident memory
//! is this test's.)

mod common;

use common::{json_frame, wait_for};
use socketscience::transport::LineMode;
use socketscience::{wire, LocalChat};

/// The peak resident memory of this process so far, in bytes (Linux).
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/self/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a number of kB");
    kib << 10
}

/// An envelope of `instance`'s session `session`, numbered `seq`, with an
/// unknown kind of 250 KB (MessagePack: skipped by its length, so the
/// test measures holding, not reading).
#[derive(serde::Serialize)]
struct Padded<'a> {
    pad: &'a str,
    _from: &'a str,
    _sid: u64,
    _seq: u64,
}

/// A frame of `body` deflated (0xc1 0x01, then raw DEFLATE).
fn deflated_frame(body: &Padded<'_>) -> String {
    let mut bytes = vec![0xc1, 0x01];
    let body = rmp_serde::to_vec_named(body).expect("MessagePack");
    bytes.extend(miniz_oxide::deflate::compress_to_vec(&body, 6));
    let mut b64 = String::new();
    wire::encode_base64(&bytes, &mut b64);
    let mut text = String::new();
    wire::write_frame(&mut text, LineMode::Multi, 1234, &b64);
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deflated_envelopes_ahead_of_gaps_are_bounded_in_total() {
    const INSTANCES: u64 = 30;
    const HELD: u64 = 52;
    let chat = LocalChat::new();
    let node = common::join(&chat, "held/0").await;
    let pad = "x".repeat(250_000);
    let before = peak_rss_bytes();
    let mut posted = 0;
    let mut largest = 0;
    for fake in 1..=INSTANCES {
        let from = format!("x{fake}");
        let body = |seq: u64| Padded {
            pad: &pad,
            _from: &from,
            _sid: fake,
            _seq: seq,
        };
        // 0 runs; 1 never comes; 2.. are held.
        chat.say(
            "smokey",
            &json_frame(&format!(r#"{{"_from":"x{fake}","_sid":{fake},"_seq":0}}"#)),
        );
        posted += 1;
        for seq in 2..2 + HELD {
            let text = deflated_frame(&body(seq));
            largest = largest.max(text.len());
            chat.say("smokey", &text);
            posted += 1;
        }
        // (`received` counts the node's own posts too, echoed.)
        wait_for(&node, "the instance's posts", |s| {
            s.received >= posted + s.posts
        })
        .await;
    }
    let after = peak_rss_bytes();
    let stats = node.stats();
    node.shutdown().await.expect("shutdown");
    let growth = after.saturating_sub(before);
    println!(
        "REPORT held flood: {} posts of at most {largest} bytes (250 KB inflated each) from \
         {INSTANCES} instances: peak resident memory {} MiB before, {} MiB after (+{} MiB); \
         lost {}",
        posted,
        before >> 20,
        after >> 20,
        growth >> 20,
        stats.lost
    );
    // 390 MB would be held without the bound for all sessions; 32 MiB
    // with it, plus the inflating and the allocator's slack.
    assert!(
        growth < 96 << 20,
        "peak resident memory grew by {} MiB",
        growth >> 20
    );
    assert!(stats.lost > 0, "{stats:#?}");
}
