//! Presence, the node's side: its heartbeat task and [`Node::peers`]. The
//! peer list and the queue of presence and repair traffic are
//! `crate::presence`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Node;
use crate::core::Core;
use crate::error::{Error, Result};
use crate::presence::{Peer, PeerEvents};
use crate::rate::TokenBucket;

/// The longest gap between the heartbeats
/// [`wait_for_peers`](Node::wait_for_peers) posts while it waits.
const ANNOUNCE_MOST: Duration = Duration::from_secs(30);

impl Node {
    /// The other instances heard within the peer timeout
    /// ([`NodeBuilder::peer_timeout`](crate::NodeBuilder::peer_timeout)):
    /// a post of any kind, heartbeats included, counts. Not this node
    /// itself.
    pub fn peers(&self) -> Vec<Peer> {
        self.with_roles(self.core().presence.peers())
    }

    /// How long a silent peer stays listed ([`peers`](Node::peers)), as it
    /// follows from the presence budget and the fleet's size now
    /// ([`NodeBuilder::presence_budget`](crate::NodeBuilder::presence_budget)):
    /// with `n` instances heard (this one included), heartbeat interval `h`,
    /// peer timeout `t` ([`NodeBuilder::peer_timeout`](crate::NodeBuilder::peer_timeout),
    /// default `3 h`) and budget `B` posts a minute, it is `t × T / h`, where
    /// `T` is the longest mean interval in the fleet:
    /// `max(h, n × 60 s / B')`, or with failover (the standbys')
    /// `max(h, (n - 1) × 60 s / (B' - 60 s / h))`, `B' = 0.9 B`. A standby
    /// that dies is
    /// listed until then; an active one is replaced within its lease
    /// (its heartbeats are never stretched). Worked out again on every
    /// tick of the node's clock (at most a second).
    pub fn peer_timeout(&self) -> Duration {
        self.core().presence.peer_timeout()
    }

    /// The peer list, as a [`tokio::sync::watch::Receiver`] that is told
    /// when a peer joins, leaves (not heard within the timeout), restarts
    /// (a new session replaces its entry) or, with failover, changes role:
    /// `changed().await` waits for that. Read the list with
    /// [`peers`](Node::peers) (the watched value also holds peers that are
    /// about to leave).
    pub fn watch_peers(&self) -> tokio::sync::watch::Receiver<Vec<Peer>> {
        self.core().presence.watch()
    }

    /// The changes of the peer list one by one, from now on:
    /// [`PeerEvent::Joined`](crate::peers::PeerEvent::Joined) when an instance is
    /// first heard, [`Left`](crate::peers::PeerEvent::Left) when it is not heard
    /// within the peer timeout, [`Changed`](crate::peers::PeerEvent::Changed) when
    /// its role, meta or kinds change; each once. A restarted instance (a
    /// new session) is a `Left` of its old session, then a `Joined` of its
    /// new one, as soon as its new session is heard.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> socketscience::Result<()> {
    /// use std::time::Duration;
    /// use socketscience::{LocalChat, Node};
    /// use socketscience::peers::PeerEvent;
    ///
    /// let chat = LocalChat::new();
    /// let a = Node::builder("a").transport(chat.join("smokey")).start().await?;
    /// let mut events = a.peer_events();
    /// let b = Node::builder("b").transport(chat.join("smokey"))
    ///     .heartbeat(Duration::from_millis(50)).start().await?;
    /// match events.recv().await {
    ///     Some(PeerEvent::Joined(peer)) => assert_eq!(peer.instance(), "b"),
    ///     other => panic!("{other:?}"),
    /// }
    /// # a.shutdown().await?; b.shutdown().await
    /// # }
    /// ```
    pub fn peer_events(&self) -> PeerEvents {
        self.core().presence.events()
    }

