//! `Node::shutdown` returns within `NodeBuilder::shutdown_timeout` whatever
//! the transport does: a transport of the user's own that never takes its
//! posts is stopped at the bound, and the envelopes it did not post are
//! named in the error and counted in `stats()`. (The chats' own cases are
//! in tests/irc.rs, tests/matrix.rs and tests/sechat.rs.)

mod common;

use std::time::Duration;

use common::messages::Ping;
use common::{Log, RecordingChat};
use socketscience::transport::BoxFuture;
use socketscience::transport::{LineMode, Mishap, Transport, TransportIo};
use socketscience::{Error, LocalChat, Node};

/// A chat that connects and then never takes a post.
struct Stuck;

impl Transport for Stuck {
    fn account(&self) -> &str {
        "smokey"
    }

    fn max_message_len(&self) -> usize {
        4096
    }

    fn run(self: Box<Self>, _io: TransportIo) -> BoxFuture<socketscience::Result<()>> {
        Box::pin(std::future::pending())
    }
}

fn ping(n: u32) -> Ping {
    Ping {
        location: format!("Henders/EC2 #{n}"),
        timestamp: f64::from(n),
    }
}

/// A node on `transport` with a shutdown bound of 1 s, which has sent
/// three envelopes.
async fn start_sending_three(transport: impl Transport + 'static) -> Node {
    let node = Node::builder("Henders/EC2")
        .transport(transport)
        .default_node(false)
        .shutdown_timeout(Duration::from_secs(1))
        .start()
        .await
        .unwrap();
    for n in 0..3 {
        node.send(ping(n)).await.unwrap();
    }
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transport_that_never_takes_its_posts_is_stopped_at_the_bound() {
    let node = start_sending_three(Stuck).await;
    // A guard only: it must return at all.
    let err = tokio::time::timeout(Duration::from_secs(30), node.shutdown())
        .await
        .expect("shutdown returned")
        .expect_err("three envelopes were not posted");
    assert!(matches!(err, Error::Unposted { unposted: 3, .. }), "{err}");
    assert!(
        err.to_string().contains("3 envelope(s) not posted"),
        "{err}"
    );
    let stats = node.stats();
    assert_eq!(stats.unposted, 3);
    assert_eq!(stats.posts, 0);
    // The node's own handlers still ran: the envelopes were accepted.
    assert_eq!(stats.envelopes, 3);
    // Once stopped, it stays stopped.
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transport_that_takes_everything_stops_cleanly_with_nothing_unposted() {
    let posts = Log::default();
    let node = Node::builder("Henders/EC2")
        .transport(RecordingChat {
            lines: LineMode::Multi,
            max_len: 200,
            gate: None,
            posts: posts.clone(),
        })
        .default_node(false)
        .heartbeat(Duration::ZERO)
        .shutdown_timeout(Duration::from_secs(1))
        .start()
        .await
        .unwrap();
    // Long enough to go in chunks: done once the last chunk is.
    // (Letters that do not deflate: an LCG's.)
    let mut x = 7u32;
    let location: String = (0..1_000)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            char::from(b'a' + (x >> 16) as u8 % 26)
        })
        .collect();
    node.send(Ping {
        location,
        timestamp: 1.0,
    })
    .await
    .unwrap();
    node.send(ping(2)).await.unwrap();
    node.shutdown().await.expect("everything was posted");
    assert_eq!(node.stats().unposted, 0);
    assert!(posts.len() > 2, "{} posts", posts.len());

    let chat = LocalChat::new();
    let local = Node::builder("teward/vps")
        .transport(chat.join("smokey"))
        .default_node(false)
        .shutdown_timeout(Duration::from_secs(1))
        .start()
        .await
        .unwrap();
    local.send(ping(3)).await.unwrap();
    local.shutdown().await.expect("LocalChat takes everything");
    assert_eq!(local.stats().unposted, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_iter_names_every_counter_with_its_value_and_help() {
    let node = Node::builder("Henders/EC2")
        .transport(Stuck)
        .default_node(false)
        .shutdown_timeout(Duration::from_millis(200))
        .start()
        .await
        .unwrap();
    node.send(ping(1)).await.unwrap();
    let _ = node.shutdown().await;
    let stats = node.stats();
    let all: Vec<_> = stats.iter().collect();
    let value = |name: &str| all.iter().find(|c| c.0 == name).map(|c| c.1);
    assert_eq!(value("sent"), Some(stats.sent));
    assert_eq!(value("unposted"), Some(1));
    assert_eq!(value("rejected"), None, "sums are not counters");
    // Every field once (Debug lists the fields), each with a help text.
    assert_eq!(all.len(), format!("{stats:?}").matches(": ").count());
    assert!(all
        .iter()
        .all(|(_, _, help)| !help.is_empty() && !help.contains("\n\n")));
}

/// A chat that takes posts ahead of writing them (as IRC's queue does),
/// through `TransportIo`'s public API only: it confirms explicitly, and
/// writes (confirms) the posts only when `writes` is set. It also counts
/// one of each mishap only a transport sees, and records how many
/// envelopes each post held.
struct Ahead {
    writes: bool,
    held: std::sync::Arc<std::sync::Mutex<Vec<usize>>>,
}

impl Transport for Ahead {
    fn account(&self) -> &str {
        "smokey"
    }

    fn max_message_len(&self) -> usize {
        4096
    }

    fn run(self: Box<Self>, mut io: TransportIo) -> BoxFuture<socketscience::Result<()>> {
        Box::pin(async move {
            io.confirm_explicitly();
            let link = io.link();
            io.count(Mishap::RoomTimeout);
            link.count(Mishap::PostGivenUp);
            link.count(Mishap::SourceLost);
            link.count(Mishap::HistoryGap);
            while io.next_post().await.is_some() {
                self.held.lock().unwrap().push(io.last_post_envelopes());
                if self.writes {
                    io.confirm_through(io.post_through());
                }
            }
            assert!(link.is_closing());
            Ok(())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transport_of_its_own_confirms_counts_and_closes_through_transport_io() {
    for writes in [true, false] {
        let held = std::sync::Arc::default();
        let node = start_sending_three(Ahead {
            writes,
            held: std::sync::Arc::clone(&held),
        })
        .await;
        let outcome = tokio::time::timeout(Duration::from_secs(30), node.shutdown())
            .await
            .expect("shutdown returned");
        let stats = node.stats();
        if writes {
            outcome.expect("every post was written");
            assert_eq!(stats.unposted, 0);
        } else {
            // Taken, never written: the node knows they were not posted.
            let err = outcome.expect_err("nothing was written");
            assert!(matches!(err, Error::Unposted { unposted: 3, .. }), "{err}");
            assert_eq!(stats.unposted, 3);
        }
        assert_eq!(
            held.lock().unwrap().iter().sum::<usize>(),
            3,
            "writes {writes}"
        );
        assert_eq!(
            (
                stats.room_timeouts,
                stats.posts_given_up,
                stats.sources_lost,
                stats.history_gaps
            ),
            (1, 1, 1, 1)
        );
    }
}
