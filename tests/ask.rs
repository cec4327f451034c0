//! Questions with answers on an in-process room: `node.ask(q).within(d)`
//! gathers one typed answer per node with the right sender; a kind nobody
//! answers gives an empty list at the deadline; `first(n)` stops early; the
//! stream form gives answers as they come; replies addressed to one asker
//! are ignored by the others; a handler's `None` is no answer and its
//! error is counted; many questions in flight share posts. The clock is
//! paused: deadlines pass in virtual time.

mod common;

use std::collections::BTreeSet;
use std::future::IntoFuture as _;
use std::time::Duration;

use socketscience::{handler, message, Codec, Context, LocalChat, Node};

/// Every node answers with its name and version. (Not `where_are_you`:
/// that kind and `location` are tests/common/messages.rs's, answered with a
/// bare string.)
#[message("who_are_you", reply = Identity)]
#[derive(Debug, Clone)]
pub struct WhoAreYou;

#[message("identity")]
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub name: String,
    pub version: String,
}

#[handler]
fn answer(_: WhoAreYou, cx: Context) -> Identity {
    Identity {
        name: cx.node().name().into(),
        version: env!("CARGO_PKG_VERSION").into(),
    }
}

/// Counts identity messages that reach a handler (replies must not).
#[handler]
fn identity_seen(_: Identity, cx: Context) {
    cx.node().name();
}

/// Nobody handles this question.
#[message("anyone_there", reply = Identity)]
#[derive(Debug, Clone)]
pub struct AnyoneThere;

/// Answered only by instances whose name starts with "a", asynchronously;
/// the others give `None`; "bad" fails.
#[message("seen_post", reply = Seen)]
#[derive(Debug, Clone)]
pub struct SeenPost(pub u64);

#[message("seen")]
#[derive(Debug, Clone, PartialEq)]
pub struct Seen(pub u64);

#[handler]
async fn seen(q: SeenPost, cx: Context) -> Result<Option<Seen>, String> {
    match cx.node().name() {
        "bad" => Err("cannot look".into()),
        name if name.starts_with('a') => Ok(Some(Seen(q.0))),
        _ => Ok(None),
    }
}

#[message("numbered", reply = Seen)]
#[derive(Debug, Clone)]
pub struct Numbered(pub u64);

#[handler]
fn numbered(q: Numbered) -> Seen {
    Seen(q.0 * 10)
}

async fn fleet(chat: &LocalChat, names: &[&str]) -> Vec<Node> {
    let mut nodes = Vec::new();
    for name in names {
        nodes.push(common::join(chat, *name).await);
    }
    nodes
}

