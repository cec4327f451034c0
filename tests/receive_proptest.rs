//! The fuzz target's property, run in CI for a bounded number of cases:
//! whatever a room posts, the receive path of a node returns (never panics)
//! and only counts; and it still serves a good envelope afterwards.

mod common;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use common::messages::Ping;
use proptest::prelude::*;
use socketscience::harness::Harness;
use socketscience::transport::ChatMessage;
use socketscience::{message, LocalChat, Node};

#[message("state")]
#[serde(rename_all = "lowercase")]
pub enum State {
    Up,
    Down,
}

fn node(secret: Option<&str>) -> Harness {
    let chat = LocalChat::with_max_message_len(400);
    let mut builder = Node::builder("prop")
        .transport(chat.join("smokey"))
        .default_node(false);
    if let Some(secret) = secret {
        builder = builder.secret(secret);
    }
    let h = Harness::new(builder).unwrap();
    h.node().register(|_: Ping| {});
    h.node().register(|_: State| {});
    h
}

/// Arbitrary chat texts: raw text, frames around arbitrary bodies, chunks,
/// and mutations of a valid frame.
fn texts() -> impl Strategy<Value = String> {
    let valid = {
        let mut sender = Harness::new(
            Node::builder("sender")
                .transport(LocalChat::new().join("smokey"))
                .default_node(false),
        )
        .unwrap();
        sender
            .post(Ping {
                location: "Henders/EC2".into(),
                timestamp: 1.5,
            })
            .unwrap()
    };
    prop_oneof![
        any::<String>(),
        prop::collection::vec(any::<u8>(), 0..300)
            .prop_map(|b| format!(".\n\u{2}0000{}\u{3}", BASE64.encode(b))),
        // Compressed bodies: arbitrary DEFLATE data, and deflated
        // arbitrary bytes, bombs among them.
        prop::collection::vec(any::<u8>(), 0..300).prop_map(|b| format!(
            ".\n\u{2}0000{}\u{3}",
            BASE64.encode([&[0xc1, 0x01][..], &b].concat())
        )),
        (prop::collection::vec(any::<u8>(), 0..64), 0usize..2_000_000).prop_map(|(b, pad)| {
            let mut body = b;
            body.resize(body.len() + pad, b' ');
            let mut packed = Vec::new();
            socketscience::wire::deflate_body(&body, &mut packed);
            format!(".\n\u{2}0000{}\u{3}", BASE64.encode(packed))
        }),
        (any::<u32>(), 0u32..5, 0u32..5, "[A-Za-z0-9+/=]{0,40}")
            .prop_map(|(id, i, n, piece)| format!(".\n\u{1}{id:08x} {i}/{n} {piece}")),
        (0usize..200, any::<u8>(), any::<char>()).prop_map(move |(at, byte, c)| {
            let mut bytes = valid.clone().into_bytes();
            let at = at % bytes.len();
            bytes[at] = byte;
            let mut text = String::from_utf8_lossy(&bytes).into_owned();
            let at = (0..=at.min(text.len()))
                .rev()
                .find(|i| text.is_char_boundary(*i))
                .unwrap_or(0);
            text.insert(at, c);
            text
        }),
    ]
}

