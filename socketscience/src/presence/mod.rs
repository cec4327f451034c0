//! Presence: who else is in the room ([`Peer`], [`Node::peers`](crate::Node::peers)), the
//! node's heartbeats, and the queue of presence and repair traffic that the
//! dispatcher fills and the transport posts (see `repair`).
//!
//! Nothing here runs per envelope on the hot paths but a relaxed load of a
//! flag (the transport: is there traffic to post?) and of the coarse clock
//! (the dispatcher: when was a sender last heard?).
//!
//! This file holds the peer list (`Peer`, `Presence`) and the node's coarse
//! clock; beside it `budget.rs` (the presence options: the heartbeat
//! interval and peer timeout that the fleet's presence budget allows),
//! `queue.rs` (the queue of presence and repair traffic), `entries.rs`
//! (what a heartbeat says of its sender: meta and kinds, read and written)
//! and `events.rs` (the peer events).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use crate::failover::Role;

mod budget;
mod entries;
mod events;
mod queue;

pub(crate) use budget::{Options, DEFAULT_BUDGET_SHARE};
pub use entries::MAX_META_BYTES;
pub(crate) use entries::{canonical_meta, own_entries, read_kinds, read_meta, Said};
pub use events::{PeerChange, PeerEvent, PeerEvents};
pub(crate) use queue::Queue;

use budget::millis;
use entries::Own;

/// Another instance heard in the room, from [`Node::peers`](crate::Node::peers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    instance: Arc<str>,
    account: Arc<str>,
    session: u64,
    last_heard: Instant,
    /// Failover: its role, as its latest `_el` said (see `failover`).
    pub(crate) role: Option<Role>,
    /// Failover: its term, filled in with `role`.
    pub(crate) term: Option<u64>,
    /// What it says about itself (`_pv`), as compact JSON with sorted keys.
    meta: Option<Arc<str>>,
    /// The kinds it handles (`_pk`); `None` until it says (older versions
    /// and Python instances never do).
    kinds: Option<Arc<[String]>>,
    /// The kinds it handles shared (`_ps`); `None` until it says.
    shared: Option<Arc<[String]>>,
}

impl Peer {
    /// A peer first heard (in this session) at `at`.
    fn heard(
        instance: &Arc<str>,
        account: &Arc<str>,
        session: u64,
        at: Instant,
        said: Said,
    ) -> Peer {
        Peer {
            instance: instance.clone(),
            account: account.clone(),
            session,
            last_heard: at,
            role: said.role,
            term: said.term,
            meta: said.meta,
            kinds: said.kinds,
            shared: said.shared,
        }
    }

    /// The instance's name (`_from`).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The instance's name, shared.
    pub(crate) fn instance_arc(&self) -> Arc<str> {
        self.instance.clone()
    }

    /// The chat account it posts as.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// Its session: random per process start. A restarted instance has a
    /// new one (and replaces its old entry).
    pub fn session(&self) -> u64 {
        self.session
    }

    /// When it was last heard (a post of any kind), to within the node's
    /// clock tick (at most a second). On tokio's clock, so a test with a
    /// paused clock sees consistent times.
    pub fn last_heard(&self) -> Instant {
        self.last_heard
    }
}

impl Peer {
    /// The peer's role in the election, as its latest heartbeat said;
    /// `None` when this node takes no part in one
    /// ([`NodeBuilder::failover`](crate::NodeBuilder::failover)) or the peer
    /// has not said (it takes no part, or it has not heartbeated yet).
    pub fn role(&self) -> Option<Role> {
        self.role
    }

    /// The election term its latest heartbeat said (the term it claimed
    /// while active, the highest it knew of while standing by); `None`
    /// when [`role`](Peer::role) is.
    pub fn term(&self) -> Option<u64> {
        self.term
    }

