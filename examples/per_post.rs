//! Messages per post and send-to-handler latency (issue 18), wall clock:
//!
//! ```text
//! cargo run --release --example per_post -- local          # LocalChat, 2 000 chars, 1 post/s
//! cargo run --release --example per_post -- irc HOST:PORT  # a running IRC daemon (ngIRCd)
//! ```
//!
//! `local`: three nodes on `LocalChat::with_max_message_len(2_000)
//! .throttle(1 s)`; one node offers N messages at once; printed: posts,
//! messages per post, and when the last was dispatched on every node. For
//! SmokeDetector's `ping` (1 000) and for values of about 10 B, 100 B and
//! 1 KB of random lowercase text (a worst case for compression: no
//! repeats but the alphabet), in both codecs. Then a lone ping in a quiet
//! room (one a throttle interval apart): p50 and p99 from `send` to the
//! other node's handler.
//!
//! `irc`: two nodes on the daemon (`IrcChat`, its default send rate), the
//! same lone-ping latency, and the messages per line of 300 pings.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use socketscience::transport::Transport;
use socketscience::{message, Codec, IrcChat, LocalChat, Node};

#[message("ping")]
#[derive(Debug, Clone)]
pub struct Ping {
    pub location: String,
    pub timestamp: f64,
}

#[message("blob")]
#[derive(Debug, Clone)]
pub struct Blob(pub String);

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// Starts a node on `transport` counting its dispatches; pings from
/// another node also record their send-to-handler delay (the timestamp is
/// the send time).
async fn node(
    name: &str,
    transport: impl Transport,
    codec: Codec,
    served: &Arc<AtomicU64>,
    delays: &Arc<Mutex<Vec<f64>>>,
) -> Node {
    let node = Node::builder(name)
        .transport(transport)
        .trust("smokey*")
        .codec(codec)
        .default_node(false)
        .start()
        .await
        .expect("node starts");
    let (s, d) = (served.clone(), delays.clone());
    node.register(move |p: Ping, cx: socketscience::Context| {
        if !cx.sender().is_self() {
            d.lock().unwrap().push(now() - p.timestamp);
        }
        s.fetch_add(1, Ordering::Relaxed);
    });
    let s = served.clone();
    node.register(move |_: Blob| {
        s.fetch_add(1, Ordering::Relaxed);
    });
    node
}

