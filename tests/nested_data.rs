//! A message holding `#[data]` types (a struct, an enum with data, a generic
//! one) crosses a `LocalChat` between two nodes in both codecs, and the
//! nested types' `#[serde(...)]` attributes shape the wire: no serde
//! derive or dependency of the test's own.

mod common;

use common::{json_frame, wait_for, Log, CODECS};
use socketscience::{data, message, Codec, LocalChat, Node};

#[data]
#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    pub host: String,
    #[serde(rename = "zone")]
    pub region: Region,
}

#[data]
#[serde(rename_all = "lowercase")]
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Region {
    Eu,
    Us,
}

#[data]
#[serde(tag = "state", rename_all = "snake_case")]
#[derive(Debug, Clone, PartialEq)]
pub enum Health {
    Up,
    Degraded { reason: String, since: f64 },
}

#[data]
#[derive(Debug, Clone, PartialEq)]
pub struct Tagged<T> {
    pub tag: String,
    pub value: T,
}

#[message("nested_where")]
#[derive(Debug, Clone, PartialEq)]
pub struct Where {
    pub location: Location,
    pub previous: Vec<Location>,
    pub health: Health,
    pub load: Option<Tagged<u32>>,
}

fn sample(n: u32) -> Where {
    Where {
        location: Location {
            host: format!("Henders/EC2-{n}"),
            region: Region::Eu,
        },
        previous: vec![Location {
            host: "teward/vps".into(),
            region: Region::Us,
        }],
        health: Health::Degraded {
            reason: "metasmoke is slow".into(),
            since: 1.5,
        },
        load: Some(Tagged {
            tag: "cpu".into(),
            value: n,
        }),
    }
}

async fn node(chat: &LocalChat, name: &str, codec: Codec) -> Node {
    Node::builder(name)
        .transport(chat.join("smokey"))
        .codec(codec)
        .default_node(false)
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_message_with_nested_data_types_round_trips_in_both_codecs() {
    for codec in CODECS {
        let chat = LocalChat::new();
        let sender = node(&chat, "sender", codec).await;
        let receiver = node(&chat, "receiver", codec).await;
        let got = Log::default();
        receiver.register({
            let got = got.clone();
            move |w: Where| got.push(w)
        });
        let sent = [sample(1), sample(2)];
        for w in &sent {
            sender.send(w.clone()).await.unwrap();
        }
        sender.shutdown().await.unwrap();
        let stats = wait_for(&receiver, "two envelopes", |s| s.dispatched >= 2).await;
        receiver.shutdown().await.unwrap();
        assert_eq!(got.items(), sent, "{codec}");
        assert_eq!(stats.bad_values, 0, "{codec}");
    }
}

#[tokio::test]
async fn the_nested_types_serde_attributes_shape_the_wire() {
    let chat = LocalChat::new();
    let receiver = node(&chat, "receiver", Codec::Json).await;
    let got = Log::default();
    receiver.register({
        let got = got.clone();
        move |w: Where| got.push(w)
    });
    // As another sender writes it: `zone`, lowercase regions, an internally
    // tagged enum.
    chat.say(
        "smokey",
        &json_frame(
            r#"{"nested_where":{"location":{"host":"h","zone":"us"},"previous":[],"health":{"state":"up"},"load":null}}"#,
        ),
    );
    wait_for(&receiver, "the envelope", |s| s.dispatched >= 1).await;
    receiver.shutdown().await.unwrap();
    assert_eq!(
        got.items(),
        [Where {
            location: Location {
                host: "h".into(),
                region: Region::Us,
            },
            previous: Vec::new(),
            health: Health::Up,
            load: None,
        }]
    );
}