#[tokio::test(start_paused = true)]
async fn three_nodes_answer_with_their_names_and_a_kind_nobody_answers_is_empty() {
    let chat = LocalChat::new();
    let nodes = fleet(&chat, &["alpha", "beta", "gamma"]).await;
    let answers = nodes[1]
        .ask(WhoAreYou)
        .within(Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(answers.len(), 3, "{answers:?}");
    let senders: BTreeSet<String> = answers
        .iter()
        .map(|a| a.sender.instance().unwrap().to_owned())
        .collect();
    assert_eq!(senders, ["alpha", "beta", "gamma"].map(String::from).into());
    for a in &answers {
        assert_eq!(
            a.reply.name,
            a.sender.instance().unwrap(),
            "the sender is the answerer"
        );
        assert_eq!(a.reply.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(a.sender.is_self(), a.reply.name == "beta");
    }
    // The replies were addressed to beta: no node ran its `identity`
    // handler for them (a handler counts as dispatched).
    let before: Vec<u64> = nodes.iter().map(|n| n.stats().dispatched).collect();
    let empty = nodes[0]
        .ask(AnyoneThere)
        .within(Duration::from_secs(2))
        .await
        .unwrap();
    assert!(empty.is_empty());
    let after: Vec<u64> = nodes.iter().map(|n| n.stats().dispatched).collect();
    assert_eq!(
        before, after,
        "nobody handled anything for a question nobody answers"
    );
    for n in &nodes {
        // Each ran `answer` once; nobody ran `identity_seen`.
        assert_eq!(n.stats().dispatched, 1, "{}", n.name());
    }
    for n in nodes {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn none_is_no_answer_errors_are_counted_and_first_n_stops_early() {
    let chat = LocalChat::new();
    let nodes = fleet(&chat, &["alpha", "apex", "beta", "bad"]).await;
    let answers = nodes[2]
        .ask(SeenPost(42))
        .within(Duration::from_secs(2))
        .await
        .unwrap();
    let mut got: Vec<(String, Seen)> = answers
        .into_iter()
        .map(|a| (a.sender.instance().unwrap().to_owned(), a.reply))
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        [
            ("alpha".to_owned(), Seen(42)),
            ("apex".to_owned(), Seen(42))
        ]
    );
    assert_eq!(nodes[3].stats().handler_errors, 1);

    let started = tokio::time::Instant::now();
    let first = nodes[0]
        .ask(WhoAreYou)
        .within(Duration::from_secs(60))
        .first(2)
        .await
        .unwrap();
    assert_eq!(first.len(), 2);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "first(2) waited for the deadline"
    );
    for n in nodes {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn the_stream_form_gives_answers_as_they_arrive_and_ends_at_the_deadline() {
    let chat = LocalChat::new();
    let nodes = fleet(&chat, &["alpha", "beta"]).await;
    let mut answers = nodes[0]
        .ask(Numbered(4))
        .within(Duration::from_secs(5))
        .stream()
        .await
        .unwrap();
    let mut names = Vec::new();
    while let Some(a) = answers.next().await {
        assert_eq!(a.reply, Seen(40));
        names.push(a.sender.instance().unwrap().to_owned());
    }
    names.sort();
    assert_eq!(names, ["alpha", "beta"]);
    for n in nodes {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn many_questions_in_flight_share_posts() {
    many_questions(Codec::Json).await;
}

#[tokio::test(start_paused = true)]
async fn many_questions_in_flight_share_merged_messagepack_posts() {
    many_questions(Codec::MessagePack).await;
}

async fn many_questions(codec: Codec) {
    // One post per second per account, as a throttled chat allows.
    let chat = LocalChat::new().throttle(Duration::from_secs(1));
    let mut nodes = Vec::new();
    for name in ["alpha", "beta"] {
        nodes.push(
            Node::builder(name)
                .transport(chat.join("smokey"))
                .codec(codec)
                .default_node(false)
                .start()
                .await
                .unwrap(),
        );
    }
    let asker = nodes[0].clone();
    let posts_before = asker.stats().posts;
    let questions: Vec<_> = (0..20u64)
        .map(|i| {
            let asker = asker.clone();
            tokio::spawn(async move {
                asker
                    .ask(Numbered(i))
                    .within(Duration::from_secs(30))
                    .first(2)
                    .await
                    .unwrap()
            })
        })
        .collect();
    for (i, q) in questions.into_iter().enumerate() {
        let answers = q.await.unwrap();
        assert_eq!(answers.len(), 2, "question {i}");
        assert!(answers.iter().all(|a| a.reply == Seen(i as u64 * 10)));
    }
    let posts = asker.stats().posts - posts_before;
    // 40 envelopes: 20 questions, 20 own answers. A JSON batch holds any
    // of them; a merged MessagePack map holds a question and a reply but
    // not two of either (a map's key may not repeat).
    let most = match codec {
        Codec::Json => 10,
        Codec::MessagePack => 20,
    };
    assert!(
        posts <= most,
        "{codec}: 20 questions and their 20 own answers took {posts} posts"
    );
    for n in nodes {
        n.shutdown().await.unwrap();
    }
}

#[message("your_version", reply = Seen)]
#[derive(Debug, Clone)]
pub struct YourVersion;

#[tokio::test(start_paused = true)]
async fn a_closure_registered_with_answer_replies() {
    let chat = LocalChat::new();
    let nodes = fleet(&chat, &["alpha", "beta", "gamma"]).await;
    // Only gamma answers, at run time (as SocketScience's `register`).
    nodes[2].answer(|_: YourVersion, cx: Context| {
        assert_eq!(cx.node().name(), "gamma");
        Some(Seen(7))
    });
    let answers = nodes[0]
        .ask(YourVersion)
        .within(Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers[0].sender.instance(), Some("gamma"));
    assert_eq!(answers[0].reply, Seen(7));
    for n in nodes {
        n.shutdown().await.unwrap();
    }
}

/// `_ask` and `_re` are read in order with the kinds, in JSON batches and
/// MessagePack maps; `_el` is read as the election state of a presence post.
#[test]
fn ask_reply_and_election_entries_are_read_in_both_codecs() {
    use socketscience::wire::{parse_body, BodyLimits, KEY_ASK, KEY_REPLY_TO};
    let json = br#"{"_from":"a","_sid":1,"_seq":0,"_batch":[{"_ask":5,"where_are_you":null},{"_re":["b",3],"location":{"name":"a","version":"1"}}]}"#;
    let body = parse_body(json, BodyLimits::default()).unwrap();
    let kinds: Vec<&str> = body.messages.iter().map(|(k, _)| &**k).collect();
    assert_eq!(kinds, [KEY_ASK, "where_are_you", KEY_REPLY_TO, "location"]);
    assert_eq!(body.messages[0].1.decode::<u64>().unwrap(), 5);
    assert_eq!(
        body.messages[2].1.decode::<(String, u64)>().unwrap(),
        ("b".to_owned(), 3)
    );

    #[derive(serde::Serialize)]
    struct Entries<'a> {
        #[serde(rename = "_ask")]
        ask: u64,
        where_are_you: (),
        #[serde(rename = "_re")]
        re: (&'a str, u64),
        seen: u64,
    }
    let mp = rmp_serde::to_vec_named(&Entries {
        ask: 9,
        where_are_you: (),
        re: ("b", 4),
        seen: 1,
    })
    .unwrap();
    let body = parse_body(&mp, BodyLimits::default()).unwrap();
    let kinds: Vec<&str> = body.messages.iter().map(|(k, _)| &**k).collect();
    assert_eq!(kinds, [KEY_ASK, "where_are_you", KEY_REPLY_TO, "seen"]);
    assert_eq!(body.messages[0].1.decode::<u64>().unwrap(), 9);

    let json = br#"{"_from":"a","_sid":1,"_hb":0,"_el":[3,1,-2,1,0]}"#;
    let meta = parse_body(json, BodyLimits::default()).unwrap().meta;
    assert_eq!(meta.control.unwrap().election, Some(&b"[3,1,-2,1,0]"[..]));
    #[derive(serde::Serialize)]
    struct Heartbeat<'a> {
        #[serde(rename = "_from")]
        from: &'a str,
        #[serde(rename = "_el")]
        el: (u64, u8, i64, u8, u8),
    }
    let mp = rmp_serde::to_vec_named(&Heartbeat {
        from: "a",
        el: (3, 1, -2, 1, 0),
    })
    .unwrap();
    let el = rmp_serde::to_vec(&(3u64, 1u8, -2i64, 1u8, 0u8)).unwrap();
    let meta = parse_body(&mp, BodyLimits::default()).unwrap().meta;
    assert_eq!(meta.control.unwrap().election, Some(&el[..]));
}

/// Every node has heard the others, and the kinds they handle, once it has
/// run for a peer timeout (three heartbeats of 30 s by default).
const SETTLED: Duration = Duration::from_secs(95);
/// A deadline no test should reach when the answers end early: a guard of
/// half of it fails the test instead (virtual time, so never flaky).
const LONG: Duration = Duration::from_secs(60);

#[tokio::test(start_paused = true)]
async fn a_question_ends_once_every_live_peer_that_handles_it_answered() {
    let chat = LocalChat::new();
    let nodes = fleet(&chat, &["alpha", "beta", "gamma"]).await;
    tokio::time::sleep(SETTLED).await;
    for n in &nodes {
        assert_eq!(n.peers().len(), 2, "{}: {:?}", n.name(), n.peers());
        assert!(n.peers().iter().all(|p| p.handles("who_are_you")));
    }
    let ask = nodes[0].ask(WhoAreYou).within(LONG).stream();
    let mut answers = tokio::time::timeout(LONG / 2, ask)
        .await
        .expect("posted")
        .unwrap();
    let mut names = BTreeSet::new();
    let all = tokio::time::timeout(LONG / 2, async {
        while let Some(a) = answers.next().await {
            names.insert(a.reply.name);
        }
    })
    .await;
    assert!(all.is_ok(), "it waited past half its deadline: {names:?}");
    assert_eq!(names, ["alpha", "beta", "gamma"].map(String::from).into());
    assert!(answers.silent().is_empty(), "{:?}", answers.silent());
    // `.await` ends as early.
    let answers =
        tokio::time::timeout(LONG / 2, nodes[1].ask(WhoAreYou).within(LONG).into_future())
            .await
            .expect("it ended before half its deadline")
            .unwrap();
    assert_eq!(answers.len(), 3);
    for n in nodes {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn at_the_deadline_the_live_peers_that_did_not_answer_are_named() {
    let chat = LocalChat::new();
    // `seen` answers on names starting with "a" only: the others handle
    // the kind and stay silent.
    let nodes = fleet(&chat, &["alpha", "apex", "beta", "gamma"]).await;
    tokio::time::sleep(SETTLED).await;
    // gamma stops: still listed (heard within the peer timeout), it
    // answers nothing.
    nodes[3].shutdown().await.unwrap();
    let mut answers = nodes[0]
        .ask(SeenPost(7))
        .within(Duration::from_secs(10))
        .stream()
        .await
        .unwrap();
    let mut names = BTreeSet::new();
    while let Some(a) = answers.next().await {
        names.insert(a.sender.instance().unwrap().to_owned());
    }
    assert_eq!(names, ["alpha", "apex"].map(String::from).into());
    let mut silent = answers.silent();
    silent.sort();
    assert_eq!(silent, ["beta", "gamma"]);
    for n in &nodes[..3] {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_does_not_say_its_kinds_is_waited_for_until_the_deadline() {
    let chat = LocalChat::new();
    let nodes = fleet(&chat, &["alpha", "beta"]).await;
    tokio::time::sleep(SETTLED).await;
    // An instance of an older version: heartbeats without `_pk`.
    let body = br#"{"_from":"old","_sid":5,"_hb":0}"#;
    let mut b64 = String::new();
    socketscience::wire::encode_base64(body, &mut b64);
    chat.say("smokey", &format!(".\n\x020000{b64}\x03"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let old = nodes[0].peers();
    assert!(
        old.iter()
            .any(|p| p.instance() == "old" && !p.kinds_known()),
        "{old:?}"
    );
    let started = tokio::time::Instant::now();
    let answers = nodes[0]
        .ask(WhoAreYou)
        .within(Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(answers.len(), 2);
    assert!(
        started.elapsed() >= Duration::from_secs(10),
        "it could not know whether `old` answers: it waits the deadline"
    );
    for n in nodes {
        n.shutdown().await.unwrap();
    }
}
