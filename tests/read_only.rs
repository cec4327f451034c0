//! `NodeBuilder::read_only` and `NodeBuilder::observe`, what `socketscience
//! watch` runs on: a read-only node posts nothing (no envelope, heartbeat,
//! repair request or vote), so the fleet never lists it as a peer; it
//! follows the fleet's election from the heartbeats; its observer sees
//! every envelope accepted from the room, with sender and sequence number,
//! and nothing refused.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::messages::Ping;
use socketscience::{Error, Failover, LocalChat, Node, Role};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_node_sees_the_fleet_and_posts_nothing() {
    let chat = LocalChat::new();
    let heartbeat = Duration::from_millis(100);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let watcher = Node::builder("watch")
        .transport(chat.join("watcher"))
        .default_node(false)
        .trust("smokey")
        .heartbeat(heartbeat)
        .read_only()
        .observe({
            let seen = seen.clone();
            move |e| {
                // A body of several envelopes gives the first's number.
                for (at, (kind, raw)) in e.messages().enumerate() {
                    let ping: Option<Ping> = (kind == "ping").then(|| raw.decode().unwrap());
                    seen.lock().unwrap().push((
                        e.sender().instance().map(str::to_owned),
                        e.seq().map(|s| s + at as u64 * u64::from(e.count() > 1)),
                        kind.to_owned(),
                        ping.map(|p| p.location),
                    ));
                }
            }
        })
        .start()
        .await
        .unwrap();
    let fleet = |name: &'static str, priority| {
        Node::builder(name)
            .transport(chat.join("smokey"))
            .default_node(false)
            .heartbeat(heartbeat)
            .failover(Failover::new().priority(priority))
            .start()
    };
    let henders = fleet("Henders/EC2", 10).await.unwrap();
    let teward = fleet("teward/vps", 5).await.unwrap();
    let intruder = Node::builder("intruder")
        .transport(chat.join("mallory"))
        .default_node(false)
        .start()
        .await
        .unwrap();
    intruder
        .send(Ping {
            location: "nowhere".into(),
            timestamp: 0.0,
        })
        .await
        .unwrap();
    for n in 0..3 {
        henders
            .send(Ping {
                location: format!("Henders/EC2 #{n}"),
                timestamp: f64::from(n),
            })
            .await
            .unwrap();
    }
    // The watcher follows the election from the heartbeats.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let peers = watcher.peers();
        let active = peers
            .iter()
            .find(|p| p.instance() == "Henders/EC2" && p.role() == Some(Role::Active));
        if peers.len() == 2 && active.is_some_and(|p| p.term().is_some_and(|t| t > 0)) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{peers:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    common::wait_for(&watcher, "the pings and the intruder's", |s| {
        s.envelopes >= 3 && s.untrusted >= 1
    })
    .await;
    // Several heartbeat intervals: the fleet would have heard it by now.
    tokio::time::sleep(heartbeat * 10).await;

    let seen = seen.lock().unwrap().clone();
    let pings: Vec<_> = seen
        .iter()
        .filter(|(_, _, kind, _)| kind == "ping")
        .collect();
    assert_eq!(pings.len(), 3, "{seen:?}");
    for (n, (from, seq, _, location)) in pings.iter().enumerate() {
        assert_eq!(from.as_deref(), Some("Henders/EC2"));
        assert_eq!(*seq, Some(n as u64));
        assert_eq!(location.as_deref(), Some(&*format!("Henders/EC2 #{n}")));
    }
    let stats = watcher.stats();
    assert_eq!(
        (stats.posts, stats.heartbeats, stats.sent),
        (0, 0, 0),
        "{stats:#?}"
    );
    for node in [&henders, &teward] {
        assert!(
            node.peers().iter().all(|p| p.instance() != "watch"),
            "{} heard the watcher: {:?}",
            node.name(),
            node.peers()
        );
    }
    assert_eq!(watcher.role(), Role::Standby);
    let err = watcher
        .send(Ping {
            location: "watch".into(),
            timestamp: 0.0,
        })
        .await
        .expect_err("a read-only node sends nothing");
    assert!(
        matches!(
            err,
            Error::InvalidOption {
                option: "read_only",
                ..
            }
        ),
        "{err}"
    );
    // Not with failover.
    let both = Node::builder("both")
        .transport(chat.join("smokey"))
        .default_node(false)
        .heartbeat(heartbeat)
        .failover(Failover::new())
        .read_only()
        .start()
        .await;
    assert!(matches!(
        both,
        Err(Error::InvalidOption {
            option: "read_only",
            ..
        })
    ));
    for node in [watcher, henders, teward, intruder] {
        node.shutdown().await.unwrap();
    }
}
