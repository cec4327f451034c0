//! `MatrixChat` against a real Synapse (PyPI's `matrix-synapse`, see
//! tests/common/synapse.rs), users registered through its shared-secret
//! registration, one room per test: delivery exactly once among three
//! nodes, trust by user id pattern, coalescing under Synapse's message
//! rate limit, a homeserver killed and restarted mid-stream, a node
//! restarted from its state file, a gap past the backfill bound (counted
//! after a restart, repaired after a cut), a 100 KB
//! envelope, a token that stops working, connect's errors, and
//! `Node::wait_for_peers` finding the fleet.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::synapse::{Options, Synapse};
use socketscience::matrix::MatrixError;
use socketscience::{message, Context, Error, MatrixChat, Node, NodeBuilder};

#[message("matrix_test_beverage")]
#[derive(Debug, Clone, PartialEq)]
pub struct Beverage {
    pub index: u64,
    pub text: String,
}

fn beverage(index: u64) -> Beverage {
    Beverage {
        index,
        text: format!("coffee {index}"),
    }
}

/// What one node dispatched: (sender instance, beverage).
type Seen = Arc<Mutex<Vec<(String, Beverage)>>>;

struct Member {
    node: Node,
    seen: Seen,
}

const ROOM: &str = "#fleet:localhost";

/// A Synapse with an admin and the room `#fleet:localhost`.
async fn homeserver(options: Options) -> Synapse {
    let synapse = Synapse::start(options).await;
    let admin = synapse.register("admin", "admin-password", true).await;
    synapse.create_room(&admin, "fleet").await;
    synapse
}

fn password(user: &str) -> String {
    format!("{user}-password")
}

/// A registered user's chat, with short reconnect delays.
async fn chat(synapse: &Synapse, user: &str) -> socketscience::matrix::MatrixChatBuilder {
    synapse.register(user, &password(user), false).await;
    builder(synapse, user)
}

/// The chat of an already registered user.
fn builder(synapse: &Synapse, user: &str) -> socketscience::matrix::MatrixChatBuilder {
    builder_at(&synapse.url(), user)
}

/// The chat of an already registered user, through the homeserver URL `url`.
fn builder_at(url: &str, user: &str) -> socketscience::matrix::MatrixChatBuilder {
    MatrixChat::builder(url, ROOM)
        .credentials(user, password(user))
        .reconnect_delay(Duration::from_millis(100))
        .sync_wait(Duration::from_secs(5))
}

async fn member(chat: socketscience::matrix::MatrixChatBuilder, name: &str) -> Member {
    member_with(chat, name, |node| node).await
}

/// A member whose node is set up further by `configure`.
async fn member_with(
    chat: socketscience::matrix::MatrixChatBuilder,
    name: &str,
    configure: impl FnOnce(NodeBuilder) -> NodeBuilder,
) -> Member {
    let chat = chat.connect().await.expect("connect to Synapse");
    let node = configure(
        Node::builder(name)
            .transport(chat)
            .trust("@smokey-*:localhost")
            .default_node(false),
    )
    .start()
    .await
    .expect("start the node");
    let seen: Seen = Arc::default();
    node.register({
        let seen = seen.clone();
        move |b: Beverage, cx: Context| {
            let from = cx.sender().instance().unwrap_or("?").to_owned();
            seen.lock().unwrap().push((from, b));
        }
    });
    Member { node, seen }
}