    /// What the instance says about itself
    /// ([`NodeBuilder::meta`](crate::NodeBuilder::meta)), read as `T`;
    /// `None` when it said nothing yet (or runs a version without meta)
    /// or its meta does not read as `T`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> socketscience::Result<()> {
    /// use std::time::Duration;
    /// use socketscience::{data, LocalChat, Node};
    ///
    /// #[data]
    /// #[derive(Debug, PartialEq)]
    /// pub struct Build { pub version: String }
    ///
    /// let chat = LocalChat::new();
    /// let a = Node::builder("a").transport(chat.join("smokey"))
    ///     .heartbeat(Duration::from_millis(50)).start().await?;
    /// let b = Node::builder("b").transport(chat.join("smokey"))
    ///     .heartbeat(Duration::from_millis(50))
    ///     .meta(Build { version: "1.4.2".into() }).start().await?;
    /// let mut events = a.peer_events();
    /// while a.peers().first().and_then(|p| p.meta::<Build>()).is_none() {
    ///     events.recv().await; // joined, then its meta (or both at once)
    /// }
    /// assert_eq!(a.peers()[0].meta(), Some(Build { version: "1.4.2".into() }));
    /// # a.shutdown().await?; b.shutdown().await
    /// # }
    /// ```
    pub fn meta<T: DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_str(self.meta.as_deref()?).ok()
    }

    /// The instance's meta as compact JSON with sorted keys, as it
    /// arrived; `None` when it said none.
    pub fn meta_json(&self) -> Option<&str> {
        self.meta.as_deref()
    }

    /// The message kinds the instance handles (it has handlers for),
    /// sorted; empty when it did not say ([`kinds_known`](Peer::kinds_known)).
    pub fn kinds(&self) -> &[String] {
        self.kinds.as_deref().unwrap_or(&[])
    }

    /// Whether the instance said which kinds it handles: instances of
    /// socketscience before 0.3, and Python SocketScience instances, do
    /// not (so [`Node::ask`](crate::Node::ask) cannot know whether to wait
    /// for them).
    pub fn kinds_known(&self) -> bool {
        self.kinds.is_some()
    }

    /// Whether the instance said it handles `kind`.
    pub fn handles(&self, kind: &str) -> bool {
        self.kinds().iter().any(|k| k == kind)
    }

    /// The message kinds the instance runs shared handlers for
    /// (`#[handler(shared)]`, [`Node::register_shared`](crate::Node::register_shared)),
    /// sorted: it takes its share of those jobs. Empty while it does not
    /// (it has none, it is not ready yet, or it is shutting down).
    pub fn shared_kinds(&self) -> &[String] {
        self.shared.as_deref().unwrap_or(&[])
    }

    /// Whether the instance takes its share of the jobs of `kind`.
    pub fn handles_shared(&self, kind: &str) -> bool {
        self.shared_kinds().iter().any(|k| k == kind)
    }
}

/// Makes `index` say where each of `peers` is.
fn reindex(peers: &[Peer], index: &mut foldhash::HashMap<Arc<str>, usize>) {
    index.clear();
    for (i, p) in peers.iter().enumerate() {
        index.insert(p.instance.clone(), i);
    }
}

/// Forgets the least recently heard eighth of `peers` at once (a flood
/// of new names costs one pass per eighth, not one per name; of peers
/// heard in the same tick, the later listed go first: long-known peers
/// stay). Returns how many went.
fn forget_eighth(peers: &mut Vec<Peer>, index: &mut foldhash::HashMap<Arc<str>, usize>) -> u64 {
    let mut order: Vec<(Instant, std::cmp::Reverse<usize>)> = peers
        .iter()
        .enumerate()
        .map(|(i, p)| (p.last_heard, std::cmp::Reverse(i)))
        .collect();
    let cut = MAX_PEERS / 8;
    order.select_nth_unstable(cut);
    let mut gone = vec![false; peers.len()];
    for &(_, std::cmp::Reverse(i)) in &order[..cut] {
        gone[i] = true;
    }
    let mut at = 0;
    peers.retain(|_| {
        at += 1;
        !gone[at - 1]
    });
    reindex(peers, index);
    cut as u64
}

