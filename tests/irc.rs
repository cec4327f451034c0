//! `IrcChat` against a real IRC daemon (ngIRCd, stock flood control), one
//! process, several nodes each on its own connection: delivery exactly
//! once, trust by nick pattern, a 20 KiB envelope in chunks at the default
//! send rate without the server throttling the bot off, a server password,
//! a daemon restart, a shutdown that says what it could not post, and
//! settings that cannot work refused at start.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::irc_server::{IrcServer, Options};
use socketscience::transport::IrcStatus;
use socketscience::{message, Context, Error, IrcChat, Node};

#[message("irc_test_note")]
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub index: u64,
    pub text: String,
}

/// What one node dispatched: (sender instance, note).
type Seen = Arc<Mutex<Vec<(String, Note)>>>;

struct Member {
    node: Node,
    status: IrcStatus,
    seen: Seen,
}

async fn member(chat: IrcChat, name: &str) -> Member {
    let status = chat.status();
    let node = Node::builder(name)
        .transport(chat)
        .trust("smokey-*")
        .default_node(false)
        .start()
        .await
        .expect("start the node");
    let seen: Seen = Arc::default();
    node.register({
        let seen = seen.clone();
        move |note: Note, cx: Context| {
            let from = cx.sender().instance().unwrap_or("?").to_owned();
            seen.lock().unwrap().push((from, note));
        }
    });
    Member { node, status, seen }
}

fn chat(server: &IrcServer, nick: &str) -> IrcChat {
    IrcChat::new(server.addr(), nick, "#smokey")
        .reconnect_backoff(Duration::from_millis(100), Duration::from_secs(1))
        .peer_wait(Duration::from_secs(20))
}

/// Polls `condition` every 10 ms for up to `within`.
async fn wait_until(within: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn indices_from(seen: &Seen, from: &str) -> Vec<u64> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|(f, _)| f == from)
        .map(|(_, n)| n.index)
        .collect()
}

