//! Presence, the node's side: its heartbeat task and [`Node::peers`]. The
//! peer list and the queue of presence and repair traffic are
//! `crate::presence`.

use std::sync::Arc;

use tokio::time::Instant;

use super::Node;
use crate::presence::Peer;
use crate::send::Bus;

impl Node {
    /// The other instances heard within the peer timeout
    /// ([`NodeBuilder::peer_timeout`](crate::NodeBuilder::peer_timeout)):
    /// a post of any kind, heartbeats included, counts. Not this node
    /// itself.
    pub fn peers(&self) -> Vec<Peer> {
        self.with_roles(self.bus().presence.peers())
    }

    /// The peer list, as a [`tokio::sync::watch::Receiver`] that is told
    /// when a peer joins, leaves (not heard within the timeout), restarts
    /// (a new session replaces its entry) or, with failover, changes role:
    /// `changed().await` waits for that. Read the list with
    /// [`peers`](Node::peers) (the watched value also holds peers that are
    /// about to leave).
    pub fn watch_peers(&self) -> tokio::sync::watch::Receiver<Vec<Peer>> {
        self.bus().presence.watch()
    }
}

/// The presence task of a node: ticks the coarse clock, and asks for a
/// heartbeat when the node has posted nothing for a heartbeat interval.
/// Ends when the node shuts down.
pub(crate) async fn run(bus: Arc<Bus>) {
    let presence = &bus.presence;
    let options = presence.options;
    let mut ticks = tokio::time::interval(options.tick());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut posts = bus.counters.snapshot().posts;
    let mut last_active = Instant::now();
    loop {
        ticks.tick().await;
        if bus.outbox.is_closed() {
            return;
        }
        presence.tick();
        if options.heartbeat.is_zero() {
            continue;
        }
        let now_posts = bus.counters.snapshot().posts;
        if now_posts != posts {
            posts = now_posts;
            last_active = Instant::now();
        } else if last_active.elapsed() >= options.heartbeat {
            last_active = Instant::now();
            bus.announce();
        }
    }
}
