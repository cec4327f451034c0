//! Presence and gap repair on an in-process room whose deliveries can be
//! lost: ten nodes with a seeded 20 % of deliveries dropped per receiver
//! still dispatch everything exactly once, in per-sender order; a receiver
//! cut off catches up; a fleet whose heartbeats the presence budget
//! stretches still learns a lost tail within its interval; a restarted sender's unrepairable range is counted
//! as lost; forged, untrusted and absurd repair requests are refused and
//! counted, and make no node post.
//!
//! Tokio's clock is paused: the heartbeats, repair windows and timeouts
//! run in virtual time, so the tests are quick and do not depend on load.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::Log;
use socketscience::transport::BoxFuture;
use socketscience::transport::{ChatMessage, Transport, TransportIo};
use socketscience::{message, Codec, Context, LocalChat, Node, NodeBuilder, Stats};
use tokio::sync::broadcast;

#[message("note")]
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub index: u64,
}

/// A chat room whose deliveries to each member are dropped at random (a
/// seeded share per member), or all of them while the member is cut off.
#[derive(Clone)]
struct LossyRoom {
    tx: broadcast::Sender<ChatMessage>,
}

impl LossyRoom {
    fn new() -> LossyRoom {
        LossyRoom {
            tx: broadcast::channel(1 << 16).0,
        }
    }

    /// A member posting as `account`, losing `percent` % of what it should
    /// receive (seeded by `seed`), and nothing while `cut` is set.
    fn join(&self, account: &str, percent: u64, seed: u64, cut: Arc<AtomicBool>) -> Member {
        Member {
            account: account.into(),
            tx: self.tx.clone(),
            rx: self.tx.subscribe(),
            percent,
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            cut,
        }
    }
}

struct Member {
    account: String,
    tx: broadcast::Sender<ChatMessage>,
    rx: broadcast::Receiver<ChatMessage>,
    percent: u64,
    state: u64,
    cut: Arc<AtomicBool>,
}

impl Member {
    /// xorshift64*: a seeded coin with `percent` % of drops.
    fn drop_this(&mut self) -> bool {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let r = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (r >> 33) % 100 < self.percent
    }
}

impl Transport for Member {
    fn account(&self) -> &str {
        &self.account
    }

    fn max_message_len(&self) -> usize {
        4_096
    }

    fn run(mut self: Box<Self>, mut io: TransportIo) -> BoxFuture<socketscience::Result<()>> {
        Box::pin(async move {
            loop {
                tokio::select! {
                    post = io.next_post() => match post {
                        Some(text) => {
                            let _ = self.tx.send(ChatMessage::new(self.account.as_str(), text));
                        }
                        None => return Ok(()),
                    },
                    message = self.rx.recv() => match message {
                        Ok(message) => {
                            if self.cut.load(Ordering::SeqCst) || self.drop_this() {
                                continue;
                            }
                            io.receive(message).await?;
                        }
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            panic!("the test room lagged by {n}: make its channel larger")
                        }
                        Err(broadcast::error::RecvError::Closed) => return Ok(()),
                    },
                }
            }
        })
    }
}

/// What a node ran: (sender instance, note index), in order.
fn record(node: &Node) -> Log<(String, u64)> {
    let log = Log::default();
    let sink = log.clone();
    node.register(move |note: Note, cx: Context| {
        let from = cx.sender().instance().unwrap_or("?").to_owned();
        sink.push((from, note.index));
    });
    log
}

fn repairing(builder: NodeBuilder) -> NodeBuilder {
    builder
        .heartbeat(Duration::from_secs(1))
        .repair_window(Duration::from_secs(1))
        .repair_timeout(Duration::from_secs(120))
        .default_node(false)
}

/// Starts a [`repairing`] node named `name` on `member`, in `codec`,
/// signing with `secret` if there is one.
async fn start_repairing(name: &str, member: Member, codec: Codec, secret: Option<&str>) -> Node {
    let builder = repairing(Node::builder(name).transport(member)).codec(codec);
    let builder = match secret {
        Some(secret) => builder.secret(secret),
        None => builder,
    };
    builder.start().await.expect("start")
}

/// A [`repairing`] sender that loses nothing (seed 1) in `room`, then a
/// receiver that loses `percent` % (seeded by `seed`), and everything
/// while `cut` is set; both of account `smokey`.
async fn sender_and_receiver(
    room: &LossyRoom,
    (percent, seed, cut): (u64, u64, Arc<AtomicBool>),
    codec: Codec,
    secret: Option<&str>,
) -> (Node, Node) {
    let sender_member = room.join("smokey", 0, 1, Arc::default());
    let sender = start_repairing("sender", sender_member, codec, secret).await;
    let receiver_member = room.join("smokey", percent, seed, cut);
    let receiver = start_repairing("receiver", receiver_member, codec, secret).await;
    (sender, receiver)
}

