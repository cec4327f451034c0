//! Criterion benchmarks: encode, decode and dispatch of typical envelopes
//! in each codec, a full receive on one node, fan-out on `LocalChat`, and
//! the naive floor (hand-written serde_json + base64 + frame, no library).
//!
//! ```text
//! cargo bench -p socketscience --bench throughput
//! ```

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use socketscience::harness::{self, Harness};
use socketscience::transport::ChatMessage;
use socketscience::{message, Codec, LocalChat, Node};

#[message("ping")]
#[derive(Debug, Clone, PartialEq)]
pub struct Ping {
    pub location: String,
    pub timestamp: f64,
}

/// A 2 KiB envelope: a report with a list of findings.
#[message("report")]
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub site: String,
    pub post_id: u64,
    pub reasons: Vec<String>,
    pub scores: Vec<f64>,
    pub body: String,
}

fn ping(i: u64) -> Ping {
    Ping {
        location: "Henders/EC2".into(),
        timestamp: 1_700_000_000.25 + i as f64,
    }
}

fn report() -> Report {
    Report {
        site: "stackoverflow.com".into(),
        post_id: 77_123_456,
        reasons: (0..12)
            .map(|i| format!("pattern-matching website in body {i}"))
            .collect(),
        scores: (0..24).map(|i| i as f64 * 0.37).collect(),
        body: "lorem ipsum dolor sit amet ".repeat(45),
    }
}

fn harness(chat: &LocalChat, name: &str, codec: Codec) -> Harness {
    Harness::new(
        Node::builder(name)
            .transport(chat.join("smokey"))
            .codec(codec)
            .default_node(false),
    )
    .expect("harness")
}

/// A receiver that counts its `Ping`s and `Report`s.
fn receiver(chat: &LocalChat, codec: Codec) -> (Harness, Arc<AtomicU64>) {
    let h = harness(chat, "receiver", codec);
    let served = Arc::new(AtomicU64::new(0));
    let (a, b) = (served.clone(), served.clone());
    h.node().register(move |p: Ping| {
        black_box(&p);
        a.fetch_add(1, Ordering::Relaxed);
    });
    h.node().register(move |r: Report| {
        black_box(&r);
        b.fetch_add(1, Ordering::Relaxed);
    });
    (h, served)
}

fn codecs(c: &mut Criterion) {
    let account: Arc<str> = "smokey".into();
    for codec in [Codec::Json, Codec::MessagePack] {
        let mut group = c.benchmark_group(format!("{codec}"));
        group.throughput(Throughput::Elements(1));
        let chat = LocalChat::new();
        let mut sender = harness(&chat, "sender", codec);
        let (mut recv, served) = receiver(&chat, codec);
        let mut i = 0;
        group.bench_function("encode ping", |b| {
            b.iter(|| {
                i += 1;
                sender.post(ping(i)).unwrap()
            })
        });
        group.bench_function("encode 2KiB", |b| b.iter(|| sender.post(report()).unwrap()));
        group.bench_function("decode+dispatch ping", |b| {
            b.iter_batched(
                || {
                    i += 1;
                    ChatMessage {
                        account: account.clone(),
                        text: sender.post(ping(i)).unwrap().into(),
                    }
                },
                |message| recv.receive(message),
                BatchSize::SmallInput,
            )
        });
        group.bench_function("decode+dispatch 2KiB", |b| {
            b.iter_batched(
                || ChatMessage {
                    account: account.clone(),
                    text: sender.post(report()).unwrap().into(),
                },
                |message| recv.receive(message),
                BatchSize::SmallInput,
            )
        });
        group.bench_function("encode+decode+dispatch ping", |b| {
            b.iter(|| {
                i += 1;
                let text = sender.post(ping(i)).unwrap();
                recv.receive(ChatMessage {
                    account: account.clone(),
                    text: text.into(),
                })
            })
        });
        group.finish();
        assert!(served.load(Ordering::Relaxed) > 0);
    }
}

/// The naive floor: the same map, by hand, without the library.
fn naive(c: &mut Criterion) {
    fn encode(p: &Ping) -> String {
        let mut map = HashMap::new();
        map.insert("ping", p);
        let bytes = serde_json::to_vec(&map).unwrap();
        format!(".\n\u{2}{:04}{}\u{3}", 1234, BASE64.encode(bytes))
    }
    fn receive(text: &str, handlers: &HashMap<String, fn(Ping)>) {
        let text: String = text
            .chars()
            .filter(|c| !matches!(c, '\u{200B}' | '\u{200C}'))
            .collect();
        let body = text
            .trim()
            .strip_prefix(".\n\u{2}")
            .unwrap()
            .strip_suffix('\u{3}')
            .unwrap();
        let bytes = BASE64.decode(&body[4..]).unwrap();
        let map: HashMap<String, serde_json::Value> = serde_json::from_slice(&bytes).unwrap();
        for (kind, value) in map {
            if let Some(handler) = handlers.get(&kind) {
                handler(serde_json::from_value(value).unwrap());
            }
        }
    }
    fn on_ping(p: Ping) {
        black_box(p);
    }
    let mut handlers: HashMap<String, fn(Ping)> = HashMap::new();
    handlers.insert("ping".into(), on_ping);
    let mut group = c.benchmark_group("naive floor");
    group.throughput(Throughput::Elements(1));
    let mut i = 0;
    group.bench_function("encode+decode+dispatch ping", |b| {
        b.iter(|| {
            i += 1;
            receive(&encode(&ping(i)), &handlers)
        })
    });
    group.finish();
}

/// One sender, three nodes in one `LocalChat` (the sender included), each
/// running a handler per message: throughput in handler runs.
fn fanout(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (nodes, served) = runtime.block_on(async {
        let chat = LocalChat::new();
        let served = Arc::new(AtomicU64::new(0));
        let nodes = harness::fleet(&chat, &["Henders/EC2", "teward/vps", "Undo/laptop"])
            .await
            .unwrap();
        for node in &nodes {
            let counter = served.clone();
            node.register(move |p: Ping| {
                black_box(&p);
                counter.fetch_add(1, Ordering::Relaxed);
            });
        }
        (nodes, served)
    });
    let mut group = c.benchmark_group("fanout LocalChat 1 sender 3 nodes");
    // Per message sent: three handler runs.
    group.throughput(Throughput::Elements(3));
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("ping", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let target = served.load(Ordering::Relaxed) + 3 * iters;
                let start = Instant::now();
                for i in 0..iters {
                    nodes[0].send(ping(i)).await.unwrap();
                }
                while served.load(Ordering::Relaxed) < target {
                    tokio::task::yield_now().await;
                }
                start.elapsed()
            })
        })
    });
    group.finish();
    runtime.block_on(async {
        for node in &nodes {
            node.shutdown().await.unwrap();
        }
    });
}

criterion_group!(benches, codecs, naive, fanout);
criterion_main!(benches);
