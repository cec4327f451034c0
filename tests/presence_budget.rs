//! Presence that scales (`NodeBuilder::presence_budget`): fleets of 3, 10,
//! 30 and 100 instances with failover, all posting as one account on a
//! `LocalChat`, posting nothing but presence. Counted with
//! `LocalChat::watch` on tokio's paused clock: the fleet's posts per minute
//! stay within the budget at every size, a killed standby leaves every
//! peer list within the peer timeout `Node::peer_timeout` reports (the
//! documented `3 h × T / h`), and a killed active is replaced within its
//! lease (plus the node's clock tick; the room has no delay). And an
//! instance that sends envelopes spends no post on presence alone.
//!
//! Each test prints its row of the README's table (`--nocapture`).

mod common;

use std::time::Duration;

use socketscience::{message, Failover, LocalChat, Node, Role};
use tokio::time::Instant;

/// The default heartbeat interval (and so a lease of 90 s).
const HEARTBEAT: Duration = Duration::from_secs(30);
const LEASE: Duration = Duration::from_secs(90);
/// The fleet's presence budget: posts a minute, all instances together.
const BUDGET: f64 = 12.0;
/// The slowest tick of a node's clocks (the presence task's).
const TICK: Duration = Duration::from_secs(1);

/// The mean standby interval the docs give: `max(h, (n - 1) × 60 s /
/// (B' - 60 s / h))`, `B' = 0.9 B`.
fn documented_interval(n: usize) -> Duration {
    let active = 60.0 / HEARTBEAT.as_secs_f64();
    let aim = BUDGET * 0.9;
    let secs = (n - 1) as f64 * 60.0 / (aim - active).max(aim / 2.0);
    Duration::from_secs_f64(secs).max(HEARTBEAT)
}

/// The peer timeout the docs give: `3 h × T / h`.
fn documented_timeout(n: usize) -> Duration {
    (HEARTBEAT * 3).mul_f64(documented_interval(n).as_secs_f64() / HEARTBEAT.as_secs_f64())
}

async fn fleet(chat: &LocalChat, n: usize) -> Vec<Node> {
    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        let node = Node::builder(format!("i{i:03}"))
            .transport(chat.join("smokey"))
            .seed(i as u64 + 1)
            // i000 ranks first, then i001, ...
            .failover(Failover::new().priority(-(i as i64)))
            .presence_budget(BUDGET)
            .default_node(false)
            .start()
            .await
            .expect("start");
        nodes.push(node);
    }
    nodes
}

/// Counts what the room saw posted until now.
fn drain(
    watch: &mut tokio::sync::mpsc::UnboundedReceiver<socketscience::transport::ChatMessage>,
) -> usize {
    let mut n = 0;
    while watch.try_recv().is_ok() {
        n += 1;
    }
    n
}

fn actives(nodes: &[Node]) -> Vec<String> {
    nodes
        .iter()
        .filter(|n| n.role() == Role::Active)
        .map(|n| n.name().to_owned())
        .collect()
}

