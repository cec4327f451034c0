//! The receive path: chat text in, nothing but counters out.
//!
//! Each input drives two persistent nodes (one unsigned, one with a secret),
//! so reassembly buffers and duplicate windows carry state across inputs.
//! The first byte picks how the rest is presented: as raw chat text, as the
//! body of a frame (so that the codecs see arbitrary bytes; with bit 0x40,
//! deflated first, so that the readers behind the inflater see them too),
//! a compressed body of arbitrary DEFLATE data, or as a chunk; or (mode
//! 3 with bit 0x10) as a control body whose numbers (`_sid`, `_hb`, the
//! ranges of `_rq` and `_nak`, the numbers of `_rp`, the `_el` term) are
//! read from the input, so that the receive path's arithmetic sees any
//! value.
#![no_main]

use std::cell::RefCell;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use socketscience::harness::Harness;
use socketscience::{message, LocalChat, Node};
use socketscience::transport::ChatMessage;

#[message("ping")]
pub struct Ping {
    pub location: String,
    pub timestamp: f64,
}

#[message("heartbeat")]
pub struct Heartbeat(pub f64);

#[message("metasmoke_state")]
#[serde(rename_all = "lowercase")]
pub enum MetasmokeState {
    Up,
    Down,
}

#[message("nested")]
pub struct Nested {
    pub items: Vec<Vec<(u8, Option<String>)>>,
    pub map: std::collections::BTreeMap<String, i64>,
}

fn harness(name: &str, secret: Option<&str>) -> Harness {
    let chat = LocalChat::with_max_message_len(400);
    let mut builder = Node::builder(name)
        .transport(chat.join("smokey"))
        .trust("smokey*")
        .failover(socketscience::Failover::new())
        .default_node(false);
    if let Some(secret) = secret {
        builder = builder.secret(secret);
    }
    let h = Harness::new(builder).expect("harness");
    h.node().register(|_: Ping| {});
    h.node().register(|_: Heartbeat| {});
    h.node().register(|_: MetasmokeState| {});
    h.node().register(|_: Nested| {});
    h
}

thread_local! {
    static NODES: RefCell<[Harness; 2]> =
        RefCell::new([harness("fuzz/plain", None), harness("fuzz/signed", Some("secret"))]);
}

/// A control body (JSON) whose numbers come from `bytes`, eight at a time.
fn control_body(bytes: &[u8]) -> String {
    let mut numbers = bytes
        .chunks(8)
        .map(|c| c.iter().fold(0u64, |n, &b| n << 8 | u64::from(b)));
    let mut next = || numbers.next().unwrap_or(u64::MAX);
    let names = ["fuzz/plain", "fuzz/signed", "other"];
    let pick = |n: u64| names[(n % 3) as usize];
    let (from, sid, hb) = (pick(next()), next() % 4, next());
    let mut range = || format!(r#"["{}",{},{},{}]"#, pick(next()), next() % 4, next(), next());
    let (rq, nak) = (range(), range());
    let (rp, term, flags) = (next(), next(), next());
    format!(
        r#"{{"_from":"{from}","_sid":{sid},"_hb":{hb},"_rq":[{rq}],"_nak":[{nak}],"_rp":[[{rp},{{"heartbeat":1.5}}]],"_el":[{term},{},{},{},{}]}}"#,
        flags & 1,
        flags as i64 >> 8,
        (flags >> 1) & 1,
        (flags >> 2) & 1
    )
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let text = match mode % 4 {
        0 => String::from_utf8_lossy(rest).into_owned(),
        1 if mode & 0x40 != 0 => {
            let mut packed = Vec::new();
            socketscience::wire::deflate_body(rest, &mut packed);
            format!(".\n\u{2}0000{}\u{3}", BASE64.encode(packed))
        }
        1 if mode & 0x20 != 0 => {
            let body = [&[socketscience::wire::COMPRESSED, (mode >> 3) & 1][..], rest].concat();
            format!(".\n\u{2}0000{}\u{3}", BASE64.encode(body))
        }
        1 => format!(".\n\u{2}0000{}\u{3}", BASE64.encode(rest)),
        2 => {
            let b64 = BASE64.encode(rest);
            let cut = b64.len() / 2;
            format!(".\n\u{1}0000abcd {}/2 {}", 1 + (mode as usize / 4) % 2, &b64[..cut.max(1).min(b64.len())])
        }
        3 if mode & 0x10 != 0 => {
            let body = control_body(rest);
            format!(".\n\u{2}0000{}\u{3}", BASE64.encode(body))
        }
        _ => format!("\u{2}{:04}{}\u{3}", mode, BASE64.encode(rest)),
    };
    let account = if mode & 0x80 == 0 { "smokey" } else { "mallory" };
    NODES.with(|nodes| {
        for node in nodes.borrow_mut().iter_mut() {
            node.receive(ChatMessage::new(account, text.as_str()));
        }
    });
});
