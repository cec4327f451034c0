//! Nobody else's words: untrusted accounts, unsigned, forged, stale and
//! replayed envelopes are each dropped and counted under their own reason,
//! while trusted, signed, fresh ones run; secrets rotate both ways.

mod common;

use std::time::Duration;

use common::{json_frame, wait_for, Log, CODECS};
use socketscience::{message, Codec, LocalChat, Node, NodeBuilder};

#[message("order")]
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub action: String,
}

fn order(action: &str) -> Order {
    Order {
        action: action.into(),
    }
}

fn builder(chat: &LocalChat, name: &str, account: &str, codec: Codec) -> NodeBuilder {
    Node::builder(name)
        .transport(chat.join(account))
        .codec(codec)
        .trust("smokey")
        .default_node(false)
}

/// The texts a node with `secret` posts for `orders`, captured in a room of
/// its own.
async fn frames_signed_with(secret: &str, codec: Codec, orders: &[&str]) -> Vec<String> {
    let chat = LocalChat::new();
    let mut watch = chat.watch();
    let node = builder(&chat, "elsewhere", "smokey", codec)
        .secret(secret)
        .start()
        .await
        .unwrap();
    for o in orders {
        node.send(order(o)).await.unwrap();
        // One post per order: let each go before the next is queued.
        wait_for(&node, "posted", |s| s.posts == s.sent).await;
    }
    node.shutdown().await.unwrap();
    let mut frames = Vec::new();
    while let Ok(m) = watch.try_recv() {
        frames.push(m.text.to_string());
    }
    assert_eq!(frames.len(), orders.len());
    frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_of_hostile_envelope_is_dropped_under_its_own_reason() {
    for codec in CODECS {
        let chat = LocalChat::new();
        let node = builder(&chat, "guard", "smokey", codec)
            .secret("fleet secret")
            .max_clock_skew(Duration::from_millis(500))
            .start()
            .await
            .unwrap();
        let got = Log::default();
        let log = got.clone();
        node.register(move |o: Order| log.push(o.action));

        // A stranger's account, even with a well-formed frame.
        chat.say(
            "mallory",
            &json_frame(r#"{"order":{"action":"from a stranger"}}"#),
        );
        // The trusted account without a signature (someone with the chat
        // account but not the secret).
        chat.say("smokey", &json_frame(r#"{"order":{"action":"unsigned"}}"#));
        // Signed with the wrong secret.
        for frame in frames_signed_with("guessed secret", codec, &["forged"]).await {
            chat.say("smokey", &frame);
        }
        // Good ones, posted by a fleet member.
        let good = frames_signed_with("fleet secret", codec, &["good 1", "good 2"]).await;
        for frame in &good {
            chat.say("smokey", frame);
        }
        // The same again: replays.
        for frame in &good {
            chat.say("smokey", frame);
        }
        let stats = wait_for(&node, "the checks", |s| s.received == 7).await;
        assert_eq!(stats.untrusted, 1, "{codec}");
        assert_eq!(stats.unsigned, 1, "{codec}");
        assert_eq!(stats.bad_signature, 1, "{codec}");
        assert_eq!(stats.replayed, 2, "{codec}");
        assert_eq!(stats.stale, 0, "{codec}");
        // Stale: a good frame kept past the allowed clock skew.
        let late = frames_signed_with("fleet secret", codec, &["late"]).await;
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        chat.say("smokey", &late[0]);
        let stats = wait_for(&node, "the stale one", |s| s.stale == 1).await;
        assert_eq!(stats.stale, 1, "{codec}");
        // The node still serves what is trusted, signed and fresh, and sends
        // signed envelopes itself.
        node.send(order("own")).await.unwrap();
        let fresh = frames_signed_with("fleet secret", codec, &["fresh"]).await;
        chat.say("smokey", &fresh[0]);
        let stats = wait_for(&node, "fresh", |s| s.dispatched == 4).await;
        node.shutdown().await.unwrap();
        assert_eq!(got.items(), ["good 1", "good 2", "own", "fresh"], "{codec}");
        assert_eq!(stats.rejected(), 1 + 1 + 1 + 2 + 1, "{codec}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_rotate_in_both_directions() {
    let chat = LocalChat::new();
    // Mid-rotation: one node already signs with the new secret, one still
    // with the old; both accept both. A node that only knows the old one
    // refuses the new signatures.
    let ahead = builder(&chat, "ahead", "smokey", Codec::Json)
        .secret("new")
        .secret("old")
        .start()
        .await
        .unwrap();
    let behind = builder(&chat, "behind", "smokey", Codec::MessagePack)
        .secret("old")
        .secret("new")
        .start()
        .await
        .unwrap();
    let stale = builder(&chat, "not-rotated", "smokey", Codec::Json)
        .secret("old")
        .start()
        .await
        .unwrap();
    let got = Log::default();
    for node in [&ahead, &behind, &stale] {
        let log = got.clone();
        let me = node.name().to_owned();
        node.register(move |o: Order, cx: socketscience::Context| {
            log.push(format!(
                "{me} <- {} {}",
                cx.sender().instance().unwrap(),
                o.action
            ))
        });
    }
    ahead.send(order("a")).await.unwrap();
    behind.send(order("b")).await.unwrap();
    for node in [&ahead, &behind] {
        wait_for(node, "both", |s| s.dispatched == 2).await;
    }
    wait_for(&stale, "one of each", |s| {
        // `ahead`'s heartbeats (answering newcomers) fail the check too.
        s.dispatched == 1 && s.bad_signature >= 1
    })
    .await;
    for node in [&ahead, &behind, &stale] {
        node.shutdown().await.unwrap();
    }
    let mut got = got.items();
    got.sort();
    assert_eq!(
        got,
        [
            "ahead <- ahead a",
            "ahead <- behind b",
            "behind <- ahead a",
            "behind <- behind b",
            "not-rotated <- behind b",
        ]
    );
}
