//! Failover and questions next to Python SocketScience instances: what a
//! MessagePack node posts for them is read by the real Python `msgpack`
//! (through `tests/python/wire.py`), and SmokeDetector's receive path
//! (`tests/python/smokedetector.py`) reads without raising:
//!
//! - a failover heartbeat is a dict of reserved keys only (`_el` among
//!   them, and the first one `_pv`, the node's meta, and `_pk`, the kinds
//!   it handles): no callback runs;
//! - a question and a reply are dicts whose only non-reserved keys are the
//!   question's and the reply's kinds: Python's callbacks for those kinds
//!   run as for any kind, and `_ask` / `_re` have none.

mod common;

use std::future::IntoFuture as _;
use std::time::Duration;

use common::messages::{Location, WhereAreYou};
use common::within;
use socketscience::{handler, Codec, Context, Failover, LocalChat, Node};

#[handler]
fn answer(_: WhereAreYou, cx: Context) -> Location {
    Location(cx.node().name().into())
}

/// Runs `tests/python/wire.py <command>` on the chat texts; one JSON value
/// per text.
fn python(command: &str, texts: &[String]) -> Vec<serde_json::Value> {
    let input = serde_json::to_string(texts).unwrap();
    let lines: Vec<serde_json::Value> = common::python::wire(command, &input)
        .iter()
        .map(|l| serde_json::from_str(l).expect("wire.py prints JSON"))
        .collect();
    assert_eq!(lines.len(), texts.len(), "one result per text");
    lines
}

fn kinds(dict: &serde_json::Value) -> Vec<String> {
    dict.as_object()
        .unwrap_or_else(|| panic!("not a dict: {dict}"))
        .keys()
        .filter(|k| !k.starts_with('_'))
        .cloned()
        .collect()
}

#[tokio::test]
async fn python_reads_failover_heartbeats_questions_and_replies() {
    let chat = LocalChat::new();
    let mut room = chat.watch();
    let node = Node::builder("Henders/EC2")
        .transport(chat.join("rust-bot"))
        .codec(Codec::MessagePack)
        .trust("*")
        .heartbeat(Duration::from_millis(100))
        .failover(Failover::new().priority(7))
        .meta(serde_json::json!({"version": "1.4.2", "commit": "9f3c2e1"}))
        .default_node(false)
        .start()
        .await
        .expect("node starts");
    let answers = within(
        "the question",
        node.ask(WhereAreYou)
            .within(Duration::from_millis(500))
            .into_future(),
    )
    .await
    .unwrap();
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].reply.0, "Henders/EC2");
    within("shutdown", node.shutdown()).await.unwrap();
    let mut frames = Vec::new();
    while let Ok(message) = room.try_recv() {
        frames.push(message.text.to_string());
    }
    let dicts = python("decode", &frames);
    let mut heartbeats = 0;
    let mut presence = 0;
    let mut questions = 0;
    let mut replies = 0;
    for (frame, dict) in frames.iter().zip(&dicts) {
        let object = dict
            .as_object()
            .unwrap_or_else(|| panic!("{frame:?}: {dict}"));
        if object.contains_key("_el") {
            heartbeats += 1;
            assert!(kinds(dict).is_empty(), "a heartbeat with kinds: {dict}");
            let el = object["_el"].as_array().expect("_el is a list");
            assert_eq!(el.len(), 5, "{dict}");
            assert_eq!(el[2], 7, "the priority: {dict}");
        }
        if let Some(meta) = object.get("_pv") {
            presence += 1;
            assert!(kinds(dict).is_empty(), "a heartbeat with kinds: {dict}");
            assert_eq!(meta["version"], "1.4.2", "{dict}");
            let pk = object["_pk"].as_array().expect("_pk is a list");
            assert!(pk.contains(&"where_are_you".into()), "{dict}");
        }
        if object.contains_key("_ask") {
            questions += 1;
            // (The reply may share the post: a merged map.)
            assert!(kinds(dict).contains(&"where_are_you".to_owned()), "{dict}");
            assert!(
                kinds(dict)
                    .iter()
                    .all(|k| k == "where_are_you" || k == "location"),
                "{dict}"
            );
        }
        if let Some(re) = object.get("_re") {
            replies += 1;
            assert_eq!(re[0], "Henders/EC2", "{dict}");
            assert_eq!(
                kinds(dict).iter().filter(|k| *k == "location").count(),
                1,
                "{dict}"
            );
        }
    }
    assert!(heartbeats >= 1, "no failover heartbeat: {dicts:?}");
    // Meta and kinds go with the first heartbeat only (then when they
    // change, or a newcomer is heard: nobody else is in this room).
    assert_eq!(presence, 1, "{dicts:?}");
    assert_eq!((questions, replies), (1, 1), "{dicts:?}");
    // SmokeDetector's own receive path (tests/python/smokedetector.py)
    // reads every one of them, with callbacks for both kinds, and raises on
    // none.
    for outcome in smokedetector_on_msg(&frames, &["where_are_you", "location"]) {
        assert!(
            outcome["raised"].is_null() && outcome["payload"].is_string(),
            "SmokeDetector did not read it: {outcome}"
        );
    }
}