    /// Replaces what this node says about itself
    /// ([`NodeBuilder::meta`](crate::NodeBuilder::meta)): any serde value,
    /// at most [`MAX_META_BYTES`](crate::peers::MAX_META_BYTES) as JSON. Announced
    /// with the next heartbeat when it differs from the last; the peers'
    /// [`PeerEvent::Changed`](crate::peers::PeerEvent::Changed) follow. Fails with
    /// [`Error::InvalidOption`] (keeping the old meta) when it does not
    /// serialise or is too large.
    pub fn set_meta<T: serde::Serialize>(&self, meta: T) -> Result<()> {
        let json =
            crate::presence::canonical_meta(&meta).map_err(|reason| Error::InvalidOption {
                option: "meta",
                reason: format!(
                    "the meta of node `{}` cannot be sent: {reason}",
                    self.name()
                ),
            })?;
        self.core().presence.set_meta(Some(json));
        Ok(())
    }

    /// Waits until `n` other instances are heard ([`peers`](Node::peers)
    /// lists at least `n`), and gives them; fails with
    /// [`Error::PeersNotHeard`], naming those heard, after `timeout`. What a
    /// node sends before the others are in the room reaches none of them
    /// (a chat keeps no history for late joiners), so a fleet that greets
    /// itself at start waits for this first. Works on every transport.
    ///
    /// The node posts a heartbeat when called, and again after 1, 2, 4, ...
    /// seconds (at most a heartbeat interval apart) while it waits, since
    /// the others may enter the room after it posted (on IRC, `start`
    /// returns before the channel is joined); every node answers a
    /// newcomer's first post with one of its own (within its clock tick, at
    /// most a second; four such answers at once, then one per half
    /// heartbeat interval, each covering every newcomer heard since the
    /// last), so a fleet started together finds itself within a few round
    /// trips of the chat, whatever the heartbeat interval. A fleet whose
    /// heartbeats the presence budget stretches to an interval `T`
    /// ([`NodeBuilder::presence_budget`](crate::NodeBuilder::presence_budget))
    /// answers within `T` instead, each instance at a moment drawn at
    /// random, so that its answers stay within the budget. Only
    /// trusted accounts count ([`NodeBuilder::trust`](crate::NodeBuilder::trust)):
    /// if it times out while the others run, see
    /// [`Node::untrusted_accounts`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> socketscience::Result<()> {
    /// use std::time::Duration;
    /// use socketscience::{LocalChat, Node};
    ///
    /// let chat = LocalChat::new();
    /// let a = Node::builder("a").transport(chat.join("smokey")).start().await?;
    /// let b = Node::builder("b").transport(chat.join("smokey")).start().await?;
    /// let peers = a.wait_for_peers(1, Duration::from_secs(30)).await?;
    /// assert_eq!(peers[0].instance(), "b");
    /// # a.shutdown().await?; b.shutdown().await
    /// # }
    /// ```
    pub async fn wait_for_peers(&self, n: usize, timeout: Duration) -> Result<Vec<Peer>> {
        let deadline = Instant::now() + timeout;
        let mut changes = self.watch_peers();
        // Announced now and then again, further and further apart: a
        // newcomer's first post is answered, so one that reaches them is
        // enough.
        let heartbeat = self.core().presence.options.heartbeat;
        let most = if heartbeat.is_zero() {
            ANNOUNCE_MOST
        } else {
            heartbeat.min(ANNOUNCE_MOST)
        };
        let mut gap = Duration::from_secs(1).min(most);
        let mut announce_at = Instant::now();
        loop {
            if self.core().outbox.is_closed() {
                return Err(self.stopped());
            }
            let peers = self.peers();
            if peers.len() >= n {
                return Ok(peers);
            }
            if Instant::now() >= announce_at {
                self.core().announce();
                announce_at = Instant::now() + gap;
                gap = (gap * 2).min(most);
            }
            // Woken when a peer joins; and at least every second, as peers
            // may also leave (and the node may stop) meanwhile.
            let wake = deadline
                .min(announce_at)
                .min(Instant::now() + Duration::from_secs(1));
            let changed = tokio::time::timeout_at(wake, changes.changed()).await;
            if Instant::now() >= deadline && !matches!(changed, Ok(Ok(()))) {
                return Err(Error::PeersNotHeard {
                    name: self.name().to_owned(),
                    wanted: n,
                    heard: peers.iter().map(|p| p.instance().to_owned()).collect(),
                    timeout,
                });
            }
        }
    }
}

