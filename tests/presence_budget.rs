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

use common::presence_fleet::{measure, LEASE};
use socketscience::{message, Failover, LocalChat, Node, Role};
use tokio::time::Instant;

/// The fleet's presence budget: posts a minute, all instances together.
const BUDGET: f64 = 12.0;

/// A fleet of `n`, all posting as one account: settles, is counted for 40
/// minutes, then loses a standby (the worst-ranked) and then its active
/// (`common::presence_fleet::measure`).
async fn fleet_stays_within_its_budget(n: usize) {
    let chat = LocalChat::new();
    let mut watch = chat.watch();
    let started = Instant::now();
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
    let mut posted = 0;
    // The room has no delay.
    let m = measure(nodes, started, BUDGET, Duration::ZERO, move || {
        while watch.try_recv().is_ok() {
            posted += 1;
        }
        posted
    })
    .await;
    println!(
        "| {n} | {:.0} s | {:.2} | {:.0} s | {:.0} s | {:.0} s |",
        common::presence_fleet::documented_interval(n, BUDGET).as_secs_f64(),
        m.per_minute,
        m.peer_timeout.as_secs_f64(),
        m.standby_noticed.as_secs_f64(),
        m.replaced.as_secs_f64(),
    );
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
