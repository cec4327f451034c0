//! Failover, the node's side: its election task, and [`Node::role`] and
//! friends. The election itself (the rule, the state) is
//! `crate::failover`; a peer's `_el` reaches it through
//! `Bus::election_heard`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::Node;
use crate::core::Core;
use crate::failover::Role;
use crate::presence::Peer;

/// The failover task of a node: evaluates the rule on every tick,
/// heartbeats, and answers what it heard (a weaker claim) with a
/// heartbeat, at most once per half the interval (a flood of claims cannot
/// make the node post more). While active it heartbeats every interval,
/// whatever else it posts (its lease runs from them); while standing by,
/// when it posted nothing for its interval, stretched by the presence
/// budget and drawn anew each time (`presence::Options::stretched`,
/// `drawn`), counted from its last heartbeat or post, whichever task
/// posted it. A newcomer is told the roles by the presence task's answer
/// (`node::presence`): every heartbeat carries them. Ends when the node
/// shuts down.
pub(crate) async fn run(core: Arc<Core>) {
    let Some(election) = core.election.clone() else {
        return;
    };
    let presence = &core.presence;
    let options = presence.options;
    let tick = (election.heartbeat / 8).clamp(Duration::from_millis(1), Duration::from_millis(250));
    let answer_gap = election.heartbeat / 2;
    let mut ticks = tokio::time::interval(tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rng = fastrand::Rng::with_seed(core.session ^ 0x2545_f491_4f6c_dd1d);
    let mut draw = rng.f64();
    // The first heartbeat at once: the others learn of this node (and it
    // of them, as they answer a newcomer's heartbeat with theirs).
    let mut last_heartbeat: Option<Instant> = None;
    // When it last posted something other than a heartbeat (a standby's
    // heartbeat rides in it).
    let mut last_post: Option<Instant> = None;
    let mut posts = other_posts(&core);
    let mut heartbeats = core.counters.snapshot().heartbeats;
    let mut answer = false;
    loop {
        ticks.tick().await;
        if core.outbox.is_closed() {
            return;
        }
        presence.with_peers(|peers| {
            let heard = peers
                .iter()
                .map(|p| (p.instance(), p.session(), p.last_heard()));
            election.refresh(presence.peer_timeout(), heard);
        });
        answer |= election.tick();
        answer |= core
            .answer_due
            .swap(false, std::sync::atomic::Ordering::Relaxed);
        let now = Instant::now();
        let now_posts = other_posts(&core);
        if now_posts != posts {
            posts = now_posts;
            last_post = Some(now);
        }
        // A standby's heartbeat posted for the presence task (an answer to
        // a newcomer) stands for its next one.
        let now_heartbeats = core.counters.snapshot().heartbeats;
        if now_heartbeats != heartbeats {
            heartbeats = now_heartbeats;
            if last_heartbeat.is_some() && *election.role.borrow() == Role::Standby {
                last_heartbeat = Some(now);
            }
        }
        let due = match last_heartbeat {
            None => true,
            Some(at) if *election.role.borrow() == Role::Active => now >= at + election.heartbeat,
            Some(at) => {
                now >= last_post.map_or(at, |p| p.max(at))
                    + options.drawn(presence.interval(), draw)
            }
        };
        let may_answer = last_heartbeat.is_none_or(|at| now >= at + answer_gap);
        if due || (answer && may_answer) {
            last_heartbeat = Some(now);
            draw = rng.f64();
            answer = false;
            core.announce();
        }
    }
}

/// How many posts the node made other than heartbeats (envelopes,
/// repair traffic).
fn other_posts(core: &Core) -> u64 {
    let stats = core.counters.snapshot();
    stats.posts.wrapping_sub(stats.heartbeats)
}

impl Node {
    /// This node's role in the election ([`NodeBuilder::failover`](crate::NodeBuilder::failover)).
    /// A node that takes no part is always [`Role::Active`]: alone, it
    /// does the job.
    pub fn role(&self) -> Role {
        match &self.core().election {
            Some(e) => *e.role.borrow(),
            None => Role::Active,
        }
    }

    /// The node's role as a [`tokio::sync::watch::Receiver`]:
    /// `changed().await` waits for the next change. A node that takes no
    /// part in an election never changes ([`Role::Active`]). When told of a
    /// change to active, [`fencing_token`](Node::fencing_token) already
    /// gives the new tenure's token.
    pub fn watch_role(&self) -> watch::Receiver<Role> {
        match &self.core().election {
            Some(e) => e.role.subscribe(),
            None => watch::Sender::new(Role::Active).subscribe(),
        }
    }

    /// The fencing token of this node's tenure: while it is active, the
    /// term it claimed, strictly greater than the token of every earlier
    /// active instance it or the instances it heard knew of; `None` while
    /// it stands by, and on a node that takes no part in an election.
    ///
    /// Give it with every write to a service that must hear from one active
    /// instance only (for SmokeDetector: metasmoke). The service keeps the
    /// highest token it has seen and refuses writes with a lower one: an
    /// active instance that was cut off and replaced (a partition, a
    /// stalled process) cannot write once its successor has.
    ///
    /// ```
    /// # use std::sync::atomic::{AtomicU64, Ordering};
    /// /// The service's side: refuse a stale active.
    /// struct Fence(AtomicU64);
    /// impl Fence {
    ///     fn admit(&self, token: u64) -> bool {
    ///         // Keep the highest token seen; refuse lower ones.
    ///         self.0.fetch_max(token, Ordering::SeqCst) <= token
    ///     }
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> socketscience::Result<()> {
    /// # use socketscience::{Failover, LocalChat, Node};
    /// # let chat = LocalChat::new();
    /// # let node = Node::builder("Henders/EC2").transport(chat.join("smokey"))
    /// #     .failover(Failover::new()).start().await?;
    /// let fence = Fence(AtomicU64::new(0));
    /// // The node's side: write only while active, with the token.
    /// if let Some(token) = node.fencing_token() {
    ///     assert!(fence.admit(token));
    /// }
    /// # node.shutdown().await }
    /// ```
    ///
    /// Terms start over when every instance of the fleet stops at once (no
    /// instance is left to tell a new one the last term): a service that
    /// outlives the whole fleet resets its fence then.
    pub fn fencing_token(&self) -> Option<u64> {
        self.core()
            .election
            .as_ref()
            .and_then(|e| *e.token.borrow())
    }

    /// The fencing token ([`fencing_token`](Node::fencing_token)) as a
    /// [`tokio::sync::watch::Receiver`]: `changed().await` waits for the
    /// next change (a tenure that starts or ends, or a new term while
    /// active). It changes before [`watch_role`](Node::watch_role) is told
    /// of the role change that goes with it.
    pub fn watch_fencing_token(&self) -> watch::Receiver<Option<u64>> {
        match &self.core().election {
            Some(e) => e.token.subscribe(),
            None => watch::Sender::new(None).subscribe(),
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
        if let Some(e) = &self.core().election {
            if e.force(role) {
                self.core().announce();
            }
        }
    }

    /// Ends a role forced with [`force_role`](Node::force_role): the node
    /// takes part in the election as usual again.
    pub fn release_role(&self) {
        if let Some(e) = &self.core().election {
            e.release();
            self.core().announce();
        }
    }

    /// The peers with their roles filled in (called by [`Node::peers`]).
    pub(crate) fn with_roles(&self, mut peers: Vec<Peer>) -> Vec<Peer> {
        if let Some(e) = &self.core().election {
            for p in &mut peers {
                if let Some((role, term)) = e.role_of(p.instance(), p.session()) {
                    (p.role, p.term) = (Some(role), Some(term));
                }
            }
        }
        peers
    }
}