/// What the transcription of SmokeDetector's receive path
/// (`tests/python/smokedetector.py`) does with each chat text posted by its
/// own account, with recording callbacks for `callbacks`.
fn smokedetector_on_msg(texts: &[String], callbacks: &[&str]) -> Vec<serde_json::Value> {
    let request = serde_json::json!({"on_msg": texts, "callbacks": callbacks, "own_account": true});
    let answer = common::python::smokedetector(&request);
    let outcomes = answer
        .as_array()
        .unwrap_or_else(|| panic!("smokedetector.py: {answer}"))
        .clone();
    assert_eq!(outcomes.len(), texts.len(), "one outcome per text");
    outcomes
}

/// Shared handlers: a MessagePack node's heartbeats carry `_ps` (the kinds
/// it shares) and `_sc` (how far it dealt with shared jobs); Python reads
/// them as dicts of reserved keys only, SmokeDetector without raising.
#[tokio::test(start_paused = true)]
async fn python_ignores_shared_kinds_and_confirmations() {
    let chat = LocalChat::new();
    let mut room = chat.watch();
    let node = Node::builder("Henders/EC2")
        .transport(chat.join("rust-bot"))
        .codec(Codec::MessagePack)
        .trust("*")
        .heartbeat(Duration::from_millis(100))
        .default_node(false)
        .start()
        .await
        .expect("node starts");
    node.register_shared(|_: Location| ()).unwrap();
    // It takes its share after a heartbeat interval; then runs its own
    // jobs (alone, it is chosen) and confirms them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    node.send(Location("Henders/EC2".into())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(node.stats().shared_runs, 1);
    node.shutdown().await.unwrap();
    let mut frames = Vec::new();
    while let Ok(message) = room.try_recv() {
        frames.push(message.text.to_string());
    }
    let dicts = python("decode", &frames);
    let (mut shared, mut confirmed) = (0, 0);
    for (frame, dict) in frames.iter().zip(&dicts) {
        let object = dict
            .as_object()
            .unwrap_or_else(|| panic!("{frame:?}: {dict}"));
        if let Some(ps) = object.get("_ps") {
            assert!(kinds(dict).is_empty(), "a heartbeat with kinds: {dict}");
            assert!(ps.is_array(), "{dict}");
            shared += 1;
        }
        if let Some(sc) = object.get("_sc") {
            assert!(kinds(dict).is_empty(), "a heartbeat with kinds: {dict}");
            assert_eq!(sc[0][0], node.session(), "{dict}");
            assert_eq!(sc[0][1], 1, "through its first envelope: {dict}");
            confirmed += 1;
        }
    }
    assert!(
        shared >= 2,
        "`_ps` when it opens and when it leaves: {dicts:?}"
    );
    assert!(confirmed >= 1, "no `_sc`: {dicts:?}");
    for outcome in smokedetector_on_msg(&frames, &["location"]) {
        assert!(
            outcome["raised"].is_null(),
            "SmokeDetector raised: {outcome}"
        );
    }
}
