//! The Rust side of `benches/compare.sh`: the same work as
//! `benches/python_baseline.py`, timed the same way (median of 5 runs, ns
//! per message).
//!
//! ```text
//! cargo run --release --example compare -- roundtrip 200000
//! cargo run --release --example compare -- fanout 200000
//! ```
//!
//! `roundtrip`: encode a `ping` envelope, then receive and dispatch it on
//! another node, through the library's real send and receive paths, driven
//! on one thread (`roundtrip-msgpack`, `roundtrip-json`: one codec).
//! `naive`: the same map by hand, serde_json and base64, without the
//! library. `minimal`: the least work that carries a ping in the frame
//! with the library's crates (rmp-serde, SIMD base64), without metadata,
//! queues or checks. `fanout`: one node sends (from a task on the runtime),
//! three nodes in one `LocalChat` (the sender included) run a handler for
//! every message: the whole stack, tasks and all, on the multi-threaded
//! runtime. `split`: the MessagePack roundtrip's send and receive paths
//! timed apart, each in a loop of its own. `coalesce N`: N pings offered
//! at once to a throttled chat.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socketscience::harness::{self, Harness};
use socketscience::transport::ChatMessage;
use socketscience::{message, Codec, LocalChat, Node};

#[message("ping")]
#[derive(Debug, Clone, PartialEq)]
pub struct Ping {
    pub location: String,
    pub timestamp: f64,
}

/// Median, min and max of the runs, ns per message.
struct Spread(f64, f64, f64);

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.0} {:.0} {:.0}", self.0, self.1, self.2)
    }
}

fn median(mut runs: Vec<f64>) -> Spread {
    runs.sort_by(f64::total_cmp);
    Spread(runs[runs.len() / 2], runs[0], runs[runs.len() - 1])
}

/// Times 5 runs of `n` pings, each given to `one` (which encodes, receives
/// and dispatches it): ns per ping.
fn timed(n: u64, mut one: impl FnMut(Ping)) -> Spread {
    let runs = (0..5)
        .map(|_| {
            let start = Instant::now();
            for i in 0..n {
                one(ping(i));
            }
            start.elapsed().as_nanos() as f64 / n as f64
        })
        .collect();
    median(runs)
}

