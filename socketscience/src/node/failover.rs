//! Failover, the node's side: its election task, and [`Node::role`] and
//! friends. The election itself (the rule, the state) is
//! `crate::failover`; a peer's `_el` reaches it through
//! `Bus::election_heard`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::Node;
use crate::failover::Role;
use crate::presence::Peer;
use crate::send::Bus;

/// The failover task of a node: heartbeats every interval, evaluates the
/// rule on every tick. Ends when the node shuts down.
pub(crate) async fn run(bus: Arc<Bus>) {
    let Some(election) = bus.election.clone() else {
        return;
    };
    let tick = (election.heartbeat / 8).clamp(Duration::from_millis(1), Duration::from_millis(250));
    let mut ticks = tokio::time::interval(tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first heartbeat at once: the others learn of this node (and it
    // of them, as they answer a newcomer's heartbeat with theirs).
    let mut next_heartbeat = Instant::now();
    let mut known = 0usize;
    loop {
        ticks.tick().await;
        if bus.outbox.is_closed() {
            return;
        }
        let mut now_announce = election.tick();
        // A newcomer is told the roles at once.
        let peers = election.peer_count();
        if peers > known {
            now_announce = true;
        }
        known = peers;
        let now = Instant::now();
        if now_announce || now >= next_heartbeat {
            next_heartbeat = now + election.heartbeat;
            bus.announce();
        }
    }
}

impl Node {
    /// This node's role in the election ([`NodeBuilder::failover`](crate::NodeBuilder::failover)).
    /// A node that takes no part is always [`Role::Active`]: alone, it
    /// does the job.
    pub fn role(&self) -> Role {
        match &self.bus().election {
            Some(e) => *e.role.borrow(),
            None => Role::Active,
        }
    }

    /// The node's role as a [`tokio::sync::watch::Receiver`]:
    /// `changed().await` waits for the next change. A node that takes no
    /// part in an election never changes ([`Role::Active`]).
    pub fn watch_role(&self) -> watch::Receiver<Role> {
        match &self.bus().election {
            Some(e) => e.role.subscribe(),
            None => watch::Sender::new(Role::Active).subscribe(),
        }
    }

    /// Forces this node's role, as SmokeDetector's metasmoke and its
    /// `!!/failover` and `!!/standby` commands do; the fleet follows.
    ///
    /// - [`Role::Active`]: claims a term above every term heard, at once,
    ///   as an override: the active instance steps down when it hears the
    ///   claim, whatever its priority, and an elected active heard later
    ///   (one it did not know of, after a partition) is outbid again. It
    ///   holds until [`release_role`](Node::release_role), or until an
    ///   override made later elsewhere wins (higher term); the quorum is not
    ///   required meanwhile.
    /// - [`Role::Standby`]: steps down at once and never claims until
    ///   [`release_role`](Node::release_role) (or `force_role(Role::Active)`);
    ///   the best-ranked standby takes over without waiting for the lease.
    ///
    /// Does nothing on a node that takes no part in an election.
    pub fn force_role(&self, role: Role) {
        if let Some(e) = &self.bus().election {
            if e.force(role) {
                self.bus().announce();
            }
        }
    }

    /// Ends a role forced with [`force_role`](Node::force_role): the node
    /// takes part in the election as usual again.
    pub fn release_role(&self) {
        if let Some(e) = &self.bus().election {
            e.release();
            self.bus().announce();
        }
    }

    /// The peers with their roles filled in (called by [`Node::peers`]).
    pub(crate) fn with_roles(&self, mut peers: Vec<Peer>) -> Vec<Peer> {
        if let Some(e) = &self.bus().election {
            for p in &mut peers {
                p.role = e.role_of(p.instance(), p.session());
            }
        }
        peers
    }
}