/// A node's presence state, shared by its tasks.
pub(crate) struct Presence {
    pub(crate) options: Options,
    base: Instant,
    /// Milliseconds since `base`, as of the last tick.
    coarse: AtomicU64,
    /// Whether `queue` holds something (read by the transport per post).
    pending: AtomicBool,
    queue: Mutex<Queue>,
    /// One past the highest sequence number this node has posted.
    pub(crate) posted_end: AtomicU64,
    /// A peer joined or restarted since the presence task last looked (it
    /// answers with a heartbeat: `Node::wait_for_peers`).
    pub(crate) newcomer: AtomicBool,
    peers: watch::Sender<Vec<Peer>>,
    /// Where each peer is in the watched list (changed only under its
    /// lock, in `send_if_modified`): a peer is found without a search.
    index: Mutex<foldhash::HashMap<Arc<str>, usize>>,
    /// Made by the first [`PeerEvents`] (a channel holds its 1 024 slots
    /// from the start: a node nobody asks for events keeps none).
    events: std::sync::OnceLock<broadcast::Sender<PeerEvent>>,
    own: Mutex<Own>,
    /// This node's meta and kinds go with its next heartbeat (they
    /// changed, or a newcomer has not heard them).
    own_is_due: AtomicBool,
    /// The fleet's heartbeat interval as of the last tick, in
    /// milliseconds ([`Options::stretched`]).
    interval_ms: AtomicU64,
    /// The peer timeout as of the last tick, in milliseconds
    /// ([`Options::timeout_for`]).
    timeout_ms: AtomicU64,
}

/// Most peers listed; past it the least recently heard eighth is
/// forgotten at once (counted in `Stats::peers_dropped`). The election
/// follows as many.
pub(crate) const MAX_PEERS: usize = crate::failover::MAX_PEERS;

impl Presence {
    pub(crate) fn new(options: Options) -> Presence {
        Presence {
            options,
            base: Instant::now(),
            coarse: AtomicU64::new(0),
            pending: AtomicBool::new(false),
            queue: Mutex::new(Queue::default()),
            posted_end: AtomicU64::new(0),
            newcomer: AtomicBool::new(false),
            peers: watch::Sender::new(Vec::new()),
            index: Mutex::new(foldhash::HashMap::default()),
            events: std::sync::OnceLock::new(),
            own: Mutex::new(Own::default()),
            own_is_due: AtomicBool::new(true),
            interval_ms: AtomicU64::new(millis(options.stretched(1))),
            timeout_ms: AtomicU64::new(millis(options.timeout_for(options.stretched(1)))),
        }
    }