fn note(index: u64) -> Note {
    Note {
        index,
        text: format!("note {index}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_their_own_connections_run_every_handler_once() {
    let server = IrcServer::start();
    let a = member(chat(&server, "smokey-henders"), "Henders/EC2").await;
    let b = member(chat(&server, "smokey-teward"), "teward/vps").await;
    assert!(
        a.status
            .wait_for_members(&["smokey-teward"], Duration::from_secs(20))
            .await
    );
    assert!(
        b.status
            .wait_for_members(&["smokey-henders"], Duration::from_secs(20))
            .await
    );

    for i in 0..5 {
        a.node.send(note(i)).await.unwrap();
        b.node.send(note(i)).await.unwrap();
    }
    for m in [&a, &b] {
        wait_until(Duration::from_secs(30), "10 notes on each node", || {
            m.seen.lock().unwrap().len() >= 10
        })
        .await;
    }
    // Let any stray duplicate arrive before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for m in [&a, &b] {
        assert_eq!(m.seen.lock().unwrap().len(), 10, "{:?}", m.seen);
        for from in ["Henders/EC2", "teward/vps"] {
            assert_eq!(
                indices_from(&m.seen, from),
                (0..5).collect::<Vec<_>>(),
                "{from} on {}",
                m.node.name()
            );
        }
        let stats = m.node.stats();
        assert_eq!(
            (stats.untrusted, stats.duplicates, stats.malformed),
            (0, 0, 0),
            "{stats:?}"
        );
        // ngIRCd does not echo: the sender ran its own handlers at send time.
        assert_eq!(stats.own_echoes, 0);
        assert_eq!(m.status.connections(), 1);
    }
    // The account of a message is the sender's nick.
    a.node.shutdown().await.unwrap();
    b.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nick_outside_the_trusted_pattern_is_ignored() {
    let server = IrcServer::start();
    let a = member(chat(&server, "smokey-henders"), "Henders/EC2").await;
    // Mallory runs the library too, but under a nick the fleet does not trust.
    let mallory = Node::builder("mallory")
        .transport(chat(&server, "mallory"))
        .default_node(false)
        .start()
        .await
        .unwrap();
    assert!(
        a.status
            .wait_for_members(&["mallory"], Duration::from_secs(20))
            .await
    );
    mallory.send(note(666)).await.unwrap();
    a.node.send(note(1)).await.unwrap();
    wait_until(Duration::from_secs(20), "mallory's post to be seen", || {
        a.node.stats().untrusted >= 1
    })
    .await;
    assert_eq!(indices_from(&a.seen, "mallory"), Vec::<u64>::new());
    assert_eq!(indices_from(&a.seen, "Henders/EC2"), [1]);
    mallory.shutdown().await.unwrap();
    a.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20_kib_envelope_crosses_in_chunks_at_the_default_rate() {
    let server = IrcServer::start();
    let a = member(chat(&server, "smokey-henders"), "Henders/EC2").await;
    let b = member(chat(&server, "smokey-teward"), "teward/vps").await;
    assert!(
        a.status
            .wait_for_members(&["smokey-teward"], Duration::from_secs(20))
            .await
    );

    // 20 KiB of text that does not compress into a pattern (xorshift).
    let mut x: u32 = 2024;
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let big = Note {
        index: 0,
        text: (0..20 * 1024)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                char::from(alphabet[x as usize % alphabet.len()])
            })
            .collect(),
    };
    let started = Instant::now();
    a.node.send(big.clone()).await.unwrap();
    a.node.send(note(1)).await.unwrap();
    wait_until(
        Duration::from_secs(150),
        "the 20 KiB note and the one after it",
        || b.seen.lock().unwrap().len() >= 2,
    )
    .await;
    let elapsed = started.elapsed();
    let a_stats = a.node.stats();
    let (posts, heartbeats) = (a_stats.posts, a_stats.heartbeats);
    eprintln!("20 KiB envelope: {posts} posts in {elapsed:?} at the default send rate");

    let seen = b.seen.lock().unwrap().clone();
    assert_eq!(seen[0], ("Henders/EC2".to_owned(), big));
    assert_eq!(seen[1].1.index, 1);
    let b_stats = b.node.stats();
    assert!(
        posts > 60,
        "a 20 KiB envelope takes ~70 IRC lines, not {posts}"
    );
    // Every post but the note after it and the heartbeats (a node
    // announces itself at start and answers a newcomer) is a chunk.
    assert!(
        b_stats.chunks >= posts.saturating_sub(1 + heartbeats),
        "{heartbeats} heartbeats; {b_stats:?}"
    );
    assert_eq!(
        (b_stats.malformed, b_stats.partials_dropped),
        (0, 0),
        "{b_stats:?}"
    );
    // Never kicked, throttled off or told it flooded.
    assert_eq!(a.status.connections(), 1);
    assert_eq!(a.status.flood_slowdowns(), 0);
    let log = server.log();
    assert!(
        !log.contains("exhausted") && !log.contains("Flood"),
        "{log}"
    );
    a.node.shutdown().await.unwrap();
    b.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_password_is_sent() {
    let server = IrcServer::start_with(Options {
        password: Some("fleet-secret".into()),
        ..Options::default()
    });
    let good = member(
        chat(&server, "smokey-henders").password("fleet-secret"),
        "Henders/EC2",
    )
    .await;
    let bad = member(
        chat(&server, "smokey-teward").password("wrong"),
        "teward/vps",
    )
    .await;
    wait_until(
        Duration::from_secs(20),
        "the right password to get in",
        || good.status.is_joined(),
    )
    .await;
    wait_until(
        Duration::from_secs(20),
        "the wrong password to be refused",
        || bad.status.last_disconnect().is_some(),
    )
    .await;
    assert!(!bad.status.is_joined());
    assert_eq!(bad.status.connections(), 0, "{:?}", bad.status);
    good.node.shutdown().await.unwrap();
    // The refused node cannot post what it queued; with nothing queued its
    // shutdown is immediate and clean.
    bad.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_queued_during_a_daemon_restart_are_delivered_once() {
    let mut server = IrcServer::start();
    let a = member(chat(&server, "smokey-henders"), "Henders/EC2").await;
    let b = member(chat(&server, "smokey-teward"), "teward/vps").await;
    assert!(
        a.status
            .wait_for_members(&["smokey-teward"], Duration::from_secs(20))
            .await
    );

    for i in 0..5 {
        a.node.send(note(i)).await.unwrap();
    }
    wait_until(Duration::from_secs(30), "the first notes", || {
        indices_from(&b.seen, "Henders/EC2").len() >= 3
    })
    .await;
    server.kill();
    // Sent while the server is down: queued in the node.
    for i in 5..15 {
        a.node.send(note(i)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.restart();
    for i in 15..20 {
        a.node.send(note(i)).await.unwrap();
    }
    wait_until(
        Duration::from_secs(60),
        "all 20 notes after the restart",
        || indices_from(&b.seen, "Henders/EC2").len() >= 20,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        indices_from(&b.seen, "Henders/EC2"),
        (0..20).collect::<Vec<_>>()
    );
    assert_eq!(
        indices_from(&a.seen, "Henders/EC2"),
        (0..20).collect::<Vec<_>>()
    );
    assert!(a.status.connections() >= 2 && b.status.connections() >= 2);
    a.node.shutdown().await.unwrap();
    b.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_that_cannot_post_says_how_much_it_lost() {
    // Nothing listens on this port: the transport keeps reconnecting.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let chat = IrcChat::new(format!("127.0.0.1:{port}"), "smokey-henders", "#smokey")
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(200));
    let status = chat.status();
    let node = Node::builder("Henders/EC2")
        .transport(chat)
        .default_node(false)
        .shutdown_timeout(Duration::from_secs(1))
        .start()
        .await
        .unwrap();
    node.send(note(1)).await.unwrap();
    // Accepted: the node ran its own handlers at once.
    wait_until(Duration::from_secs(5), "the own dispatch", || {
        node.stats().envelopes >= 1
    })
    .await;
    let err = node.shutdown().await.expect_err("nothing could be posted");
    assert!(matches!(err, Error::Unposted { unposted: 1, .. }), "{err}");
    assert!(
        err.to_string().contains("1 envelope(s) not posted"),
        "{err}"
    );
    assert_eq!(node.stats().unposted, 1);
    assert!(status
        .last_disconnect()
        .is_some_and(|r| r.contains("cannot connect")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_while_the_server_is_down_returns_at_its_bound() {
    let mut server = IrcServer::start();
    let chat = chat(&server, "smokey-henders").settle_time(Duration::from_millis(100));
    let status = chat.status();
    let node = Node::builder("Henders/EC2")
        .transport(chat)
        .default_node(false)
        .shutdown_timeout(Duration::from_secs(2))
        .start()
        .await
        .unwrap();
    wait_until(Duration::from_secs(20), "joining the channel", || {
        status.is_joined()
    })
    .await;
    node.send(note(0)).await.unwrap();
    wait_until(Duration::from_secs(20), "the first note posted", || {
        status.lines_posted() >= 1
    })
    .await;
    // Time for the server to confirm it (not asserted: were it not, it
    // would be counted too).
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.kill();
    wait_until(Duration::from_secs(120), "noticing the server gone", || {
        !status.is_joined()
    })
    .await;
    for i in 1..4 {
        node.send(note(i)).await.unwrap();
    }
    // A guard only: it must return at all.
    let err = tokio::time::timeout(Duration::from_secs(60), node.shutdown())
        .await
        .expect("shutdown returned")
        .expect_err("three notes were not posted");
    let Error::Unposted { unposted, .. } = err else {
        panic!("{err}");
    };
    // The three sent while the server was down, and the first if the
    // server had not confirmed it.
    assert!((3..=4).contains(&unposted), "{unposted}");
    assert_eq!(node.stats().unposted, unposted);
}

/// ngIRCd has no `echo-message`, so this one talks to a scripted server
/// (a thread speaking just enough IRC) that offers the capability and echoes
/// every `PRIVMSG` back to its sender, as IRCv3 servers do once it is
/// acknowledged: the node must still run each handler once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_echo_message_each_handler_still_runs_once() {
    use std::io::{BufRead as _, BufReader, Write as _};

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let script = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut out = stream.try_clone().unwrap();
        let mut nick = String::new();
        let mut acked = false;
        let mut echoed = 0;
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let words: Vec<&str> = line.split(' ').collect();
            let reply = match (words[0], words.get(1).copied()) {
                ("CAP", Some("LS")) => ":srv CAP * LS :multi-prefix echo-message\r\n".to_owned(),
                ("CAP", Some("REQ")) => {
                    acked = line.ends_with(":echo-message");
                    ":srv CAP * ACK :echo-message\r\n".to_owned()
                }
                ("CAP", Some("END")) => format!(":srv 001 {nick} :Welcome\r\n"),
                ("NICK", Some(n)) => {
                    nick = n.to_owned();
                    String::new()
                }
                ("JOIN", Some(channel)) => format!(
                    ":{nick}!u@127.0.0.1 JOIN {channel}\r\n:srv 353 {nick} = {channel} :{nick}\r\n\
                     :srv 366 {nick} {channel} :End of NAMES list\r\n"
                ),
                ("PRIVMSG", _) => {
                    echoed += 1;
                    format!(":{nick}!u@127.0.0.1 {line}\r\n")
                }
                ("PING", Some(token)) => format!(":srv PONG srv {token}\r\n"),
                ("QUIT", _) => break,
                _ => String::new(),
            };
            if out.write_all(reply.as_bytes()).is_err() {
                break;
            }
        }
        (acked, echoed)
    });

    let chat = IrcChat::new(addr.to_string(), "smokey-henders", "#smokey")
        .settle_time(Duration::from_millis(100));
    let a = member(chat, "Henders/EC2").await;
    for i in 0..3 {
        a.node.send(note(i)).await.unwrap();
    }
    // The three may share posts: every post the node made comes back.
    wait_until(Duration::from_secs(20), "the echoes of every post", || {
        let stats = a.node.stats();
        stats.posts >= 1 && stats.own_echoes >= stats.posts
    })
    .await;
    a.node.shutdown().await.unwrap();
    let (acked, echoed) = script.join().unwrap();
    assert!(acked, "the transport did not ask for echo-message");
    assert!(echoed >= 1);
    assert_eq!(indices_from(&a.seen, "Henders/EC2"), [0, 1, 2]);
    let stats = a.node.stats();
    assert_eq!(
        (stats.own_echoes, stats.duplicates),
        (stats.posts, 0),
        "{stats:?}"
    );
}

#[tokio::test]
async fn a_setting_that_cannot_work_fails_at_start_naming_what_to_change() {
    // No server needed: nothing connects before the settings are checked.
    let cases = [
        (
            IrcChat::new("127.0.0.1:6667", "1smokey", "#smokey"),
            "IrcChat::new",
            "nick",
        ),
        (
            IrcChat::new("127.0.0.1:6667", "smokey", "smokey"),
            "IrcChat::new",
            "channel",
        ),
        (
            IrcChat::new("127.0.0.1:6667", "smokey", "#smokey").send_rate(0.0, 5),
            "IrcChat::send_rate",
            "rate must be above 0",
        ),
        (
            IrcChat::new("127.0.0.1:6667", "smokey", "#smokey").password("two words"),
            "IrcChat::password",
            "space",
        ),
    ];
    for (chat, method, says) in cases {
        let status = chat.status();
        let started = Node::builder("bad-settings")
            .transport(chat)
            .default_node(false)
            .start()
            .await;
        match started {
            Err(Error::InvalidOption { option, reason }) => {
                assert_eq!(option, method, "{reason}");
                assert!(reason.contains(says), "{method}: {reason}");
            }
            Err(e) => panic!("{method}: expected InvalidOption, got {e}"),
            Ok(node) => {
                node.shutdown().await.ok();
                panic!("{method}: the node started with a setting that cannot work");
            }
        }
        assert_eq!(status.connections(), 0);
    }
}
