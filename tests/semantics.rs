//! The contract's semantics, each proven through the public API on
//! `LocalChat`: every node runs every handler (the sender too), trust,
//! unknown kinds and bad values, handler failures, per-sender order, and a
//! shutdown that loses nothing.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::messages::{Heartbeat, MetasmokeState, Ping};
use common::{json_frame, wait_for, Log, CODECS};
use socketscience::{handler, message, Codec, Context, Envelope, LocalChat, Node};

#[message("sem_counted")]
#[derive(Debug, Clone, PartialEq)]
pub struct Counted {
    pub n: u64,
}

/// For the tests that do not count the `#[handler]`s.
#[message("sem_numbered")]
#[derive(Debug, Clone, PartialEq)]
pub struct Numbered {
    pub n: u64,
}

static SYNC_RUNS: AtomicUsize = AtomicUsize::new(0);
static ASYNC_RUNS: AtomicUsize = AtomicUsize::new(0);

// `#[handler]`s run in every node of this test binary; only the test that
// sends `sem_counted` counts them.
#[handler]
fn count_sync(_m: Counted) {
    SYNC_RUNS.fetch_add(1, Ordering::SeqCst);
}

#[handler]
async fn count_async(m: Counted, cx: Context) -> Result<(), String> {
    tokio::task::yield_now().await;
    assert!(!cx.node().name().is_empty());
    if m.n == u64::MAX {
        return Err("never".into());
    }
    ASYNC_RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

async fn fleet(chat: &LocalChat, prefix: &str, n: usize) -> Vec<Node> {
    let mut nodes = Vec::new();
    for i in 0..n {
        let node = common::join(chat, format!("{prefix}/{i}")).await;
        nodes.push(node);
    }
    nodes
}

async fn shutdown_all(nodes: &[Node]) {
    for node in nodes {
        node.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_the_sender_included_runs_every_handler_once() {
    for codec in CODECS {
        SYNC_RUNS.store(0, Ordering::SeqCst);
        ASYNC_RUNS.store(0, Ordering::SeqCst);
        let chat = LocalChat::new();
        let nodes = fleet(&chat, &format!("every-{codec}"), 3).await;
        let sender = Node::builder(format!("every-{codec}/sender"))
            .transport(chat.join("smokey"))
            .codec(codec)
            .default_node(false)
            .start()
            .await
            .unwrap();
        let closure_runs = Log::default();
        // The sender first: shutting it down posts what it queued.
        let mut all = vec![sender.clone()];
        all.extend(nodes.iter().cloned());
        for node in &all {
            let log = closure_runs.clone();
            let name = node.name().to_owned();
            node.register(move |m: Counted, cx: Context| {
                assert_eq!(cx.node().name(), name);
                log.push((name.clone(), m.n, cx.sender().instance().map(str::to_owned)));
            });
        }
        for n in 0..10 {
            sender.send(Counted { n }).await.unwrap();
        }
        shutdown_all(&all).await;
        // 4 nodes x 10 messages, for each of the three handlers.
        assert_eq!(SYNC_RUNS.load(Ordering::SeqCst), 40, "{codec}");
        assert_eq!(ASYNC_RUNS.load(Ordering::SeqCst), 40, "{codec}");
        let runs = closure_runs.items();
        assert_eq!(runs.len(), 40);
        for node in &all {
            let mine: Vec<u64> = runs
                .iter()
                .filter(|(name, _, _)| name == node.name())
                .map(|(_, n, _)| *n)
                .collect();
            assert_eq!(mine, (0..10).collect::<Vec<_>>(), "{}", node.name());
            assert_eq!(node.stats().dispatched, 30, "{}", node.name());
            assert_eq!(node.stats().envelopes, 10);
        }
        assert!(runs
            .iter()
            .all(|(_, _, from)| from.as_deref() == Some(sender.name())));
        assert_eq!(sender.stats().sent, 10);
        assert_eq!(
            sender.stats().own_echoes,
            sender.stats().posts,
            "LocalChat echoes every post; the echoes are dropped"
        );
    }
}

#[tokio::test]
async fn an_envelope_carries_several_kinds_in_one_chat_message() {
    let chat = LocalChat::new();
    let mut watch = chat.watch();
    let nodes = fleet(&chat, "envelope", 2).await;
    let got = Log::default();
    for node in &nodes {
        let (a, b, c) = (got.clone(), got.clone(), got.clone());
        node.register(move |p: Ping| a.push(format!("ping {}", p.location)));
        node.register(move |m: MetasmokeState| b.push(format!("state {m:?}")));
        node.register(move |h: Heartbeat| c.push(format!("heartbeat {}", h.0)));
    }
    let envelope = Envelope::new()
        .with(Ping {
            location: "Henders/EC2".into(),
            timestamp: 1.0,
        })
        .unwrap()
        .with(MetasmokeState::Down)
        .unwrap()
        .with(Heartbeat(12.5))
        .unwrap();
    nodes[0].send(envelope).await.unwrap();
    shutdown_all(&nodes).await;
    let mut got = got.items();
    got.sort();
    assert_eq!(
        got,
        [
            "heartbeat 12.5",
            "heartbeat 12.5",
            "ping Henders/EC2",
            "ping Henders/EC2",
            "state Down",
            "state Down"
        ]
    );
    let posted = watch.recv().await.unwrap();
    assert!(posted.text.starts_with(".\n\u{2}"));
    assert!(
        watch.try_recv().is_err(),
        "one chat message for the envelope"
    );
    assert_eq!(nodes[0].stats().posts, 1);
    let repeated = Envelope::new()
        .with(Heartbeat(1.0))
        .unwrap()
        .with(Heartbeat(2.0));
    assert!(matches!(
        repeated,
        Err(socketscience::Error::KindRepeated { kind: "heartbeat" })
    ));
}

#[tokio::test]
async fn untrusted_accounts_are_ignored_and_counted() {
    let chat = LocalChat::new();
    let own = common::join(&chat, "trust/own").await;
    let patterned = Node::builder("trust/patterned")
        .transport(chat.join("smokey-b"))
        .trust("smokey-*")
        .default_node(false)
        .start()
        .await
        .unwrap();
    let stranger = Node::builder("trust/stranger")
        .transport(chat.join("mallory"))
        .default_node(false)
        .start()
        .await
        .unwrap();
    let got = Log::default();
    for node in [&own, &patterned, &stranger] {
        let log = got.clone();
        let name = node.name().to_owned();
        node.register(move |p: Ping| log.push((name.clone(), p.location)));
    }
    stranger
        .send(Ping {
            location: "evil".into(),
            timestamp: 0.0,
        })
        .await
        .unwrap();
    chat.say(
        "smokey-a",
        &json_frame(r#"{"ping":{"location":"a","timestamp":1.0}}"#),
    );
    let own_stats = wait_for(&own, "two untrusted", |s| s.untrusted == 2).await;
    let patterned_stats = wait_for(&patterned, "one untrusted", |s| s.untrusted == 1).await;
    shutdown_all(&[own.clone(), patterned.clone(), stranger.clone()]).await;
    let mut got = got.items();
    got.sort();
    assert_eq!(
        got,
        [
            ("trust/patterned".to_owned(), "a".to_owned()),
            ("trust/stranger".to_owned(), "evil".to_owned()),
        ],
        "the stranger runs its own; `smokey-*` trusts smokey-a, not mallory; smokey trusts neither"
    );
    assert_eq!(own_stats.dispatched, 0);
    assert_eq!(patterned_stats.untrusted, 1);
    assert_eq!(own.stats().untrusted, 2);
}

#[tokio::test]
async fn unknown_kinds_and_bad_values_are_counted_and_the_other_kinds_still_run() {
    let chat = LocalChat::new();
    let node = common::join(&chat, "unknown/0").await;
    let got = Log::default();
    let log = got.clone();
    node.register(move |p: Ping| log.push(p.location));
    let log = got.clone();
    node.register(move |h: Heartbeat| log.push(format!("heartbeat {}", h.0)));
    chat.say(
        "smokey",
        &json_frame(
            r#"{"no_such_kind":{"x":1},"heartbeat":"not a number","ping":{"location":"good","timestamp":2.5}}"#,
        ),
    );
    let stats = wait_for(&node, "the ping", |s| s.dispatched == 1).await;
    assert_eq!(stats.unknown_kinds, 1);
    assert_eq!(stats.bad_values, 1);
    assert_eq!(got.items(), ["good"]);
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_failing_or_panicking_handler_is_counted_and_the_node_goes_on() {
    let chat = LocalChat::new();
    let node = common::join(&chat, "failing/0").await;
    let after = Log::default();
    node.register(|h: Heartbeat| -> Result<(), String> {
        if h.0 < 0.0 {
            Err(format!("negative heartbeat {}", h.0))
        } else {
            Ok(())
        }
    });
    node.register(|h: Heartbeat| {
        if h.0 == 13.0 {
            panic!("unlucky heartbeat");
        }
    });
    node.register(|h: Heartbeat, _cx: Context| async move {
        if h.0 == 7.0 {
            panic!("async panic");
        }
    });
    let log = after.clone();
    node.register(move |h: Heartbeat| log.push(h.0));
    for v in [-1.0, 13.0, 7.0, 1.0] {
        node.send(Heartbeat(v)).await.unwrap();
    }
    node.shutdown().await.unwrap();
    let stats = node.stats();
    assert_eq!(stats.handler_errors, 1);
    assert_eq!(stats.handler_panics, 2);
    assert_eq!(stats.handler_failures(), 3);
    assert_eq!(stats.dispatched, 4 * 4 - 3);
    assert_eq!(
        after.items(),
        [-1.0, 13.0, 7.0, 1.0],
        "the last handler ran every time"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelopes_from_one_sender_run_in_the_order_sent() {
    let chat = LocalChat::with_max_message_len(300);
    let nodes = fleet(&chat, "order", 3).await;
    let got = Log::default();
    for node in &nodes {
        let log = got.clone();
        let me = node.name().to_owned();
        node.register(move |c: Numbered, cx: Context| {
            log.push((me.clone(), cx.sender().instance().unwrap().to_owned(), c.n))
        });
    }
    let senders = [nodes[0].clone(), nodes[1].clone()];
    let tasks: Vec<_> = senders
        .iter()
        .cloned()
        .map(|node| {
            tokio::spawn(async move {
                for n in 0..500 {
                    if n % 50 == 0 {
                        // Now and then an envelope that travels in chunks.
                        let big = Ping {
                            location: "x".repeat(1_000),
                            timestamp: n as f64,
                        };
                        node.send(
                            Envelope::new()
                                .with(Numbered { n })
                                .unwrap()
                                .with(big)
                                .unwrap(),
                        )
                        .await
                        .unwrap();
                    } else {
                        node.send(Numbered { n }).await.unwrap();
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    // A node that leaves the room misses what is posted after: let every
    // node see everything before the first leaves.
    for node in &nodes {
        wait_for(node, "1 000 envelopes", |s| s.envelopes == 1_000).await;
    }
    shutdown_all(&nodes).await;
    let got = got.items();
    for receiver in &nodes {
        for sender in &senders {
            let seen: Vec<u64> = got
                .iter()
                .filter(|(r, s, _)| r == receiver.name() && s == sender.name())
                .map(|(_, _, n)| *n)
                .collect();
            assert_eq!(
                seen,
                (0..500).collect::<Vec<_>>(),
                "{} from {}",
                receiver.name(),
                sender.name()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_posts_and_runs_everything_queued() {
    let chat = LocalChat::new();
    let nodes = fleet(&chat, "flush", 3).await;
    let counts: Vec<Log<u64>> = nodes.iter().map(|_| Log::default()).collect();
    for (node, log) in nodes.iter().zip(&counts) {
        let log = log.clone();
        node.register(move |c: Numbered| log.push(c.n));
    }
    for n in 0..5_000 {
        nodes[0].try_send(Numbered { n }).unwrap();
    }
    // Shut the sender down at once: all it queued is still posted.
    shutdown_all(&nodes).await;
    for (node, log) in nodes.iter().zip(&counts) {
        assert_eq!(log.len(), 5_000, "{}", node.name());
    }
    // Waiting envelopes share posts.
    let posts = nodes[0].stats().posts;
    assert!(posts < 5_000, "{posts} posts");
    assert_eq!(nodes[1].stats().envelopes, 5_000);
    assert!(matches!(
        nodes[0].send(Numbered { n: 0 }).await,
        Err(socketscience::Error::NodeStopped { .. })
    ));
    // A second shutdown is a no-op.
    nodes[0].shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_input_from_the_room_never_panics_and_is_counted() {
    let chat = LocalChat::new();
    let node = common::join(&chat, "bad/0").await;
    let got = Log::default();
    let log = got.clone();
    node.register(move |p: Ping| log.push(p.location));
    let garbage_body = {
        let mut b64 = String::new();
        socketscience::wire::encode_base64(&[0xc1, 0xff, 0x00, 0x93], &mut b64);
        format!(".\n\u{2}0000{b64}\u{3}")
    };
    let inputs = [
        "hello bots".to_owned(),                        // human talk: not a frame
        "".to_owned(),                                  // empty: not a frame
        ".\n\u{2}0000!!!not base64!!!\u{3}".to_owned(), // broken base64
        ".\n\u{2}0000QUJD".to_owned(),                  // no \x03
        ".\n\u{2}00".to_owned(),                        // too short
        garbage_body,                                   // a frame of garbage
        json_frame("[1,2,3]"),                          // not a map
        json_frame(r#"{"ping":{"location":5}}"#),       // a kind with the wrong shape
        ".\n\u{1}zzzz 1/2 abc".to_owned(),              // a bad chunk header
        ".\n\u{1}0000000a 3/2 abc".to_owned(),          // a chunk out of range
    ];
    for text in &inputs {
        chat.say("smokey", text);
    }
    chat.say(
        "smokey",
        &json_frame(r#"{"ping":{"location":"still here","timestamp":1}}"#),
    );
    let stats = wait_for(&node, "the good ping", |s| s.dispatched == 1).await;
    assert_eq!(stats.received, inputs.len() as u64 + 1);
    assert_eq!(stats.not_frames, 2);
    // The frame of garbage starts with 0xc1, a compressed body's mark:
    // refused as one (its method, 0xff, is unknown).
    assert_eq!(stats.malformed, 6);
    assert_eq!(stats.compressed_refused, 1);
    assert_eq!(stats.bad_values, 1);
    assert_eq!(got.items(), ["still here"]);
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_python_style_envelope_without_metadata_is_dispatched() {
    let chat = LocalChat::new();
    let node = Node::builder("python/0")
        .transport(chat.join("smokey"))
        .codec(Codec::MessagePack)
        .default_node(false)
        .start()
        .await
        .unwrap();
    let got = Log::default();
    let log = got.clone();
    node.register(move |m: MetasmokeState, cx: Context| {
        log.push((
            m,
            cx.sender().instance().is_none(),
            cx.sender().account().to_owned(),
        ))
    });
    chat.say("smokey", &json_frame(r#"{"metasmoke_state":"down"}"#));
    chat.say("smokey", &json_frame(r#"{"metasmoke_state":"down"}"#));
    wait_for(&node, "two states", |s| s.dispatched == 2).await;
    assert_eq!(
        got.items(),
        vec![(MetasmokeState::Down, true, "smokey".to_owned()); 2],
        "without `_seq` there is nothing to deduplicate on"
    );
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn options_out_of_range_are_refused_at_start_with_the_option_named() {
    for (builder, option) in [
        (Node::builder("zero-depth").max_depth(0), "max_depth"),
        (Node::builder("deep").max_depth(129), "max_depth"),
        (Node::builder("no-kinds").max_kinds(0), "max_kinds"),
    ] {
        let err = builder
            .transport(LocalChat::new().join("smokey"))
            .default_node(false)
            .start()
            .await
            .expect_err(option);
        assert!(
            matches!(err, socketscience::Error::InvalidOption { option: o, .. } if o == option),
            "{err}"
        );
    }
    let deepest = Node::builder("deepest")
        .max_depth(128)
        .transport(LocalChat::new().join("smokey"))
        .default_node(false)
        .start()
        .await
        .expect("128 levels are allowed");
    deepest.shutdown().await.unwrap();
}