    /// How long a peer stays listed without being heard, as it follows
    /// from the budget and the fleet's size at the last tick.
    pub(crate) fn peer_timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.load(Ordering::Relaxed))
    }

    /// The fleet's heartbeat interval (the standbys' with failover) at the
    /// last tick ([`Options::stretched`]).
    pub(crate) fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms.load(Ordering::Relaxed))
    }

    /// Works out the interval and the peer timeout again from the peers
    /// heard now (on each tick of the presence task): a fleet that grows
    /// stretches them, one that shrinks (its peers expired) narrows them.
    pub(crate) fn reconsider(&self) {
        let timeout = self.peer_timeout();
        let now = Instant::now();
        let live = self
            .peers
            .borrow()
            .iter()
            .filter(|p| now.saturating_duration_since(p.last_heard) <= timeout)
            .count();
        let interval = self.options.stretched(live + 1);
        self.interval_ms.store(millis(interval), Ordering::Relaxed);
        self.timeout_ms.store(
            millis(self.options.timeout_for(interval)),
            Ordering::Relaxed,
        );
    }

    /// When the node started.
    pub(crate) fn started(&self) -> Instant {
        self.base
    }

    /// The coarse clock: milliseconds since the node started, as of its
    /// last tick.
    #[inline]
    pub(crate) fn coarse_ms(&self) -> u64 {
        self.coarse.load(Ordering::Relaxed)
    }

    fn at(&self, ms: u64) -> Instant {
        self.base + Duration::from_millis(ms)
    }

    /// Advances the coarse clock to now.
    pub(crate) fn tick(&self) {
        let ms = self.base.elapsed().as_millis() as u64;
        self.coarse.fetch_max(ms, Ordering::Relaxed);
    }

    /// Notes that `instance` (of `account`, session `session`) was heard
    /// at coarse time `ms`, saying `said`. Watchers are told of joins,
    /// restarts and changes; the events say which. Returns how many peers
    /// were forgotten to make room.
    pub(crate) fn heard(
        &self,
        instance: &Arc<str>,
        account: &Arc<str>,
        session: u64,
        ms: u64,
        said: Said,
    ) -> u64 {
        let at = self.at(ms);
        let mut forgotten = 0;
        let mut joined = false;
        let mut events = Vec::new();
        self.peers.send_if_modified(|peers| {
            let mut index = crate::sync::lock(&self.index);
            let Some(&i) = index.get(instance) else {
                if peers.len() >= MAX_PEERS {
                    forgotten = forget_eighth(peers, &mut index);
                }
                let peer = Peer::heard(instance, account, session, at, said);
                events.push(PeerEvent::Joined(peer.clone()));
                index.insert(instance.clone(), peers.len());
                peers.push(peer);
                joined = true;
                return true;
            };
            let peer = &mut peers[i];
            if peer.session == session {
                peer.last_heard = at;
                if peer.account != *account {
                    peer.account = account.clone();
                }
                let mut changed = false;
                if said.role.is_some() {
                    peer.term = said.term;
                    if said.role != peer.role {
                        peer.role = said.role;
                        events.push(PeerEvent::Changed {
                            peer: peer.clone(),
                            change: PeerChange::Role,
                        });
                        changed = true;
                    }
                }
                if said.meta.is_some() && said.meta != peer.meta {
                    peer.meta = said.meta;
                    events.push(PeerEvent::Changed {
                        peer: peer.clone(),
                        change: PeerChange::Meta,
                    });
                    changed = true;
                }
                let shared_changed = said.shared.is_some() && said.shared != peer.shared;
                if shared_changed {
                    peer.shared = said.shared;
                }
                if (said.kinds.is_some() && said.kinds != peer.kinds) || shared_changed {
                    if said.kinds.is_some() {
                        peer.kinds = said.kinds;
                    }
                    events.push(PeerEvent::Changed {
                        peer: peer.clone(),
                        change: PeerChange::Kinds,
                    });
                    changed = true;
                }
                return changed;
            }
            // A live peer of another account is not replaced: only its
            // owner restarts it (the dispatcher refused the rest).
            if peer.account != *account
                && at.saturating_duration_since(peer.last_heard) <= self.peer_timeout()
            {
                return false;
            }
            let old = std::mem::replace(peer, Peer::heard(instance, account, session, at, said));
            // Expired but not yet dropped, or restarted: it left.
            events.push(PeerEvent::Left(old));
            events.push(PeerEvent::Joined(peer.clone()));
            joined = true;
            true
        });
        if joined {
            self.newcomer.store(true, Ordering::Relaxed);
        }
        self.emit(events);
        forgotten
    }

    /// Whether `account` may speak for `instance`: the instance is not
    /// listed, is of that account, or was not heard within the timeout
    /// (the rule of [`heard`](Self::heard), for what the peer list does not
    /// hold: the election's view of the instance).
    pub(crate) fn speaks_for(&self, instance: &str, account: &Arc<str>) -> bool {
        let peers = self.peers.borrow();
        let index = crate::sync::lock(&self.index);
        index.get(instance).is_none_or(|&i| {
            let peer = &peers[i];
            peer.account == *account
                || Instant::now().saturating_duration_since(peer.last_heard) > self.peer_timeout()
        })
    }

    /// Drops the peers not heard within the timeout (watchers are told).
    pub(crate) fn expire(&self) {
        let timeout = self.peer_timeout();
        let now = Instant::now();
        let mut events = Vec::new();
        self.peers.send_if_modified(|peers| {
            let before = peers.len();
            peers.retain(|p| {
                let live = now.saturating_duration_since(p.last_heard) <= timeout;
                if !live {
                    events.push(PeerEvent::Left(p.clone()));
                }
                live
            });
            if peers.len() == before {
                return false;
            }
            reindex(peers, &mut crate::sync::lock(&self.index));
            true
        });
        self.emit(events);
    }

    /// Calls `f` with the peer list as it is (peers about to leave
    /// included), without copying it.
    pub(crate) fn with_peers<R>(&self, f: impl FnOnce(&[Peer]) -> R) -> R {
        f(&self.peers.borrow())
    }

    /// The peers heard within the timeout.
    pub(crate) fn peers(&self) -> Vec<Peer> {
        let timeout = self.peer_timeout();
        let now = Instant::now();
        self.peers
            .borrow()
            .iter()
            .filter(|p| now.saturating_duration_since(p.last_heard) <= timeout)
            .cloned()
            .collect()
    }

    /// A receiver of the peer list, changed when a peer joins, leaves or
    /// restarts.
    pub(crate) fn watch(&self) -> watch::Receiver<Vec<Peer>> {
        self.peers.subscribe()
    }
}
