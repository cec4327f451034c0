//! Envelopes larger than one chat message travel in chunks and arrive whole,
//! once, whatever the order the chunks come in.

mod common;

use common::{wait_for, Log, CODECS};
use socketscience::transport::ChatMessage;
use socketscience::{message, wire, Codec, Context, LocalChat, Node};

#[message("blob")]
#[derive(Debug, Clone, PartialEq)]
pub struct Blob {
    pub name: String,
    pub data: Vec<u32>,
    pub text: String,
}

fn blob(size: usize) -> Blob {
    // Varied content, so that a misplaced chunk cannot go unnoticed.
    let text: String = (0..size)
        .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
        .collect();
    Blob {
        name: "big".into(),
        data: (0..256u32).map(|i| i.wrapping_mul(2_654_435_761)).collect(),
        text,
    }
}

async fn start(chat: &LocalChat, name: &str, codec: Codec) -> Node {
    Node::builder(name)
        .transport(chat.join("smokey"))
        .codec(codec)
        .default_node(false)
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_kib_envelope_through_a_400_character_chat_arrives_whole() {
    for codec in CODECS {
        let chat = LocalChat::with_max_message_len(400);
        let mut watch = chat.watch();
        let mut nodes = Vec::new();
        for i in 0..3 {
            nodes.push(start(&chat, &format!("big-{codec}/{i}"), codec).await);
        }
        let got = Log::default();
        for node in &nodes {
            let log = got.clone();
            node.register(move |b: Blob, cx: Context| log.push((cx.node().name().to_owned(), b)));
        }
        let sent = blob(64 << 10);
        nodes[0].send(sent.clone()).await.unwrap();
        for node in &nodes {
            node.shutdown().await.unwrap();
        }
        let got = got.items();
        assert_eq!(got.len(), 3, "{codec}");
        assert!(got.iter().all(|(_, b)| *b == sent), "{codec}");
        let mut posts = 0;
        while let Ok(ChatMessage { text, .. }) = watch.try_recv() {
            assert!(text.len() <= 400, "{} > 400", text.len());
            assert!(
                text.starts_with(wire::CHUNK_START),
                "a chunk is not a frame: {text:?}"
            );
            posts += 1;
        }
        assert!(posts > 200, "{posts} chunks for 64 KiB");
        assert_eq!(nodes[0].stats().posts, posts);
        assert_eq!(nodes[1].stats().chunks, posts);
    }
}

#[tokio::test]
async fn chunks_out_of_order_and_duplicated_make_one_delivery() {
    // Record the chunks of one envelope...
    let source = LocalChat::with_max_message_len(200);
    let mut watch = source.watch();
    let sender = start(&source, "shuffle/sender", Codec::Json).await;
    let sent = blob(3_000);
    sender.send(sent.clone()).await.unwrap();
    sender.shutdown().await.unwrap();
    let mut chunks = Vec::new();
    while let Ok(message) = watch.try_recv() {
        chunks.push(message.text.to_string());
    }
    assert!(chunks.len() > 10);

    // ...and replay them to another room backwards, each twice, then the
    // whole set once more.
    let chat = LocalChat::with_max_message_len(200);
    let receiver = start(&chat, "shuffle/receiver", Codec::Json).await;
    let got = Log::default();
    let log = got.clone();
    receiver.register(move |b: Blob| log.push(b));
    for chunk in chunks.iter().rev() {
        chat.say("smokey", chunk);
        chat.say("smokey", chunk);
    }
    for (i, chunk) in chunks.iter().enumerate() {
        // Interleave with human talk.
        chat.say("smokey", chunk);
        if i % 3 == 0 {
            chat.say("smokey", "lol");
        }
    }
    let total = chunks.len() as u64 * 3;
    let stats = wait_for(&receiver, "every chunk", |s| s.chunks == total).await;
    receiver.shutdown().await.unwrap();
    assert_eq!(got.items(), [sent]);
    assert_eq!(stats.dispatched, 1);
    assert_eq!(stats.partials_dropped, 0);
}

#[tokio::test]
async fn chunks_from_two_accounts_do_not_mix() {
    let source = LocalChat::with_max_message_len(200);
    let mut watch = source.watch();
    let sender = start(&source, "mix/sender", Codec::Json).await;
    sender.send(blob(1_000)).await.unwrap();
    sender.shutdown().await.unwrap();
    let mut chunks = Vec::new();
    while let Ok(message) = watch.try_recv() {
        chunks.push(message.text.to_string());
    }
    let chat = LocalChat::with_max_message_len(200);
    let receiver = Node::builder("mix/receiver")
        .transport(chat.join("smokey"))
        .trust("smokey*")
        .default_node(false)
        .start()
        .await
        .unwrap();
    let got = Log::default();
    let log = got.clone();
    receiver.register(move |b: Blob| log.push(b.name));
    // Half the pieces from one account, half from another: never whole.
    for (i, chunk) in chunks.iter().enumerate() {
        chat.say(if i % 2 == 0 { "smokey" } else { "smokey2" }, chunk);
    }
    wait_for(&receiver, "every chunk", |s| {
        s.chunks == chunks.len() as u64
    })
    .await;
    receiver.shutdown().await.unwrap();
    assert!(got.items().is_empty());
}
