//! The first hour of a new user (issue 31): a trust mistake speaks up at
//! once, on LocalChat and on a real IRC daemon (ngIRCd); a fleet can wait
//! for itself (LocalChat, IRC; Matrix: tests/matrix.rs); handlers reach
//! their node's state; and errors out of `main` print what to do.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::irc_server::IrcServer;
use common::LogCapture as Log;
use socketscience::{message, Context, Error, Failover, IrcChat, LocalChat, Node};

#[tokio::test(flavor = "current_thread")]
async fn three_nodes_without_trust_warn_naming_the_account_and_the_pattern() {
    let (log, _guard) = Log::capture(tracing::Level::WARN);
    let chat = LocalChat::new();
    let mut nodes = Vec::new();
    for i in 1..=3 {
        nodes.push(
            Node::builder(format!("C{i}"))
                .transport(chat.join(format!("smokey-c{i}")))
                .heartbeat(Duration::from_millis(200))
                .failover(Failover::new())
                .default_node(false)
                .start()
                .await
                .unwrap(),
        );
    }
    // The warning comes with the first envelope.
    wait_until("the warnings", &log, || {
        let text = log.text();
        text.contains("smokey-c2") && text.contains("only election traffic")
    })
    .await;
    assert_c1_named_c2(&log.text());
    // Once per account: more heartbeats, no more warnings about it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_c1_warned_once_about_c2(&log.text(), &nodes[0]);
    let accounts = nodes[0].untrusted_accounts();
    let c2 = accounts.iter().find(|a| a.account == "smokey-c2").unwrap();
    assert!(c2.envelopes >= 2, "{accounts:?}");
    for node in nodes {
        node.shutdown().await.unwrap();
    }
}