/// Control bodies with arbitrary numbers (heartbeat ends, ranges, repost
/// numbers, election terms), naming the sender itself, `prop` or others.
fn control_texts() -> impl Strategy<Value = String> {
    let number = prop_oneof![
        any::<u64>(),
        Just(u64::MAX),
        Just(u64::MAX - 1),
        Just(0u64),
        0u64..16
    ];
    let name = prop_oneof![Just("sender"), Just("prop"), Just("other")];
    let range = (name.clone(), number.clone(), number.clone(), number.clone())
        .prop_map(|(n, s, a, b)| format!(r#"["{n}",{s},{a},{b}]"#));
    (
        name,
        number.clone(),
        prop::option::of(number.clone()),
        prop::collection::vec(range.clone(), 0..4),
        prop::collection::vec(range, 0..4),
        prop::collection::vec(number.clone(), 0..4),
        prop::option::of((number, any::<u8>(), any::<i64>(), any::<u8>(), any::<u8>())),
    )
        .prop_map(|(from, sid, hb, rq, nak, rp, el)| {
            let mut body = format!(r#"{{"_from":"{from}","_sid":{sid}"#);
            if let Some(hb) = hb {
                body += &format!(r#","_hb":{hb}"#);
            }
            if !rq.is_empty() {
                body += &format!(r#","_rq":[{}]"#, rq.join(","));
            }
            if !nak.is_empty() {
                body += &format!(r#","_nak":[{}]"#, nak.join(","));
            }
            if !rp.is_empty() {
                let items: Vec<String> = rp
                    .iter()
                    .map(|seq| format!(r#"[{seq},{{"state":"up"}}]"#))
                    .collect();
                body += &format!(r#","_rp":[{}]"#, items.join(","));
            }
            if let Some((term, active, priority, eligible, forced)) = el {
                body += &format!(r#","_el":[{term},{active},{priority},{eligible},{forced}]"#);
            }
            body.push('}');
            format!(".\n\u{2}0000{}\u{3}", BASE64.encode(body))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// In a debug build (overflow checks on), arbitrary control values
    /// from the room neither panic the receive path nor stop it serving.
    #[test]
    fn any_control_values_are_refused_or_taken_never_a_panic(
        texts in prop::collection::vec(control_texts(), 1..8),
        seqs in prop::collection::vec(prop_oneof![any::<u64>(), Just(u64::MAX), 0u64..8], 0..4),
    ) {
        let mut node = Harness::new(
            Node::builder("prop")
                .transport(LocalChat::new().join("smokey"))
                .failover(socketscience::Failover::new())
                .default_node(false),
        )
        .unwrap();
        node.node().register(|_: State| {});
        for seq in &seqs {
            let body = format!(r#"{{"state":"up","_from":"sender","_sid":1,"_seq":{seq}}}"#);
            node.receive(ChatMessage::new("smokey", format!(".\n\u{2}0000{}\u{3}", BASE64.encode(body))));
        }
        for text in &texts {
            node.receive(ChatMessage::new("smokey", text.as_str()));
        }
        let stats = node.node().stats();
        prop_assert_eq!(stats.handler_panics, 0);
        // Still serving: a good envelope of a fleet member runs.
        let mut sender = Harness::new(
            Node::builder("fleet")
                .transport(LocalChat::new().join("smokey"))
                .default_node(false),
        )
        .unwrap();
        let good = sender.post(State::Down).unwrap();
        node.receive(ChatMessage::new("smokey", good.as_str()));
        prop_assert_eq!(node.node().stats().dispatched, stats.dispatched + 1);
    }

    #[test]
    fn any_text_from_the_room_is_counted_never_a_panic(
        texts in prop::collection::vec(texts(), 1..8),
        stranger in any::<bool>(),
    ) {
        for mut node in [node(None), node(Some("secret"))] {
            for text in &texts {
                let account = if stranger { "mallory" } else { "smokey" };
                node.receive(ChatMessage::new(account, text.as_str()));
            }
            let stats = node.node().stats();
            prop_assert_eq!(stats.received, texts.len() as u64);
            prop_assert_eq!(stats.handler_panics, 0);
            // Still serving: a good, signed envelope from a fleet member runs.
            let mut sender = Harness::new(
                Node::builder("fleet")
                    .transport(LocalChat::new().join("smokey"))
                    .secret("secret")
                    .default_node(false),
            )
            .unwrap();
            let good = sender.post(State::Down).unwrap();
            node.receive(ChatMessage::new("smokey", good.as_str()));
            prop_assert_eq!(node.node().stats().dispatched, stats.dispatched + 1);
        }
    }
}