/// A fleet of `n`: settles, is counted for `window`, then loses a standby
/// (the worst-ranked) and then its active.
async fn fleet_stays_within_its_budget(n: usize) {
    let chat = LocalChat::new();
    let mut watch = chat.watch();
    let mut nodes = fleet(&chat, n).await;
    // Settled: every instance heard every other, one active, the intervals
    // stretched (two of the longest intervals and a lease).
    let settle = documented_interval(n) * 2 + LEASE;
    tokio::time::sleep(settle).await;
    for node in &nodes {
        assert_eq!(node.peers().len(), n - 1, "{} hears the fleet", node.name());
    }
    assert_eq!(actives(&nodes), ["i000"]);
    drain(&mut watch);

    // Presence alone, counted over 40 minutes.
    let window = Duration::from_secs(40 * 60);
    let started = Instant::now();
    let mut lowest_peers = n - 1;
    while started.elapsed() < window {
        tokio::time::sleep(Duration::from_secs(10)).await;
        for node in &nodes {
            lowest_peers = lowest_peers.min(node.peers().len());
        }
    }
    let posts = drain(&mut watch);
    let per_minute = posts as f64 / (window.as_secs_f64() / 60.0);
    assert!(
        per_minute <= BUDGET,
        "{n} instances posted {per_minute:.2} a minute, over the budget of {BUDGET}"
    );
    assert_eq!(
        lowest_peers,
        n - 1,
        "no live peer left a peer list while the fleet was stretched"
    );
    let timeout = nodes[0].peer_timeout();
    let bound = documented_timeout(n);
    assert!(
        timeout.abs_diff(bound) <= Duration::from_millis(5),
        "peer_timeout() {timeout:?}, documented {bound:?}"
    );

    // A standby killed: every other instance stops listing it within the
    // peer timeout (plus a tick).
    let standby = nodes.pop().expect("a standby");
    let gone = standby.name().to_owned();
    assert_eq!(standby.role(), Role::Standby);
    let killed = Instant::now();
    standby.shutdown().await.expect("shutdown");
    while nodes
        .iter()
        .any(|node| node.peers().iter().any(|p| p.instance() == gone))
    {
        assert!(
            killed.elapsed() <= timeout + TICK,
            "{gone} still listed {:?} after it died (peer timeout {timeout:?})",
            killed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let standby_noticed = killed.elapsed();

    // The active killed: the best-ranked standby takes over within the
    // lease (plus a tick of the failover task).
    let active = nodes.remove(0);
    assert_eq!(active.role(), Role::Active);
    let killed = Instant::now();
    active.shutdown().await.expect("shutdown");
    while actives(&nodes).is_empty() {
        assert!(
            killed.elapsed() <= LEASE + TICK,
            "no active {:?} after the active died",
            killed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let replaced = killed.elapsed();
    assert_eq!(actives(&nodes), [nodes[0].name()]);
    println!(
        "| {n} | {:.0} s | {per_minute:.2} | {:.0} s | {:.0} s | {:.0} s |",
        documented_interval(n).as_secs_f64(),
        timeout.as_secs_f64(),
        standby_noticed.as_secs_f64(),
        replaced.as_secs_f64(),
    );
    for node in nodes {
        node.shutdown().await.expect("shutdown");
    }
}

#[tokio::test(start_paused = true)]
async fn three_instances_stay_within_the_budget() {
    fleet_stays_within_its_budget(3).await;
}

#[tokio::test(start_paused = true)]
async fn ten_instances_stay_within_the_budget() {
    fleet_stays_within_its_budget(10).await;
}

#[tokio::test(start_paused = true)]
async fn thirty_instances_stay_within_the_budget() {
    fleet_stays_within_its_budget(30).await;
}

#[tokio::test(start_paused = true)]
async fn a_hundred_instances_stay_within_the_budget() {
    fleet_stays_within_its_budget(100).await;
}

#[message("tick")]
#[derive(Debug, Clone, PartialEq)]
pub struct Tick(pub u64);

/// Every instance sends an envelope every 5 s: none posts a heartbeat
/// but the active one (its lease runs from its heartbeats), with failover
/// or without.
#[tokio::test(start_paused = true)]
async fn an_instance_that_sends_spends_no_post_on_presence() {
    for failover in [false, true] {
        let chat = LocalChat::new();
        let mut nodes = Vec::new();
        for i in 0..10u64 {
            let mut builder = Node::builder(format!("i{i:03}"))
                .transport(chat.join("smokey"))
                .seed(i + 1)
                .presence_budget(BUDGET)
                .default_node(false);
            if failover {
                builder = builder.failover(Failover::new().priority(-(i as i64)));
            }
            nodes.push(builder.start().await.expect("start"));
        }
        tokio::time::sleep(LEASE * 2).await;
        // Counted from the first round on (a heartbeat due as they begin
        // may still leave).
        let mut before = Vec::new();
        for round in 0..121u64 {
            for node in &nodes {
                node.send(Tick(round)).await.expect("send");
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
            if round == 0 {
                before = nodes.iter().map(|n| n.stats().heartbeats).collect();
            }
        }
        for (node, before) in nodes.iter().zip(before) {
            let heartbeats = node.stats().heartbeats - before;
            if failover && node.role() == Role::Active {
                // Ten minutes at one per heartbeat interval.
                assert!(heartbeats <= 21, "{}: {heartbeats}", node.name());
            } else {
                assert_eq!(
                    heartbeats,
                    0,
                    "{} (failover: {failover}) posted heartbeats while it sent",
                    node.name()
                );
            }
            assert_eq!(node.peers().len(), 9, "{} hears the fleet", node.name());
        }
        for node in nodes {
            node.shutdown().await.expect("shutdown");
        }
    }
}