/// C1's WARN about `smokey-c2` names the account, the instance it claims
/// and the `.trust(..)` that admits it.
fn assert_c1_named_c2(text: &str) {
    let line = text
        .lines()
        .find(|l| l.contains("node=C1") && l.contains("account `smokey-c2`"))
        .unwrap_or_else(|| panic!("a WARN of C1 naming smokey-c2: {text}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("instance `C2`"), "{line}");
    assert!(line.contains(".trust(\"smokey-c*\")"), "{line}");
}

/// C1 warned once about `smokey-c2` however many envelopes it ignored,
/// and lists the account with the instance it claimed (not its own).
fn assert_c1_warned_once_about_c2(text: &str, c1: &Node) {
    assert_eq!(
        text.lines()
            .filter(|l| l.contains("node=C1")
                && l.contains("ignored an envelope from chat account `smokey-c2`"))
            .count(),
        1,
        "{text}"
    );
    let accounts = c1.untrusted_accounts();
    let c2 = accounts.iter().find(|a| a.account == "smokey-c2").unwrap();
    assert_eq!(c2.instance.as_deref(), Some("C2"));
    assert!(!accounts.iter().any(|a| a.account == "smokey-c1"));
}

/// Waits (a generous guard, not a timed assertion) until `done` holds.
async fn wait_until(what: &str, log: &Log, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; the log: {}",
            log.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn three_nodes_without_trust_on_irc_warn_naming_the_account_and_the_pattern() {
    let (log, _guard) = Log::capture(tracing::Level::WARN);
    let server = IrcServer::start();
    let mut nodes = Vec::new();
    for i in 1..=3 {
        // The IRC row of guide::coordination's "How fast", and no `.trust(..)`.
        let chat =
            IrcChat::new(server.addr(), format!("smokey-c{i}"), "#first-hour").send_rate(2.0, 5);
        nodes.push(
            Node::builder(format!("C{i}"))
                .transport(chat)
                .heartbeat(Duration::from_secs(1))
                .failover(Failover::new().lease(Duration::from_secs(4)))
                .default_node(false)
                .start()
                .await
                .unwrap(),
        );
    }
    // At start: an IRC node without `.trust(..)` says what it will miss.
    let text = log.text();
    let start = text
        .lines()
        .find(|l| l.contains("node=C1") && l.contains("no `.trust(..)` was given"))
        .unwrap_or_else(|| panic!("C1 warns at start: {text}"));
    assert!(start.contains("WARN"), "{start}");
    assert!(start.contains("`smokey-c1`"), "{start}");

    // The first envelope from another instance's nick: counted for that
    // account, and by then (the same call) the WARN naming the account,
    // the instance it claims and the pattern is in the log, not a summary
    // ten seconds later.
    wait_until("C1 to hear smokey-c2", &log, || {
        nodes[0]
            .untrusted_accounts()
            .iter()
            .any(|a| a.account == "smokey-c2")
    })
    .await;
    let text = log.text();
    assert_c1_named_c2(&text);
    assert!(!text.contains("dropped from the room"), "{text}");
    // Every node hears the others' heartbeats, elections among them, as
    // untrusted: each says that failover hears only untrusted elections.
    wait_until("each node to warn about the election traffic", &log, || {
        let text = log.text();
        (1..=3).all(|i| {
            text.lines()
                .any(|l| l.contains(&format!("node=C{i}")) && l.contains("only election traffic"))
        })
    })
    .await;
    // Once per account: later heartbeats add no warning about it.
    wait_until("C1 to count more envelopes from smokey-c2", &log, || {
        nodes[0]
            .untrusted_accounts()
            .iter()
            .any(|a| a.account == "smokey-c2" && a.envelopes >= 3)
    })
    .await;
    assert_c1_warned_once_about_c2(&log.text(), &nodes[0]);
    for node in nodes {
        node.shutdown().await.unwrap();
    }
}

#[message("first_hour_hello")]
pub struct Hello(pub String);

#[tokio::test(flavor = "current_thread")]
async fn wait_for_peers_resolves_once_the_others_are_heard_and_says_who_on_timeout() {
    let chat = LocalChat::new();
    let start = |name: &'static str| {
        Node::builder(name)
            .transport(chat.join("smokey"))
            .default_node(false)
            .start()
    };
    // Default heartbeat (30 s): the fleet finds itself without waiting it.
    let a = start("A").await.unwrap();
    let err = a
        .wait_for_peers(1, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(&err, Error::PeersNotHeard { wanted: 1, heard, .. } if heard.is_empty()));
    assert!(err.to_string().contains("heard 0 other"), "{err}");
    let b = start("B").await.unwrap();
    let c = start("C").await.unwrap();
    for node in [&a, &b, &c] {
        let peers = tokio::time::timeout(
            Duration::from_secs(20),
            node.wait_for_peers(2, Duration::from_secs(15)),
        )
        .await
        .expect("guard")
        .unwrap_or_else(|e| panic!("{}: {e}", node.name()));
        assert_eq!(peers.len(), 2);
    }
    for node in [a, b, c] {
        node.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "current_thread")]
async fn wait_for_peers_on_irc_resolves_once_the_others_are_heard() {
    let server = IrcServer::start();
    let start = |nick: &'static str| {
        Node::builder(nick.trim_start_matches("smokey-"))
            .transport(IrcChat::new(server.addr(), nick, "#peers"))
            .trust("smokey-*")
            .default_node(false)
            .start()
    };
    // Default heartbeat (30 s) and send rate: the fleet finds itself
    // without waiting a heartbeat interval.
    let a = start("smokey-a").await.unwrap();
    let err = a
        .wait_for_peers(1, Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(matches!(&err, Error::PeersNotHeard { wanted: 1, heard, .. } if heard.is_empty()));
    let b = start("smokey-b").await.unwrap();
    let c = start("smokey-c").await.unwrap();
    for node in [&a, &b, &c] {
        let peers = tokio::time::timeout(
            Duration::from_secs(60),
            node.wait_for_peers(2, Duration::from_secs(25)),
        )
        .await
        .expect("guard")
        .unwrap_or_else(|e| panic!("{}: {e}", node.name()));
        let mut names: Vec<&str> = peers.iter().map(|p| p.instance()).collect();
        names.sort_unstable();
        let others: Vec<&str> = ["a", "b", "c"]
            .into_iter()
            .filter(|n| *n != node.name())
            .collect();
        assert_eq!(names, others, "{}", node.name());
    }
    for node in [a, b, c] {
        node.shutdown().await.unwrap();
    }
}

struct Greeting(&'static str);
struct Seen(Mutex<Vec<String>>);

#[tokio::test(flavor = "current_thread")]
async fn handlers_reach_the_node_state_sync_and_async() {
    let chat = LocalChat::new();
    let node = Node::builder("Henders/EC2")
        .transport(chat.join("smokey"))
        .state(Greeting("hi"))
        .state(Seen(Mutex::new(Vec::new())))
        .default_node(false)
        .start()
        .await
        .unwrap();
    node.register(|h: Hello, cx: Context| {
        let greeting = cx.state::<Greeting>().expect("given").0;
        let seen = cx.state::<Seen>().expect("given");
        seen.0
            .lock()
            .unwrap()
            .push(format!("sync {greeting} {}", h.0));
        assert!(cx.state::<u64>().is_none());
    });
    node.register(|h: Hello, cx: Context| async move {
        tokio::task::yield_now().await;
        let greeting = cx.state::<Greeting>().expect("given").0;
        let seen = cx.state::<Seen>().expect("given");
        seen.0
            .lock()
            .unwrap()
            .push(format!("async {greeting} {}", h.0));
    });
    node.send(Hello("there".into())).await.unwrap();
    node.shutdown().await.unwrap();
    let seen = node.state::<Seen>().unwrap().0.lock().unwrap().clone();
    assert_eq!(seen, ["sync hi there", "async hi there"]);
}

#[tokio::test(flavor = "current_thread")]
async fn errors_debug_as_their_display_text() {
    let chat = LocalChat::new();
    let node = Node::builder("C1")
        .transport(chat.join("smokey"))
        .default_node(false)
        .start()
        .await
        .unwrap();
    node.shutdown().await.unwrap();
    let err = node.send(Hello("late".into())).await.unwrap_err();
    assert_eq!(format!("{err:?}"), err.to_string());
    assert!(format!("{err:?}").contains("start a new node"), "{err:?}");
    // No transport: what `main() -> Result` prints says what to call.
    let err = Node::builder("x").start().await.unwrap_err();
    assert!(format!("{err:?}").contains(".transport("), "{err:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn register_active_needs_failover() {
    let chat = LocalChat::new();
    let node = Node::builder("alone")
        .transport(chat.join("smokey"))
        .default_node(false)
        .start()
        .await
        .unwrap();
    let err = node.register_active(|_: Hello| ()).unwrap_err();
    assert!(err.to_string().contains("Failover::new()"), "{err}");
    node.shutdown().await.unwrap();
}