/// Polls `condition` every 20 ms for up to `within`.
async fn wait_until(within: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The indices dispatched from each sender, in dispatch order.
fn by_sender(seen: &Seen) -> BTreeMap<String, Vec<u64>> {
    let mut map: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (from, b) in seen.lock().unwrap().iter() {
        map.entry(from.clone()).or_default().push(b.index);
    }
    map
}

fn count(seen: &Seen) -> usize {
    seen.lock().unwrap().len()
}

/// The `MatrixError` inside a transport error.
fn matrix_error(e: &Error) -> &MatrixError {
    match e {
        Error::Transport(inner) => inner
            .downcast_ref::<MatrixError>()
            .unwrap_or_else(|| panic!("not a MatrixError: {e}")),
        other => panic!("not a transport error: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_dispatch_each_others_beverages_exactly_once() {
    let synapse = homeserver(Options::default()).await;
    let names = ["Henders/EC2", "teward/vps", "Undo/pi"];
    let mut members = Vec::new();
    for (user, name) in ["smokey-henders", "smokey-teward", "smokey-undo"]
        .into_iter()
        .zip(names)
    {
        members.push(member(chat(&synapse, user).await, name).await);
    }
    assert_eq!(members[0].node.account(), "@smokey-henders:localhost");
    for i in 0..5 {
        for m in &members {
            m.node.send(beverage(i)).await.unwrap();
        }
    }
    for m in &members {
        wait_until(Duration::from_secs(60), "15 beverages on each node", || {
            count(&m.seen) >= 15
        })
        .await;
    }
    // Let any stray duplicate arrive before counting.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    for m in &members {
        let expected: BTreeMap<String, Vec<u64>> = names
            .iter()
            .map(|n| (n.to_string(), (0..5).collect()))
            .collect();
        assert_eq!(by_sender(&m.seen), expected, "on {}", m.node.name());
        let stats = m.node.stats();
        assert_eq!(
            (
                stats.untrusted,
                stats.duplicates,
                stats.malformed,
                stats.history_gaps
            ),
            (0, 0, 0, 0),
            "{stats:?}"
        );
        // Synapse sends a client its own events: recognised, not run twice.
        assert!(stats.own_echoes >= 1, "{stats:?}");
    }
    for m in &members {
        m.node.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_peers_resolves_once_the_others_are_heard() {
    let synapse = homeserver(Options::default()).await;
    // Default heartbeat (30 s): the fleet finds itself without waiting for
    // a heartbeat interval.
    let a = member(chat(&synapse, "smokey-henders").await, "Henders/EC2").await;
    let err = a
        .node
        .wait_for_peers(1, Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::PeersNotHeard { wanted: 1, heard, .. } if heard.is_empty()),
        "{err}"
    );
    let b = member(chat(&synapse, "smokey-teward").await, "teward/vps").await;
    let c = member(chat(&synapse, "smokey-undo").await, "Undo/pi").await;
    let names = ["Henders/EC2", "Undo/pi", "teward/vps"];
    for m in [&a, &b, &c] {
        let peers = tokio::time::timeout(
            Duration::from_secs(90),
            m.node.wait_for_peers(2, Duration::from_secs(60)),
        )
        .await
        .expect("guard")
        .unwrap_or_else(|e| panic!("{}: {e}", m.node.name()));
        let mut heard: Vec<&str> = peers.iter().map(|p| p.instance()).collect();
        heard.sort_unstable();
        let others: Vec<&str> = names.into_iter().filter(|n| *n != m.node.name()).collect();
        assert_eq!(heard, others, "on {}", m.node.name());
    }
    for m in [a, b, c] {
        m.node.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_not_trusted_is_ignored_and_counted() {
    let synapse = homeserver(Options::default()).await;
    let henders = member(chat(&synapse, "smokey-henders").await, "Henders/EC2").await;
    // Its own node trusts itself; the fleet does not trust it.
    let mallory = member(chat(&synapse, "mallory").await, "mallory").await;
    assert_eq!(mallory.node.account(), "@mallory:localhost");
    mallory.node.send(beverage(66)).await.unwrap();
    henders.node.send(beverage(1)).await.unwrap();
    wait_until(Duration::from_secs(60), "mallory's post counted", || {
        henders.node.stats().untrusted >= 1
    })
    .await;
    wait_until(
        Duration::from_secs(60),
        "henders's beverage on mallory",
        || mallory.node.stats().untrusted >= 1,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        by_sender(&henders.seen),
        BTreeMap::from([("Henders/EC2".to_owned(), vec![1])])
    );
    assert_eq!(henders.node.stats().untrusted, 1);
    henders.node.shutdown().await.unwrap();
    mallory.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_synapses_message_rate_limit_100_envelopes_share_few_posts() {
    // Two messages a second after a burst of three.
    let synapse = homeserver(Options {
        rc_message: Some((2.0, 3)),
    })
    .await;
    let sender = member(chat(&synapse, "smokey-henders").await, "Henders/EC2").await;
    let b = member(chat(&synapse, "smokey-teward").await, "teward/vps").await;
    let c = member(chat(&synapse, "smokey-undo").await, "Undo/pi").await;
    // One every 20 ms: an idle transport would post each at once.
    for i in 0..100 {
        sender.node.send(beverage(i)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for m in [&b, &c] {
        wait_until(Duration::from_secs(120), "100 beverages", || {
            count(&m.seen) >= 100
        })
        .await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for m in [&sender, &b, &c] {
        assert_eq!(
            by_sender(&m.seen),
            BTreeMap::from([("Henders/EC2".to_owned(), (0..100).collect())]),
            "on {}",
            m.node.name()
        );
    }
    let posts = sender.node.stats().posts;
    println!("100 envelopes under rc_message 2/s (burst 3) took {posts} posts");
    assert!(posts <= 30, "{posts} posts for 100 envelopes");
    for m in [sender, b, c] {
        m.node.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synapse_killed_and_restarted_mid_stream_loses_and_doubles_nothing() {
    let mut synapse = homeserver(Options::default()).await;
    let a = member(chat(&synapse, "smokey-henders").await, "Henders/EC2").await;
    let b = member(chat(&synapse, "smokey-teward").await, "teward/vps").await;
    let c = member(chat(&synapse, "smokey-undo").await, "Undo/pi").await;
    for i in 0..30 {
        if i == 10 {
            synapse.kill();
        }
        if i == 20 {
            synapse.restart().await;
        }
        a.node.send(beverage(i)).await.unwrap();
        b.node.send(beverage(i)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    for m in [&a, &b, &c] {
        wait_until(
            Duration::from_secs(120),
            "60 beverages on each node",
            || count(&m.seen) >= 60,
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    for m in [&a, &b, &c] {
        let expected = BTreeMap::from([
            ("Henders/EC2".to_owned(), (0..30).collect::<Vec<_>>()),
            ("teward/vps".to_owned(), (0..30).collect()),
        ]);
        assert_eq!(by_sender(&m.seen), expected, "on {}", m.node.name());
        let stats = m.node.stats();
        // No post reached the room twice.
        assert_eq!((stats.duplicates, stats.malformed), (0, 0), "{stats:?}");
    }
    for m in [a, b, c] {
        m.node.shutdown().await.unwrap();
    }
}

/// Sends beverages `range` from `from`, one post each: each waits until
/// `witness` has it.
async fn send_one_by_one(from: &Member, witness: &Member, range: std::ops::RangeInclusive<u64>) {
    for i in range {
        let before = count(&witness.seen);
        from.node.send(beverage(i)).await.unwrap();
        wait_until(Duration::from_secs(30), "the witness to see it", || {
            count(&witness.seen) > before
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_with_its_state_file_dispatches_what_was_posted_while_it_was_down() {
    let synapse = homeserver(Options::default()).await;
    let state = synapse.path("undo-state.json");
    let a = member(chat(&synapse, "smokey-henders").await, "Henders/EC2").await;
    let b = member(chat(&synapse, "smokey-teward").await, "teward/vps").await;
    // A small sync timeline: the ten posts while it is down make a gap,
    // read back from the room's history.
    let undo = |s: &Synapse| {
        builder(s, "smokey-undo")
            .state_file(&state)
            .timeline_limit(3)
    };
    synapse
        .register("smokey-undo", &password("smokey-undo"), false)
        .await;
    let c = member(undo(&synapse), "Undo/pi").await;
    send_one_by_one(&a, &b, 0..=0).await;
    wait_until(Duration::from_secs(30), "beverage 0 on Undo", || {
        count(&c.seen) == 1
    })
    .await;
    // Its own last posts: handled when sent, not again after the restart
    // (it shuts down before its sync sees them).
    c.node.send(beverage(100)).await.unwrap();
    c.node.send(beverage(101)).await.unwrap();
    c.node.shutdown().await.unwrap();
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&state).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the state file is owner-only");
    }

    send_one_by_one(&a, &b, 1..=10).await;

    let c = member(undo(&synapse), "Undo/pi").await;
    wait_until(
        Duration::from_secs(60),
        "the ten beverages posted while down",
        || count(&c.seen) >= 10,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        by_sender(&c.seen),
        BTreeMap::from([("Henders/EC2".to_owned(), (1..=10).collect())])
    );
    assert_eq!(c.node.stats().history_gaps, 0);
    // It resumed on its device and token: no new login.
    let resumed: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(resumed["device_id"], saved["device_id"]);
    assert_eq!(resumed["access_token"], saved["access_token"]);
    for m in [a, b, c] {
        m.node.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_past_the_backfill_bound_is_counted() {
    let synapse = homeserver(Options::default()).await;
    let state = synapse.path("undo-state.json");
    let a = member(chat(&synapse, "smokey-henders").await, "Henders/EC2").await;
    let b = member(chat(&synapse, "smokey-teward").await, "teward/vps").await;
    synapse
        .register("smokey-undo", &password("smokey-undo"), false)
        .await;
    let undo = |s: &Synapse| {
        builder(s, "smokey-undo")
            .state_file(&state)
            .timeline_limit(2)
            .max_backfill(4)
    };
    let c = member(undo(&synapse), "Undo/pi").await;
    c.node.shutdown().await.unwrap();
    send_one_by_one(&a, &b, 1..=10).await;
    let c = member(undo(&synapse), "Undo/pi").await;
    wait_until(Duration::from_secs(60), "the gap counted", || {
        c.node.stats().history_gaps == 1
    })
    .await;
    // The sync's two and the four read back: the room's last six events
    // before this run (its own posts wait until they are read). Besides
    // beverages they may hold a heartbeat of `a` or `b` (their answers to
    // the first run's start), so at least the last four beverages.
    wait_until(Duration::from_secs(30), "the six events read back", || {
        let s = c.node.stats();
        s.received - s.own_echoes >= 6
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Older ones arrive only through the node's gap repair (when it knows
    // the sender's session ran past them), or one that Synapse's sync
    // cache may still hold (the first run's last long poll, answered after
    // it stopped, is answered again to the same request). In order, none
    // twice.
    let seen = by_sender(&c.seen);
    assert_eq!(seen.len(), 1, "{seen:?}");
    let indices = &seen["Henders/EC2"];
    assert!(indices.ends_with(&[7, 8, 9, 10]), "{indices:?}");
    let repaired = c.node.stats().repaired;
    assert!(
        indices.len() as u64 <= 7 + repaired && indices.windows(2).all(|w| w[0] < w[1]),
        "{indices:?}, repaired {repaired}"
    );
    for m in [a, b, c] {
        m.node.shutdown().await.unwrap();
    }
}

/// A node cut off from the homeserver (its own network, through a proxy)
/// while the others go on, longer than its sync and backfill read back:
/// the transport hands over what they read, and the node's gap repair the
/// rest. Every envelope runs once, in order; nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_cut_node_cannot_read_back_is_repaired() {
    let synapse = homeserver(Options::default()).await;
    let a = member(chat(&synapse, "smokey-henders").await, "Henders/EC2").await;
    let b = member(chat(&synapse, "smokey-teward").await, "teward/vps").await;
    let proxy = common::tcp_proxy::TcpProxy::start(synapse.url().trim_start_matches("http://"));
    synapse
        .register("smokey-undo", &password("smokey-undo"), false)
        .await;
    let c_chat = builder_at(&format!("http://{}", proxy.addr()), "smokey-undo")
        .sync_wait(Duration::from_secs(1))
        .timeline_limit(2)
        .max_backfill(4);
    let c = member_with(c_chat, "Undo/pi", |node| {
        node.repair_window(Duration::from_millis(300))
    })
    .await;

    // The receiver follows the sender's session before the cut.
    send_one_by_one(&a, &c, 1..=3).await;
    proxy.sever();
    // Ten envelopes while it is cut off: its sync gives back 2 and its
    // backfill 4 more.
    send_one_by_one(&a, &b, 4..=13).await;
    proxy.restore();
    wait_until(Duration::from_secs(60), "all thirteen beverages", || {
        count(&c.seen) >= 13
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let seen = by_sender(&c.seen);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        seen["Henders/EC2"],
        (1..=13).collect::<Vec<_>>(),
        "every envelope once, in order"
    );
    let stats = c.node.stats();
    assert_eq!(stats.lost, 0, "{stats:?}");
    assert!(
        stats.history_gaps >= 1,
        "the transport read back only part: {stats:?}"
    );
    // The transport hands over at most 2 (the sync) + 4 (the backfill) of
    // the ten, and perhaps 2 more from Synapse's cache of the long poll the
    // cut interrupted (answered again to the same request): 2 at least
    // come only through repair.
    assert!(stats.repaired >= 2, "repair covered the rest: {stats:?}");
    assert!(
        proxy.refused() + proxy.accepted() > 1,
        "it reconnected through the proxy"
    );
    for m in [a, b, c] {
        m.node.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_kb_envelope_arrives_intact() {
    let synapse = homeserver(Options::default()).await;
    let a = member(chat(&synapse, "smokey-henders").await, "Henders/EC2").await;
    let b = member(chat(&synapse, "smokey-teward").await, "teward/vps").await;
    // Varied text (not one repeated letter), 100 000 bytes.
    let text: String = (0..100_000u32)
        .map(|i| char::from(b'!' + ((i.wrapping_mul(2_654_435_761) >> 13) % 90) as u8))
        .collect();
    assert_eq!(text.len(), 100_000);
    let big = Beverage {
        index: 7,
        text: text.clone(),
    };
    a.node.send(big.clone()).await.unwrap();
    wait_until(Duration::from_secs(60), "the big beverage", || {
        count(&b.seen) == 1
    })
    .await;
    assert_eq!(b.seen.lock().unwrap()[0], ("Henders/EC2".to_owned(), big));
    let stats = b.node.stats();
    assert!(stats.chunks >= 2, "it came in chunks: {stats:?}");
    assert!(a.node.stats().posts >= 2);
    for m in [a, b] {
        m.node.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_logs_in_again_with_credentials_and_stops_without() {
    let synapse = homeserver(Options::default()).await;
    let state = synapse.path("henders-state.json");
    let a = member(
        chat(&synapse, "smokey-henders").await.state_file(&state),
        "Henders/EC2",
    )
    .await;
    let b = member(chat(&synapse, "smokey-teward").await, "teward/vps").await;
    let token = |path: &std::path::Path| -> String {
        let saved: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        saved["access_token"].as_str().unwrap().to_owned()
    };
    let old = token(&state);
    synapse.log_out(&old).await;
    a.node.send(beverage(1)).await.unwrap();
    wait_until(
        Duration::from_secs(60),
        "the beverage after a new login",
        || count(&b.seen) == 1,
    )
    .await;
    assert_ne!(token(&state), old, "the new token is saved");

    // Without credentials the transport stops and says why.
    let c_token = synapse
        .register("smokey-undo", "undo-password", false)
        .await;
    let chat = MatrixChat::builder(synapse.url(), ROOM)
        .access_token(&c_token)
        .reconnect_delay(Duration::from_millis(100))
        .sync_wait(Duration::from_secs(1));
    let c = member(chat, "Undo/pi").await;
    synapse.log_out(&c_token).await;
    c.node.send(beverage(2)).await.unwrap();
    let error = c.node.shutdown().await.unwrap_err();
    assert!(
        matches!(matrix_error(&error), MatrixError::TokenRefused { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("no credentials"), "{error}");
    for m in [a, b] {
        m.node.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_says_which_of_password_room_and_server_is_wrong() {
    let synapse = homeserver(Options::default()).await;
    synapse.register("smokey-henders", "right", false).await;

    let e = MatrixChat::builder(synapse.url(), ROOM)
        .credentials("smokey-henders", "wrong")
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(matrix_error(&e), MatrixError::Login { .. }), "{e}");
    assert!(e.to_string().contains("wrong user name or password"), "{e}");

    let e = MatrixChat::builder(synapse.url(), "#nosuch:localhost")
        .credentials("smokey-henders", "right")
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(matrix_error(&e), MatrixError::Room { .. }), "{e}");
    assert!(e.to_string().contains("#nosuch:localhost"), "{e}");
    assert!(e.to_string().contains("no such room"), "{e}");

    let e = MatrixChat::builder(synapse.url(), "!nosuchroom:localhost")
        .credentials("smokey-henders", "right")
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(matrix_error(&e), MatrixError::Room { .. }), "{e}");
    assert!(e.to_string().contains("!nosuchroom:localhost"), "{e}");

    // Nothing listens on a port just freed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = MatrixChat::builder(format!("http://127.0.0.1:{port}"), ROOM)
        .credentials("smokey-henders", "right")
        .connect()
        .await
        .unwrap_err();
    assert!(
        matches!(matrix_error(&e), MatrixError::Unreachable { .. }),
        "{e}"
    );
    assert!(
        e.to_string().contains("cannot reach the Matrix homeserver"),
        "{e}"
    );

    // And the right ones connect.
    let chat = MatrixChat::builder(synapse.url(), ROOM)
        .credentials("smokey-henders", "right")
        .connect()
        .await
        .unwrap();
    assert_eq!(chat.user_id(), "@smokey-henders:localhost");
    assert!(chat.room_id().starts_with('!'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_while_synapse_is_down_returns_saying_how_many_were_not_posted() {
    let mut synapse = homeserver(Options::default()).await;
    let a = member_with(chat(&synapse, "smokey-henders").await, "Henders/EC2", |b| {
        b.shutdown_timeout(Duration::from_secs(3))
    })
    .await;
    a.node.send(beverage(0)).await.unwrap();
    wait_until(Duration::from_secs(60), "the first post", || {
        count(&a.seen) >= 1
    })
    .await;
    wait_until(Duration::from_secs(60), "the first post out", || {
        a.node.stats().posts >= 1
    })
    .await;
    synapse.kill();
    for i in 1..4 {
        a.node.send(beverage(i)).await.unwrap();
    }
    // A guard only: it must return at all.
    let err = tokio::time::timeout(Duration::from_secs(60), a.node.shutdown())
        .await
        .expect("shutdown returned")
        .expect_err("three beverages were not posted");
    let Error::Unposted { unposted, .. } = err else {
        panic!("{err}");
    };
    // The three sent while Synapse was down (and the first, were its post
    // still retrying when the server went).
    assert!((3..=4).contains(&unposted), "{unposted}");
    assert_eq!(a.node.stats().unposted, unposted);
}