async fn wait(served: &AtomicU64, target: u64, limit: Duration) -> bool {
    let start = Instant::now();
    while served.load(Ordering::Relaxed) < target {
        if start.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    true
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn random_text(rng: &mut u64, len: usize) -> String {
    (0..len)
        .map(|_| {
            *rng ^= *rng << 13;
            *rng ^= *rng >> 7;
            *rng ^= *rng << 17;
            (b'a' + (*rng % 26) as u8) as char
        })
        .collect()
}

/// N messages offered at once: (posts, time until dispatched everywhere).
async fn burst(codec: Codec, what: &str, n: u64, size: usize) -> (u64, Duration) {
    let chat = LocalChat::with_max_message_len(2_000).throttle(Duration::from_secs(1));
    let served = Arc::new(AtomicU64::new(0));
    let delays = Arc::new(Mutex::new(Vec::new()));
    let mut nodes = Vec::new();
    for name in ["Henders/EC2", "teward/vps", "Undo/laptop"] {
        nodes.push(node(name, chat.join("smokey"), codec, &served, &delays).await);
    }
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let start = Instant::now();
    for i in 0..n {
        if size == 0 {
            let ping = Ping {
                location: "Henders/EC2".into(),
                timestamp: now() + i as f64 * 1e-6,
            };
            nodes[0].send(ping).await.expect("send");
        } else {
            nodes[0]
                .send(Blob(random_text(&mut rng, size)))
                .await
                .expect("send");
        }
    }
    let done = wait(&served, 3 * n, Duration::from_secs(600)).await;
    let elapsed = start.elapsed();
    let posts = nodes[0].stats().posts;
    for node in &nodes {
        node.shutdown().await.expect("shutdown");
    }
    assert!(done, "{what}: not all dispatched");
    (posts, elapsed)
}

/// Lone pings `gap` apart: p50 and p99 of send to the other node's handler.
async fn lone(
    sender: &Node,
    served: &AtomicU64,
    delays: &Mutex<Vec<f64>>,
    n: u64,
    gap: Duration,
) -> (f64, f64) {
    delays.lock().unwrap().clear();
    let base = served.load(Ordering::Relaxed);
    for i in 0..n {
        tokio::time::sleep(gap).await;
        let ping = Ping {
            location: "Henders/EC2".into(),
            timestamp: now(),
        };
        sender.send(ping).await.expect("send");
        assert!(
            wait(served, base + 2 * (i + 1), Duration::from_secs(30)).await,
            "a lone ping was not dispatched"
        );
    }
    let mut d = delays.lock().unwrap().clone();
    d.sort_by(f64::total_cmp);
    (percentile(&d, 0.5) * 1e3, percentile(&d, 0.99) * 1e3)
}

async fn local() {
    println!("LocalChat, 2 000 characters a post, 1 post/s; N messages offered at once");
    for codec in [Codec::Json, Codec::MessagePack] {
        for (what, n, size) in [
            ("ping", 1_000, 0),
            ("10 B text", 1_000, 10),
            ("100 B text", 500, 100),
            ("1 KB text", 60, 1_000),
        ] {
            let (posts, elapsed) = burst(codec, what, n, size).await;
            println!(
                "  {codec:7} {what:10} x{n:5}: {posts:4} posts, {:6.1} messages/post, all dispatched everywhere after {elapsed:.2?}",
                n as f64 / posts as f64
            );
        }
    }
    for throttle in [Duration::ZERO, Duration::from_secs(1)] {
        let chat = LocalChat::with_max_message_len(2_000).throttle(throttle);
        let served = Arc::new(AtomicU64::new(0));
        let delays = Arc::new(Mutex::new(Vec::new()));
        let a = node(
            "Henders/EC2",
            chat.join("smokey"),
            Codec::Json,
            &served,
            &delays,
        )
        .await;
        let b = node(
            "teward/vps",
            chat.join("smokey"),
            Codec::Json,
            &served,
            &delays,
        )
        .await;
        let (n, gap) = if throttle.is_zero() {
            (1_000, Duration::from_millis(2))
        } else {
            (40, Duration::from_millis(1_050))
        };
        let (p50, p99) = lone(&a, &served, &delays, n, gap).await;
        println!(
            "  lone pings, throttle {throttle:?}, {n} samples {gap:?} apart: send to the other node's handler p50 {p50:.3} ms, p99 {p99:.3} ms"
        );
        a.shutdown().await.expect("shutdown");
        b.shutdown().await.expect("shutdown");
    }
}

async fn irc(addr: &str) {
    let served = Arc::new(AtomicU64::new(0));
    let delays = Arc::new(Mutex::new(Vec::new()));
    let mut nodes = Vec::new();
    for (name, nick) in [("Henders/EC2", "smokey-a"), ("teward/vps", "smokey-b")] {
        let chat = IrcChat::new(addr, nick, "#perpost");
        let status = chat.status();
        nodes.push((
            node(name, chat, Codec::Json, &served, &delays).await,
            status,
        ));
    }
    for ((_, status), other) in nodes.iter().zip(["smokey-b", "smokey-a"]) {
        while !status
            .wait_for_members(&[other.to_string()], Duration::from_secs(5))
            .await
        {
            eprintln!("waiting for {other}");
        }
    }
    // Let the burst allowance refill before measuring lone pings.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (p50, p99) = lone(
        &nodes[0].0,
        &served,
        &delays,
        40,
        Duration::from_millis(1_100),
    )
    .await;
    println!("ngIRCd, lone pings 1.1 s apart, 40 samples: send to the other node's handler p50 {p50:.3} ms, p99 {p99:.3} ms");
    tokio::time::sleep(Duration::from_secs(6)).await;
    let base = served.load(Ordering::Relaxed);
    let lines = nodes[0].1.lines_posted();
    let start = Instant::now();
    for i in 0..300 {
        let ping = Ping {
            location: "Henders/EC2".into(),
            timestamp: now() + i as f64 * 1e-6,
        };
        nodes[0].0.send(ping).await.expect("send");
    }
    assert!(wait(&served, base + 600, Duration::from_secs(300)).await);
    let lines = nodes[0].1.lines_posted() - lines;
    println!(
        "ngIRCd, 300 pings at once from one node: {lines} lines, {:.1} pings/line, all dispatched on both after {:.2?}",
        300.0 / lines as f64,
        start.elapsed()
    );
    for (node, _) in nodes {
        node.shutdown().await.expect("shutdown");
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("local") | None => local().await,
        Some("irc") => irc(&args.next().expect("irc HOST:PORT")).await,
        Some(other) => {
            eprintln!("unknown mode {other}: use local or irc HOST:PORT");
            std::process::exit(2);
        }
    }
}
