//! Feature `metrics`: a node's counters and gauges through the `metrics`
//! facade, for whatever exporter the program installs
//! (metrics-exporter-prometheus is the usual one).
//!
//! Every counter of [`Stats`](crate::Stats) is published as
//! `socketscience_<counter>` (from [`Stats::iter`](crate::Stats::iter): a
//! counter added to `Stats` is published by itself), with its doc as help;
//! and the gauges:
//!
//! | gauge | what |
//! | --- | --- |
//! | `socketscience_peers` | instances heard within the peer timeout |
//! | `socketscience_active` | 1 while this node is the active instance, else 0 |
//! | `socketscience_term` | the election term this node knows (0 without failover) |
//! | `socketscience_queue_depth` | envelopes accepted by `send` and not yet posted |
//! | `socketscience_held` | envelopes from the room held until those missing before them are repaired or given up |
//!
//! each labelled `node="<instance>"`. They are published once a second by
//! a task of the node (nothing is added to the path of a message), and
//! once more when [`Node::shutdown`] returns.

use std::time::Duration;

use super::Node;
use crate::failover::Role;
use crate::stats::Stats;

/// How often the values are published.
const EVERY: Duration = Duration::from_secs(1);

/// The gauges, name and help.
const GAUGES: &[(&str, &str)] = &[
    (
        "socketscience_peers",
        "Instances heard within the peer timeout.",
    ),
    (
        "socketscience_active",
        "1 while this node is the active instance of its election, else 0.",
    ),
    (
        "socketscience_term",
        "The election term this node knows (0 without failover).",
    ),
    (
        "socketscience_queue_depth",
        "Envelopes accepted by send and not yet posted.",
    ),
    (
        "socketscience_held",
        "Envelopes from the room held until those missing before them are repaired or given up.",
    ),
];

/// Describes the metrics (their help), then publishes the node's values
/// every second until it shuts down.
pub(crate) async fn run(node: Node) {
    for (name, _, help) in Stats::default().iter() {
        metrics::describe_counter!(format!("socketscience_{name}"), help);
    }
    for &(name, help) in GAUGES {
        metrics::describe_gauge!(name, help);
    }
    let mut ticks = tokio::time::interval(EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if node.core().outbox.is_closed() {
            return;
        }
        publish(&node);
    }
}

/// Publishes the node's counters and gauges now.
pub(crate) fn publish(node: &Node) {
    let core = node.core();
    let label = || [("node", core.name.to_string())];
    for (name, value, _) in node.stats().iter() {
        metrics::counter!(format!("socketscience_{name}"), &label()).absolute(value);
    }
    let term = core.election.as_ref().map_or(0, |e| e.term());
    let values = [
        node.peers().len() as f64,
        f64::from(u8::from(node.role() == Role::Active)),
        term as f64,
        core.unposted() as f64,
        core.held.load(std::sync::atomic::Ordering::Relaxed) as f64,
    ];
    for (&(name, _), value) in GAUGES.iter().zip(values) {
        metrics::gauge!(name, &label()).set(value);
    }
}