/// Answers to newcomers at once: a fleet started together finds itself
/// within a few of them (one answers every newcomer heard since the last).
const ANSWER_BURST: u32 = 4;

/// The presence task of a node: ticks the coarse clock, works out the
/// fleet's interval and peer timeout again from the peers heard
/// (`Presence::reconsider`), answers a newcomer (or a restarted peer) with
/// a heartbeat, and, on a node without failover, asks for one when the
/// node has posted nothing for its interval (drawn anew each time, see
/// `Options::drawn`; the failover task heartbeats for a node with
/// failover). An answer leaves at once while the fleet's interval is not
/// stretched, at a moment drawn within the interval when it is
/// (`Options::answer_delay`: a large fleet's answers to a newcomer stay
/// within the presence budget), and covers every newcomer heard until it
/// leaves. Answers leave at once up to [`ANSWER_BURST`], then at most one
/// per half the heartbeat interval (as answers to claims,
/// `node::failover`): a flood of new names cannot drive the node's
/// posting; an answer held back is posted when it may be. Ends when the
/// node shuts down.
pub(crate) async fn run(core: Arc<Core>) {
    let presence = &core.presence;
    let options = presence.options;
    let mut ticks = tokio::time::interval(options.tick());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut posts = core.counters.snapshot().posts;
    let mut last_active = Instant::now();
    let mut rng = fastrand::Rng::with_seed(core.session ^ 0x9e37_79b9_7f4a_7c15);
    let mut draw = rng.f64();
    let mut answers = TokenBucket::new(
        2.0 / options.heartbeat.as_secs_f64().max(0.001),
        ANSWER_BURST,
        Instant::now(),
    );
    // When it answers the newcomers heard since its last answer.
    let mut answer_at: Option<Instant> = None;
    // The failover task heartbeats for a node taking part in an election.
    let idle_heartbeats = core.election.is_none();
    // Shared handlers: the node takes its share once it has heard the
    // others answer its first heartbeat; it confirms what it ran at most
    // every half interval.
    let share_at = Instant::now() + options.heartbeat;
    let mut sharing = false;
    let mut last_confirmed = Instant::now();
    loop {
        ticks.tick().await;
        if core.outbox.is_closed() {
            return;
        }
        presence.tick();
        presence.reconsider();
        if options.heartbeat.is_zero() {
            continue;
        }
        if !sharing && Instant::now() >= share_at {
            sharing = true;
            if core.shared.open() && presence.set_shared_open(true) {
                core.announce();
            }
        }
        if presence.newcomer.swap(false, Ordering::Relaxed) && answer_at.is_none() {
            answer_at = Some(Instant::now() + options.answer_delay(presence.interval(), rng.f64()));
        }
        if answer_at.is_some_and(|at| Instant::now() >= at) && answers.take(Instant::now()) {
            answer_at = None;
            last_active = Instant::now();
            draw = rng.f64();
            // It has not heard this node's meta and kinds either.
            presence.own_due();
            core.announce();
            continue;
        }
        let now_posts = core.counters.snapshot().posts;
        if now_posts != posts {
            posts = now_posts;
            last_active = Instant::now();
        } else if idle_heartbeats
            && last_active.elapsed() >= options.drawn(presence.interval(), draw)
        {
            last_active = Instant::now();
            draw = rng.f64();
            core.announce();
        }
        // Shared jobs dealt with since the last heartbeat are confirmed
        // within half an interval, whatever else the node posts.
        if core.shared.unconfirmed() && last_confirmed.elapsed() >= options.heartbeat / 2 {
            last_confirmed = Instant::now();
            core.announce();
        }
    }
}