/// A sending and a receiving harness on one `LocalChat`, the receiver with
/// a `ping` handler; and how many pings it has handled.
fn pair(codec: Codec) -> (Harness, Harness, Arc<AtomicU64>) {
    let chat = LocalChat::new();
    let build = |name: &str| {
        Harness::new(
            Node::builder(name)
                .transport(chat.join("smokey"))
                .codec(codec)
                .default_node(false),
        )
        .expect("harness")
    };
    let sender = build("sender");
    let receiver = build("receiver");
    let served = Arc::new(AtomicU64::new(0));
    let counter = served.clone();
    receiver.node().register(move |p: Ping| {
        if !p.location.is_empty() {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    (sender, receiver, served)
}

fn ping(i: u64) -> Ping {
    Ping {
        location: "Henders/EC2".into(),
        timestamp: 1_700_000_000.0 + i as f64,
    }
}

fn roundtrip(codec: Codec, n: u64) -> Spread {
    let (mut sender, mut receiver, served) = pair(codec);
    let account: Arc<str> = "smokey".into();
    let spread = timed(n, |ping| {
        let text = sender.post(ping).expect("post");
        receiver.receive(ChatMessage {
            account: account.clone(),
            text: text.into(),
        });
    });
    assert_eq!(served.load(Ordering::Relaxed), 5 * n);
    spread
}

/// The MessagePack roundtrip's two halves timed apart, each in a loop of
/// its own: `n` posts (their texts kept), then their `n` receptions. Tells
/// whether a change costs on the send or on the receive path, and whether
/// a cost comes from the two paths sharing one core's caches.
fn split(n: u64) -> (Spread, Spread) {
    let (mut sender, mut receiver, served) = pair(Codec::MessagePack);
    let account: Arc<str> = "smokey".into();
    let (mut posting, mut receiving) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let mut texts: Vec<Arc<str>> = Vec::with_capacity(n as usize);
        let start = Instant::now();
        for i in 0..n {
            texts.push(sender.post(ping(i)).expect("post").into());
        }
        posting.push(start.elapsed().as_nanos() as f64 / n as f64);
        let start = Instant::now();
        for text in texts {
            receiver.receive(ChatMessage {
                account: account.clone(),
                text,
            });
        }
        receiving.push(start.elapsed().as_nanos() as f64 / n as f64);
    }
    assert_eq!(served.load(Ordering::Relaxed), 5 * n);
    (median(posting), median(receiving))
}

/// The naive floor: the same map by hand, serde_json + base64 + frame and
/// back, without the library.
fn naive(n: u64) -> Spread {
    use base64::engine::general_purpose::STANDARD as BASE64;
    use base64::Engine as _;
    use std::collections::HashMap;

    fn encode(p: &Ping) -> String {
        let mut map = HashMap::new();
        map.insert("ping", p);
        let bytes = serde_json::to_vec(&map).expect("json");
        format!(".\n\u{2}{:04}{}\u{3}", 1234, BASE64.encode(bytes))
    }
    fn receive(text: &str, handlers: &HashMap<String, Box<dyn Fn(Ping)>>) {
        let text: String = text
            .chars()
            .filter(|c| !matches!(c, '\u{200B}' | '\u{200C}'))
            .collect();
        let Some(body) = text
            .trim()
            .strip_prefix(".\n\u{2}")
            .and_then(|t| t.strip_suffix('\u{3}'))
        else {
            return;
        };
        let Ok(bytes) = BASE64.decode(&body[4..]) else {
            return;
        };
        let Ok(map) = serde_json::from_slice::<HashMap<String, serde_json::Value>>(&bytes) else {
            return;
        };
        for (kind, value) in map {
            if let (Some(handler), Ok(ping)) = (handlers.get(&kind), serde_json::from_value(value))
            {
                handler(ping);
            }
        }
    }
    let served = Arc::new(AtomicU64::new(0));
    let counter = served.clone();
    let mut handlers: HashMap<String, Box<dyn Fn(Ping)>> = HashMap::new();
    handlers.insert(
        "ping".into(),
        Box::new(move |p: Ping| {
            if !p.location.is_empty() {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }),
    );
    let spread = timed(n, |ping| receive(&encode(&ping), &handlers));
    assert_eq!(served.load(Ordering::Relaxed), 5 * n);
    spread
}

/// The minimal floor: the least work that carries a `Ping` in
/// SmokeDetector's frame with the library's own crates: rmp-serde straight
/// into a struct, SIMD base64, no metadata, no queues, no checks.
fn minimal(n: u64) -> Spread {
    #[derive(serde::Serialize)]
    struct Out<'a> {
        ping: &'a Ping,
    }
    #[derive(serde::Deserialize)]
    struct In {
        ping: Option<Ping>,
    }
    let b64 = base64_simd::STANDARD;
    let mut served = 0u64;
    let spread = timed(n, |ping| {
        let bytes = rmp_serde::to_vec_named(&Out { ping: &ping }).expect("msgpack");
        let mut text = String::from(".\n\u{2}1234");
        b64.encode_append(&bytes, &mut text);
        text.push('\u{3}');
        let body = text
            .strip_prefix(".\n\u{2}")
            .and_then(|t| t.strip_suffix('\u{3}'))
            .expect("frame");
        let bytes = b64.decode_to_vec(&body[4..]).expect("base64");
        let received: In = rmp_serde::from_slice(&bytes).expect("msgpack");
        if received.ping.is_some_and(|p| !p.location.is_empty()) {
            served += 1;
        }
    });
    assert_eq!(served, 5 * n);
    spread
}

/// Three nodes in `chat`, each counting the pings its handler runs for.
async fn fleet(chat: &LocalChat) -> (Vec<Node>, Arc<AtomicU64>) {
    let served = Arc::new(AtomicU64::new(0));
    let nodes = harness::fleet(chat, &["Henders/EC2", "teward/vps", "Undo/laptop"])
        .await
        .expect("fleet");
    for node in &nodes {
        let counter = served.clone();
        node.register(move |p: Ping| {
            if !p.location.is_empty() {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    (nodes, served)
}

fn fanout(n: u64) -> Spread {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (nodes, served) = fleet(&LocalChat::new()).await;
        let mut runs = Vec::new();
        for run in 0..5u64 {
            let start = Instant::now();
            // The sender is a task on the runtime, as a bot's code is.
            let sender = nodes[0].clone();
            tokio::spawn(async move {
                for i in 0..n {
                    let ping = Ping {
                        location: "Henders/EC2".into(),
                        timestamp: i as f64,
                    };
                    sender.send(ping).await.expect("send");
                }
            })
            .await
            .expect("sender task");
            let target = 3 * n * (run + 1);
            while served.load(Ordering::Relaxed) < target {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            runs.push(start.elapsed().as_nanos() as f64 / n as f64);
        }
        let posts = nodes[0].stats().posts;
        for node in &nodes {
            node.shutdown().await.expect("shutdown");
        }
        let spread = median(runs);
        eprintln!(
            "fanout: {} messages in {posts} posts; {:.0} handler runs/s (median run)",
            5 * n,
            3e9 / spread.0
        );
        spread
    })
}

/// A chat that takes one post a second, 2 000 characters each, offered
/// `n` pings at once: how many posts, and when the last is dispatched on
/// every node (wall clock).
fn coalesce(n: u64) -> (u64, Duration) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let chat = LocalChat::with_max_message_len(2_000).throttle(Duration::from_secs(1));
        let (nodes, served) = fleet(&chat).await;
        let start = Instant::now();
        for i in 0..n {
            let ping = Ping {
                location: "Henders/EC2".into(),
                timestamp: 1_700_000_000.0 + i as f64,
            };
            nodes[0].try_send(ping).expect("queued");
        }
        while served.load(Ordering::Relaxed) < 3 * n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let delay = start.elapsed();
        let posts = nodes[0].stats().posts;
        for node in &nodes {
            node.shutdown().await.expect("shutdown");
        }
        (posts, delay)
    })
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "roundtrip".into());
    let n: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    match mode.as_str() {
        "roundtrip" => {
            println!("roundtrip-msgpack {}", roundtrip(Codec::MessagePack, n));
            println!("roundtrip-json {}", roundtrip(Codec::Json, n));
            println!("naive {}", naive(n));
        }
        "roundtrip-json" => println!("roundtrip-json {}", roundtrip(Codec::Json, n)),
        "roundtrip-msgpack" => {
            println!("roundtrip-msgpack {}", roundtrip(Codec::MessagePack, n))
        }
        "naive" => println!("naive {}", naive(n)),
        "minimal" => println!("minimal {}", minimal(n)),
        "fanout" => println!("fanout {}", fanout(n)),
        "split" => {
            let (posting, receiving) = split(n);
            println!("post {posting}\nreceive {receiving}");
        }
        "coalesce" => {
            let (posts, delay) = coalesce(n);
            println!(
                "coalesce {n} pings: {posts} posts, last dispatched everywhere after {delay:.2?}"
            );
        }
        other => {
            eprintln!(
                "unknown mode {other}: use roundtrip, roundtrip-msgpack, roundtrip-json, \
                 naive, minimal, fanout, split or coalesce"
            );
            std::process::exit(2);
        }
    }
}