/// Waits (in virtual time) until every node lists `peers` peers.
async fn until_peers(nodes: &[Node], peers: usize) {
    for _ in 0..600 {
        if nodes.iter().all(|n| n.peers().len() >= peers) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let listed: Vec<usize> = nodes.iter().map(|n| n.peers().len()).collect();
    panic!("the nodes did not hear each other within 60 s: {listed:?}");
}

/// Waits (in virtual time, at most `limit`) until `done` holds.
async fn until(what: &str, limit: Duration, done: impl Fn() -> bool) {
    let start = tokio::time::Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Each sender's indices as `log` ran them.
fn by_sender(log: &Log<(String, u64)>) -> BTreeMap<String, Vec<u64>> {
    let mut map: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (from, index) in log.items() {
        map.entry(from).or_default().push(index);
    }
    map
}

#[tokio::test(start_paused = true)]
async fn ten_nodes_losing_a_fifth_of_deliveries_dispatch_everything_once_in_order() {
    const NODES: usize = 10;
    const NOTES: u64 = 40;
    let room = LossyRoom::new();
    let mut nodes = Vec::new();
    let mut logs = Vec::new();
    for i in 0..NODES {
        let member = room.join("smokey", 20, 1 + i as u64, Arc::default());
        let node = repairing(Node::builder(format!("node{i}")).transport(member))
            .start()
            .await
            .expect("start");
        logs.push(record(&node));
        nodes.push(node);
    }
    until_peers(&nodes, NODES - 1).await;
    for index in 0..NOTES {
        for node in &nodes {
            node.send(Note { index }).await.expect("send");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let expected = NODES * NOTES as usize;
    until(
        "every node ran every note",
        Duration::from_secs(600),
        || logs.iter().all(|log| log.len() >= expected),
    )
    .await;
    // Late duplicates would show up now.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let mut total = Stats::default();
    for (node, log) in nodes.iter().zip(&logs) {
        let runs = by_sender(log);
        assert_eq!(
            runs.len(),
            NODES,
            "{}: senders {:?}",
            node.name(),
            runs.keys()
        );
        for (from, indices) in &runs {
            assert_eq!(
                indices,
                &(0..NOTES).collect::<Vec<_>>(),
                "{} ran {from}'s notes out of order or not exactly once",
                node.name()
            );
        }
        let stats = node.stats();
        assert_eq!(stats.lost, 0, "{}: {stats:#?}", node.name());
        total.posts += stats.posts;
        total.heartbeats += stats.heartbeats;
        total.repair_posts += stats.repair_posts;
        total.repaired += stats.repaired;
        total.resent += stats.resent;
        total.repair_requests += stats.repair_requests;
    }
    assert!(
        total.repaired > 0,
        "a fifth was lost, some must be repaired"
    );
    let data = total.posts - total.heartbeats - total.repair_posts;
    println!(
        "REPORT ten nodes, 20% loss, {NOTES} notes each: {} posts: {data} of data, {} of repair \
         ({} requests or unrepairable lists and re-posts; {} envelopes posted again, {} ranges \
         asked for), {} heartbeats; {} envelopes arrived through repair",
        total.posts,
        total.repair_posts,
        total.repair_posts,
        total.resent,
        total.repair_requests,
        total.heartbeats,
        total.repaired,
    );
    for node in &nodes {
        node.shutdown().await.expect("shutdown");
    }
}

/// Presence that scales: in a fleet whose heartbeats the presence budget
/// stretches (ten nodes, heartbeat 1 s, 60 posts a minute: every
/// `T = 10 × 60 s / 54 ≈ 11 s` on average), a receiver that lost a
/// sender's tail still learns of it from the sender's next heartbeat,
/// drawn within `3 T / 2` of its last post, and has it repaired within a
/// repair window more; nobody drops the quiet sender meanwhile.
#[tokio::test(start_paused = true)]
async fn a_stretched_fleet_still_learns_a_lost_tail_within_its_interval() {
    const NODES: usize = 10;
    let room = LossyRoom::new();
    let cut = Arc::new(AtomicBool::new(false));
    let mut nodes = Vec::new();
    for i in 0..NODES {
        // node1 is the receiver that loses the tail.
        let member_cut = if i == 1 { cut.clone() } else { Arc::default() };
        let member = room.join("smokey", 0, 1 + i as u64, member_cut);
        let node = repairing(Node::builder(format!("node{i}")).transport(member))
            .presence_budget(60.0)
            .start()
            .await
            .expect("start");
        nodes.push(node);
    }
    let log = record(&nodes[1]);
    until_peers(&nodes, NODES - 1).await;
    // The intervals stretched as the peers were heard: `3 h × T / h`.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let interval = Duration::from_secs_f64(NODES as f64 * 60.0 / 54.0);
    for node in &nodes {
        let timeout = node.peer_timeout();
        assert!(
            timeout.abs_diff(interval * 3) <= Duration::from_millis(5),
            "{}: peer timeout {timeout:?}, stretched to {:?}",
            node.name(),
            interval * 3
        );
    }

    let (sender, receiver) = (&nodes[0], &nodes[1]);
    for index in 0..5 {
        sender.send(Note { index }).await.expect("send");
    }
    until(
        "the receiver ran the first five",
        Duration::from_secs(5),
        || log.len() >= 5,
    )
    .await;
    // The tail (three notes) is lost to the receiver alone.
    cut.store(true, Ordering::SeqCst);
    for index in 5..8 {
        sender.send(Note { index }).await.expect("send");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    cut.store(false, Ordering::SeqCst);
    let quiet = tokio::time::Instant::now();
    // The sender's next heartbeat (within 3 T / 2 of its last post, plus
    // a tick) reveals the tail; a request within half a window, the
    // answer a window later at most.
    let bound = interval.mul_f64(1.5) + Duration::from_secs(3);
    until("the receiver learnt the lost tail", bound, || {
        log.len() >= 8
    })
    .await;
    println!(
        "REPORT stretched interval {:.1} s: the tail repaired {:.1} s after the sender went quiet",
        interval.as_secs_f64(),
        quiet.elapsed().as_secs_f64()
    );
    assert_eq!(by_sender(&log)["node0"], (0..8).collect::<Vec<_>>());
    let stats = receiver.stats();
    assert_eq!((stats.repaired, stats.lost), (3, 0), "{stats:#?}");
    for node in &nodes {
        assert_eq!(
            node.peers().len(),
            NODES - 1,
            "{} lists the fleet",
            node.name()
        );
    }
    for node in &nodes {
        node.shutdown().await.expect("shutdown");
    }
}

#[tokio::test(start_paused = true)]
async fn a_receiver_cut_off_catches_up_and_peers_come_and_go() {
    cut_off_receiver_catches_up(Codec::Json, None).await;
}

#[tokio::test(start_paused = true)]
async fn a_receiver_cut_off_catches_up_with_messagepack() {
    cut_off_receiver_catches_up(Codec::MessagePack, None).await;
}

#[tokio::test(start_paused = true)]
async fn a_receiver_cut_off_catches_up_with_signed_messagepack() {
    cut_off_receiver_catches_up(Codec::MessagePack, Some("fleet secret")).await;
}

#[tokio::test(start_paused = true)]
async fn a_receiver_cut_off_catches_up_with_signed_json() {
    cut_off_receiver_catches_up(Codec::Json, Some("fleet secret")).await;
}

async fn cut_off_receiver_catches_up(codec: Codec, secret: Option<&str>) {
    let room = LossyRoom::new();
    let cut = Arc::new(AtomicBool::new(false));
    let (sender, receiver) = sender_and_receiver(&room, (0, 2, cut.clone()), codec, secret).await;
    let log = record(&receiver);
    let mut peers = receiver.watch_peers();
    until_peers(std::slice::from_ref(&receiver), 1).await;
    let listed = receiver.peers();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].instance(), "sender");
    assert_eq!(listed[0].account(), "smokey");
    assert_eq!(listed[0].session(), sender.session());
    peers.borrow_and_update();

    for index in 0..5 {
        sender.send(Note { index }).await.expect("send");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    cut.store(true, Ordering::SeqCst);
    for index in 5..30 {
        sender.send(Note { index }).await.expect("send");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Cut off for longer than the peer timeout: the sender leaves the list.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(receiver.peers().is_empty(), "{:?}", receiver.peers());
    assert!(
        peers.has_changed().expect("the node runs"),
        "told of the leave"
    );
    cut.store(false, Ordering::SeqCst);
    // The sender goes quiet: its heartbeat says what the receiver missed.
    until("the receiver caught up", Duration::from_secs(60), || {
        log.len() >= 30
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(by_sender(&log)["sender"], (0..30).collect::<Vec<_>>());
    let stats = receiver.stats();
    assert_eq!(stats.lost, 0, "{stats:#?}");
    assert_eq!(stats.repaired, 25, "{stats:#?}");
    assert_eq!(receiver.peers().len(), 1, "back in the list");
    // The sender posted each missing envelope once (one receiver asked).
    assert_eq!(sender.stats().resent, 25, "{:#?}", sender.stats());
    sender.shutdown().await.expect("shutdown");
    receiver.shutdown().await.expect("shutdown");
}

#[tokio::test(start_paused = true)]
async fn a_sender_restarted_while_a_receiver_was_cut_off_counts_the_lost_range() {
    let room = LossyRoom::new();
    let cut = Arc::new(AtomicBool::new(false));
    let start = |name: &str, seed: u64, cut: Arc<AtomicBool>| {
        repairing(Node::builder(name).transport(room.join("smokey", 0, seed, cut))).start()
    };
    let first = start("sender", 1, Arc::default()).await.expect("start");
    let witness = start("witness", 2, Arc::default()).await.expect("start");
    let receiver = start("receiver", 3, cut.clone()).await.expect("start");
    let log = record(&receiver);
    let witnessed = record(&witness);
    until_peers(&[receiver.clone(), witness.clone()], 2).await;
    for index in 0..5 {
        first.send(Note { index }).await.expect("send");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    cut.store(true, Ordering::SeqCst);
    // Sent while the receiver is cut off, then the sender dies: nobody can
    // post 5..12 again.
    for index in 5..12 {
        first.send(Note { index }).await.expect("send");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    first.shutdown().await.expect("shutdown");
    let second = start("sender", 4, Arc::default()).await.expect("restart");
    for index in 100..104 {
        second.send(Note { index }).await.expect("send");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    cut.store(false, Ordering::SeqCst);
    for index in 104..110 {
        second.send(Note { index }).await.expect("send");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    until(
        "the receiver ran the new session's notes",
        Duration::from_secs(60),
        || log.len() >= 5 + 10,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let expected: Vec<u64> = (0..5).chain(100..110).collect();
    assert_eq!(
        by_sender(&log)["sender"],
        expected,
        "the restarted session from its first note"
    );
    let stats = receiver.stats();
    assert_eq!(stats.lost, 7, "5..12 of the first session: {stats:#?}");
    assert_eq!(stats.repaired, 4, "100..104 of the second: {stats:#?}");
    // The restarted instance replaced its entry in the peer list.
    let senders: Vec<_> = receiver
        .peers()
        .into_iter()
        .filter(|p| p.instance() == "sender")
        .collect();
    assert_eq!(senders.len(), 1, "{senders:?}");
    assert_eq!(senders[0].session(), second.session());
    let all: Vec<u64> = (0..12).chain(100..110).collect();
    assert_eq!(by_sender(&witnessed)["sender"], all);
    assert_eq!(witness.stats().lost, 0);
    for node in [second, witness, receiver] {
        node.shutdown().await.expect("shutdown");
    }
}

/// A frame of `body` (JSON) as a node posts it.
fn frame(body: &str) -> String {
    common::json_frame(body)
}

#[tokio::test(start_paused = true)]
async fn forged_untrusted_and_absurd_requests_are_refused_and_counted() {
    let chat = LocalChat::new();
    let node = repairing(
        Node::builder("target")
            .transport(chat.join("smokey"))
            .trust("smokey"),
    )
    .start()
    .await
    .expect("start");
    for index in 0..3 {
        node.send(Note { index }).await.expect("send");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let sid = node.session();
    let before = node.stats();
    // Untrusted: dropped unread.
    chat.say(
        "mallory",
        &frame(&format!(
            r#"{{"_from":"evil","_sid":1,"_hb":0,"_rq":[["target",{sid},0,3]]}}"#
        )),
    );
    // A range of millions, envelopes never posted, a reversed range, and a
    // list that is not one: refused.
    for request in [
        format!(r#"[["target",{sid},0,5000000]]"#),
        format!(r#"[["target",{sid},0,50]]"#),
        format!(r#"[["target",{sid},3,1]]"#),
        r#"{"not":"a list"}"#.to_owned(),
    ] {
        chat.say(
            "smokey",
            &frame(&format!(
                r#"{{"_from":"evil","_sid":1,"_hb":0,"_rq":{request}}}"#
            )),
        );
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let stats = node.stats();
    assert_eq!(stats.untrusted, before.untrusted + 1);
    assert_eq!(
        stats.repairs_refused,
        before.repairs_refused + 4,
        "{stats:#?}"
    );
    assert_eq!(stats.resent, 0);
    // The node posted nothing but heartbeats meanwhile.
    assert_eq!(
        stats.posts - before.posts,
        stats.heartbeats - before.heartbeats
    );
    node.shutdown().await.expect("shutdown");

    // With a secret: a request signed with another one is refused as forged.
    let chat = LocalChat::new();
    let node = repairing(
        Node::builder("target")
            .transport(chat.join("smokey"))
            .secret("fleet secret"),
    )
    .start()
    .await
    .expect("start");
    node.send(Note { index: 0 }).await.expect("send");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let sid = node.session();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let zeros = "A".repeat(43) + "=";
    chat.say(
        "smokey",
        &frame(&format!(
            r#"{{"_from":"evil","_sid":1,"_hb":0,"_rq":[["target",{sid},0,1]],"_ts":{now},"_sig":"{zeros}"}}"#
        )),
    );
    chat.say(
        "smokey",
        &frame(&format!(
            r#"{{"_from":"evil","_sid":1,"_hb":0,"_rq":[["target",{sid},0,1]]}}"#
        )),
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let stats = node.stats();
    assert_eq!(stats.bad_signature, 1, "{stats:#?}");
    assert_eq!(stats.unsigned, 1, "{stats:#?}");
    assert_eq!(stats.resent, 0);
    node.shutdown().await.expect("shutdown");
}

/// Many receivers asking for one range at once make the sender post it
/// once: a request window is per envelope, however many ask.
#[tokio::test(start_paused = true)]
async fn many_askers_one_repost() {
    let chat = LocalChat::new();
    let node = repairing(Node::builder("target").transport(chat.join("smokey")))
        .start()
        .await
        .expect("start");
    for index in 0..4 {
        node.send(Note { index }).await.expect("send");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let sid = node.session();
    for asker in 0..10 {
        chat.say(
            "smokey",
            &frame(&format!(
                r#"{{"_from":"asker{asker}","_sid":{asker},"_hb":0,"_rq":[["target",{sid},0,4]]}}"#
            )),
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = node.stats();
    assert_eq!(stats.resent, 4, "{stats:#?}");
    assert_eq!(stats.repairs_refused, 0);
    node.shutdown().await.expect("shutdown");
}

/// Issue 18: posts of many envelopes, deflated, lost on the way: the
/// receiver asks for the envelopes it missed, one by one, and runs
/// everything once in order (the post's envelopes are a range of sequence
/// numbers; repair stays per envelope). Signed JSON and MessagePack.
#[tokio::test(start_paused = true)]
async fn deflated_posts_lost_on_the_way_are_repaired_envelope_by_envelope() {
    for (codec, secret) in [
        (Codec::Json, Some("fleet secret")),
        (Codec::MessagePack, None),
    ] {
        const NOTES: u64 = 900;
        let room = LossyRoom::new();
        let (sender, receiver) =
            sender_and_receiver(&room, (30, 7, Arc::default()), codec, secret).await;
        let log = record(&receiver);
        until_peers(std::slice::from_ref(&receiver), 1).await;
        // Bursts: the transport finds them queued and groups them. 300
        // notes are about 6 KB of JSON, twice what a post of this chat
        // carries: one post each only deflated.
        for burst in 0..3 {
            for index in burst * NOTES / 3..(burst + 1) * NOTES / 3 {
                sender.try_send(Note { index }).expect("queued");
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        until(
            "the receiver ran every note",
            Duration::from_secs(300),
            || log.len() as u64 >= NOTES,
        )
        .await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            by_sender(&log)["sender"],
            (0..NOTES).collect::<Vec<_>>(),
            "{codec}"
        );
        let (sent, got) = (sender.stats(), receiver.stats());
        let data_posts = sent.posts - sent.heartbeats - sent.repair_posts;
        assert!(
            data_posts <= 4,
            "{codec}: {data_posts} posts of data: {sent:#?}"
        );
        assert_eq!(got.lost, 0, "{codec}: {got:#?}");
        assert!(got.repaired > 0, "{codec}: nothing repaired: {got:#?}");
        assert_eq!(
            got.rejected() - got.duplicates - got.replayed,
            0,
            "{codec}: {got:#?}"
        );
        println!(
            "REPORT {codec}: {NOTES} notes in {data_posts} posts of data; receiver lost 30 % of \
             posts, {} envelopes repaired, {} repair posts by the sender",
            got.repaired, sent.repair_posts
        );
        sender.shutdown().await.expect("shutdown");
        receiver.shutdown().await.expect("shutdown");
    }
}

/// Posts of a stopped instance posted again by someone else (a replay, or
/// a chat that delivers old posts twice) within the clock skew that
/// signatures allow: its heartbeats and envelopes are counted as replayed,
/// and it leaves the peer list when its timeout passes, as if nobody had
/// posted them.
#[tokio::test(start_paused = true)]
async fn replayed_posts_of_a_stopped_instance_do_not_keep_it_listed() {
    let chat = LocalChat::new();
    let mut seen = chat.watch();
    let secret = "fleet secret";
    let henders = repairing(
        Node::builder("Henders/EC2")
            .transport(chat.join("henders"))
            .trust("henders")
            .trust("teward")
            .secret(secret),
    )
    .start()
    .await
    .expect("start");
    let teward = repairing(
        Node::builder("teward/vps")
            .transport(chat.join("teward"))
            .trust("henders")
            .trust("teward")
            .secret(secret)
            .peer_timeout(Duration::from_secs(3)),
    )
    .start()
    .await
    .expect("start");
    let record = record(&teward);
    henders.send(Note { index: 0 }).await.expect("send");
    until_peers(&[henders.clone(), teward.clone()], 1).await;
    // Two heartbeats more, after the envelope.
    tokio::time::sleep(Duration::from_secs(3)).await;
    henders.shutdown().await.expect("shutdown");
    let mut captured = Vec::new();
    while let Ok(message) = seen.try_recv() {
        if &*message.account == "henders" {
            captured.push(message.text.to_string());
        }
    }
    assert!(captured.len() >= 3, "{captured:?}");
    let before = teward.stats();
    // Everything Henders posted, again, every half second, for longer than
    // the peer timeout.
    for _ in 0..16 {
        for text in &captured {
            chat.say("henders", text);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let stats = teward.stats();
    assert!(
        teward.peers().iter().all(|p| p.instance() != "Henders/EC2"),
        "a stopped instance is still listed: {:?}",
        teward.peers()
    );
    assert!(stats.replayed - before.replayed >= 16, "{stats:#?}");
    assert_eq!(record.items(), vec![("Henders/EC2".to_owned(), 0)]);
    assert_eq!(stats.dispatched, 1);
    teward.shutdown().await.expect("shutdown");
}

/// Without an attacker, repair keeps up with a fast stream: three nodes
/// each sending 200 notes a second for 10 s through a room that loses 2 %
/// of each member's deliveries run every note once, in order, and count
/// nothing lost. Prints the posts spent on repair.
#[tokio::test(start_paused = true)]
async fn a_fast_stream_through_a_lossy_room_loses_nothing() {
    const NODES: usize = 3;
    const NOTES: u64 = 2_000;
    let room = LossyRoom::new();
    let mut nodes = Vec::new();
    let mut logs = Vec::new();
    for i in 0..NODES {
        let member = room.join("smokey", 2, 11 + i as u64, Arc::default());
        let node = Node::builder(format!("node{i}"))
            .transport(member)
            .default_node(false)
            .start()
            .await
            .expect("start");
        logs.push(record(&node));
        nodes.push(node);
    }
    for index in 0..NOTES {
        for node in &nodes {
            node.send(Note { index }).await.expect("send");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let expected = NODES * NOTES as usize;
    until(
        "every node ran every note",
        Duration::from_secs(300),
        || logs.iter().all(|log| log.len() >= expected),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let mut repair_posts = 0;
    let mut posts = 0;
    for (node, log) in nodes.iter().zip(&logs) {
        for (from, indices) in by_sender(log) {
            assert_eq!(
                indices,
                (0..NOTES).collect::<Vec<_>>(),
                "{} ran {from}'s notes out of order or not exactly once",
                node.name()
            );
        }
        let stats = node.stats();
        assert_eq!(stats.lost, 0, "{}: {stats:#?}", node.name());
        repair_posts += stats.repair_posts;
        posts += stats.posts;
    }
    println!(
        "REPORT fast lossy stream: {NODES} nodes x {NOTES} notes at 200/s, 2% of deliveries \
         lost: {posts} posts, {repair_posts} of them on repair"
    );
    for node in &nodes {
        node.shutdown().await.expect("shutdown");
    }
}
