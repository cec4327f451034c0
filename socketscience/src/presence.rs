//! Presence: who else is in the room ([`Peer`], [`Node::peers`](crate::Node::peers)), the
//! node's heartbeats, and the queue of presence and repair traffic that the
//! dispatcher fills and the transport posts (see `repair`).
//!
//! Nothing here runs per envelope on the hot paths but a relaxed load of a
//! flag (the transport: is there traffic to post?) and of the coarse clock
//! (the dispatcher: when was a sender last heard?).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use crate::failover::Role;
use crate::wire::WireRange;

/// The most bytes an instance's meta ([`NodeBuilder::meta`](crate::NodeBuilder::meta))
/// takes as compact JSON. It travels in heartbeats, which should stay one
/// chat message on IRC; a peer's larger meta is ignored.
pub const MAX_META_BYTES: usize = 1024;
/// The most kinds a peer's `_pk` may list, and the longest kind in it: a
/// longer list (or kind) is ignored whole.
pub(crate) const MAX_PEER_KINDS: usize = 256;
pub(crate) const MAX_KIND_BYTES: usize = 128;
/// How many peer events a [`PeerEvents`] receiver may fall behind before
/// it skips the oldest (and logs how many).
const EVENTS_CAPACITY: usize = 1024;

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

/// A change in the peer list, from [`Node::peer_events`](crate::Node::peer_events),
/// each once, in the order the node noticed them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerEvent {
    /// An instance was heard that was not listed (or only with another
    /// session: a restarted instance is a [`Left`](PeerEvent::Left) of its
    /// old session, then a `Joined` of its new one). What its first post
    /// said (meta, kinds, role) is in the peer already.
    Joined(Peer),
    /// An instance was not heard within the peer timeout, or restarted
    /// (the peer is as last heard, with its old session).
    Left(Peer),
    /// A listed instance said something new about itself.
    Changed {
        /// The peer as it is now.
        peer: Peer,
        /// What changed.
        change: PeerChange,
    },
}

impl PeerEvent {
    /// The peer the event is about.
    pub fn peer(&self) -> &Peer {
        match self {
            PeerEvent::Joined(p) | PeerEvent::Left(p) | PeerEvent::Changed { peer: p, .. } => p,
        }
    }
}

/// What changed in a [`PeerEvent::Changed`]: one event per change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum PeerChange {
    /// Its role in the election ([`Peer::role`]).
    Role,
    /// Its meta ([`Peer::meta`]).
    Meta,
    /// The kinds it handles ([`Peer::kinds`]), or handles shared
    /// ([`Peer::shared_kinds`]).
    Kinds,
}

/// The peer events of a node, from [`Node::peer_events`](crate::Node::peer_events):
/// `recv().await` gives each, `None` once the node is gone. A receiver that
/// falls more than 1 024 events behind skips the oldest (logged at WARN).
#[derive(Debug)]
pub struct PeerEvents {
    rx: broadcast::Receiver<PeerEvent>,
}

impl PeerEvents {
    /// The next event; `None` once the node is dropped.
    pub async fn recv(&mut self) -> Option<PeerEvent> {
        loop {
            match self.rx.recv().await {
                Ok(event) => return Some(event),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(skipped = n, "peer events not read in time were skipped");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<PeerEvent> {
        loop {
            match self.rx.try_recv() {
                Ok(event) => return Some(event),
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    tracing::warn!(skipped = n, "peer events not read in time were skipped");
                }
                Err(_) => return None,
            }
        }
    }
}

/// What a post said of its sender beyond being alive (a heartbeat's `_el`,
/// `_pv`, `_pk`); `None`: not said, unchanged.
#[derive(Debug, Default)]
pub(crate) struct Said {
    pub(crate) role: Option<Role>,
    /// With `role`: the term it said.
    pub(crate) term: Option<u64>,
    pub(crate) meta: Option<Arc<str>>,
    pub(crate) kinds: Option<Arc<[String]>>,
    /// `_ps`: the kinds it handles shared.
    pub(crate) shared: Option<Arc<[String]>>,
}

/// What this node says about itself in heartbeats.
#[derive(Debug, Default)]
struct Own {
    /// Compact JSON, sorted keys.
    meta: Option<Arc<str>>,
    kinds: Vec<String>,
    /// The kinds it has shared handlers for.
    shared: Vec<String>,
    /// Whether it takes its share of them (`_ps` lists them; otherwise,
    /// when it has some, `_ps` is empty).
    shared_open: bool,
}

/// This node's entries of a heartbeat, when due.
#[derive(Debug)]
pub(crate) struct OwnSaid {
    pub(crate) meta: Option<Arc<str>>,
    pub(crate) kinds: Vec<String>,
    /// `None`: it has no shared handlers (no `_ps`).
    pub(crate) shared: Option<Vec<String>>,
}

/// Canonical JSON of a serde value: compact, object keys sorted (so that
/// "changed" is a comparison of bytes); fails when it does not serialise
/// or exceeds [`MAX_META_BYTES`].
pub(crate) fn canonical_meta<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, String> {
    let mut value =
        serde_json::to_value(value).map_err(|e| format!("it does not serialise: {e}"))?;
    value.sort_all_objects();
    let json = value.to_string();
    if json.len() > MAX_META_BYTES {
        return Err(format!(
            "it is {} bytes as JSON, more than {MAX_META_BYTES}: heartbeats carry it, keep it to a \
             version, a commit, a host",
            json.len()
        ));
    }
    Ok(json)
}

/// The presence and repair options of a node (see the `NodeBuilder`
/// methods of the same names).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    /// Zero: no heartbeats.
    pub(crate) heartbeat: Duration,
    pub(crate) peer_timeout: Option<Duration>,
    /// What the fleet's presence may post per minute, all instances
    /// together (resolved at start: the option, or a share of what the
    /// transport says its room takes); `None`: no bound (as before 0.4).
    pub(crate) budget: Option<f64>,
    /// Whether this node takes part in an election: then one instance (the
    /// active one) keeps the heartbeat interval and the others share the
    /// rest of the budget.
    pub(crate) failover: bool,
    pub(crate) history: usize,
    pub(crate) history_age: Duration,
    pub(crate) repair_window: Duration,
    pub(crate) repair_timeout: Duration,
    pub(crate) max_held: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            heartbeat: Duration::from_secs(30),
            peer_timeout: None,
            budget: None,
            failover: false,
            history: 16_384,
            history_age: Duration::from_secs(600),
            repair_window: Duration::from_secs(5),
            repair_timeout: Duration::from_secs(60),
            max_held: 4_096,
        }
    }
}

/// The share of a room's posts its fleet's presence takes by default
/// ([`NodeBuilder::presence_budget`](crate::NodeBuilder::presence_budget)):
/// an eighth of what the transport says the room takes (on Stack Exchange,
/// 7.5 a minute: a fleet of three with the default heartbeat is not
/// stretched).
pub(crate) const DEFAULT_BUDGET_SHARE: f64 = 0.125;
/// The part of the budget the intervals aim at: drawn at random, they
/// take a little more in some minutes, a little less in others.
pub(crate) const BUDGET_AIM: f64 = 0.9;

impl Options {
    /// How long a peer stays listed without being heard while the interval
    /// is not stretched (the option, or three heartbeat intervals).
    fn base_timeout(&self) -> Duration {
        self.peer_timeout.unwrap_or(if self.heartbeat.is_zero() {
            Duration::from_secs(90)
        } else {
            self.heartbeat * 3
        })
    }

    /// The mean interval of one instance's heartbeats when `members`
    /// instances (this one included) hear each other: the heartbeat
    /// interval `h`, or longer when the fleet would take more than its
    /// budget `B` (posts per minute):
    ///
    /// - without failover, every instance `max(h, members × 60 s / B')`;
    /// - with failover, the active instance keeps `h` (its lease needs it)
    ///   and each of the `members - 1` standbys takes
    ///   `max(h, (members - 1) × 60 s / (B' - 60 s / h))` (the budget left
    ///   once the active took its share, at least half of it);
    ///
    /// where `B' = 0.9 B` ([`BUDGET_AIM`]). This is the standbys' interval
    /// (the longest one in the fleet).
    pub(crate) fn stretched(&self, members: usize) -> Duration {
        let h = self.heartbeat;
        let Some(budget) = self.budget else {
            return h;
        };
        let budget = budget * BUDGET_AIM;
        if h.is_zero() || !(budget.is_finite() && budget > 0.0) {
            return h;
        }
        let (posters, share) = if self.failover {
            let active = 60.0 / h.as_secs_f64();
            (
                members.saturating_sub(1).max(1),
                (budget - active).max(budget / 2.0),
            )
        } else {
            (members.max(1), budget)
        };
        // At most a day: a budget of next to nothing is not a reason to
        // overflow.
        let secs = (posters as f64 * 60.0 / share).min(86_400.0);
        Duration::from_secs_f64(secs).max(h)
    }

    /// How long a peer stays listed without being heard when the fleet's
    /// interval is `interval` (see [`stretched`](Options::stretched)): the
    /// peer timeout ([`NodeBuilder::peer_timeout`](crate::NodeBuilder::peer_timeout),
    /// default three heartbeat intervals), stretched as the interval is:
    /// `timeout × interval / h`.
    pub(crate) fn timeout_for(&self, interval: Duration) -> Duration {
        let base = self.base_timeout();
        if self.heartbeat.is_zero() || interval <= self.heartbeat {
            return base;
        }
        base.mul_f64(interval.as_secs_f64() / self.heartbeat.as_secs_f64())
    }

    /// The interval until an instance's next heartbeat, drawn from `u` in
    /// `[0, 1)`: the heartbeat interval as it is while not stretched; a
    /// stretched interval `T` is drawn between `T / 2` and `3 T / 2` (never
    /// below the heartbeat interval), so that instances started together
    /// drift apart (RTCP does so, RFC 3550 section 6.3.1).
    pub(crate) fn drawn(&self, interval: Duration, u: f64) -> Duration {
        if interval <= self.heartbeat {
            return self.heartbeat;
        }
        interval.mul_f64(0.5 + u).max(self.heartbeat)
    }

    /// How often the node's clock ticks: the presence task (heartbeats,
    /// the coarse clock) and the dispatcher's repair timers.
    pub(crate) fn tick(&self) -> Duration {
        let mut tick = Duration::from_secs(1).min(self.repair_window / 8);
        if !self.heartbeat.is_zero() {
            tick = tick.min(self.heartbeat / 2);
        }
        tick.max(Duration::from_millis(1))
    }
}

/// A duration in whole milliseconds (saturating).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
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

/// Presence and repair traffic waiting for the transport.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    /// A heartbeat is due (the node posted nothing for a while).
    pub(crate) heartbeat: bool,
    /// Ranges this node asks others for.
    pub(crate) requests: Vec<WireRange>,
    /// Ranges this node says cannot be repaired.
    pub(crate) unrepairable: Vec<WireRange>,
    /// Ranges of this node's own envelopes to post again.
    pub(crate) serve: Vec<(u64, u64)>,
}

impl Queue {
    fn is_empty(&self) -> bool {
        !self.heartbeat
            && self.requests.is_empty()
            && self.unrepairable.is_empty()
            && self.serve.is_empty()
    }
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

/// Makes `list` hold `kinds`; whether it changed.
fn replace_if_changed(list: &mut Vec<String>, kinds: Vec<&str>) -> bool {
    if list.iter().map(String::as_str).eq(kinds.iter().copied()) {
        return false;
    }
    *list = kinds.into_iter().map(String::from).collect();
    true
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

    /// Sets this node's meta (canonical JSON); announced at the next
    /// heartbeat if it changed.
    pub(crate) fn set_meta(&self, meta: Option<String>) {
        let mut own = crate::sync::lock(&self.own);
        if own.meta.as_deref() != meta.as_deref() {
            own.meta = meta.map(Arc::from);
            self.own_is_due.store(true, Ordering::SeqCst);
        }
    }

    /// Sets the kinds this node handles, and those it handles shared;
    /// announced at the next heartbeat if they changed.
    pub(crate) fn set_kinds(&self, kinds: Vec<&str>, shared: Vec<&str>) {
        let mut own = crate::sync::lock(&self.own);
        let own = &mut *own;
        // (Both replaced: `|`, not `||`.)
        if replace_if_changed(&mut own.kinds, kinds) | replace_if_changed(&mut own.shared, shared) {
            self.own_is_due.store(true, Ordering::SeqCst);
        }
    }

    /// Whether this node takes its share of its shared kinds (`_ps` lists
    /// them): announced at the next heartbeat if it changed. Returns
    /// whether it has shared kinds (then a heartbeat should say so now).
    pub(crate) fn set_shared_open(&self, open: bool) -> bool {
        let mut own = crate::sync::lock(&self.own);
        if own.shared_open != open {
            own.shared_open = open;
            if !own.shared.is_empty() {
                self.own_is_due.store(true, Ordering::SeqCst);
            }
        }
        !own.shared.is_empty()
    }

    /// Says this node's meta and kinds again at the next heartbeat (a
    /// newcomer has not heard them).
    pub(crate) fn own_due(&self) {
        self.own_is_due.store(true, Ordering::SeqCst);
    }

    /// This node's meta and kinds when they are due (then no longer), for
    /// the heartbeat being written.
    pub(crate) fn take_own(&self) -> Option<OwnSaid> {
        if !self.own_is_due.swap(false, Ordering::SeqCst) {
            return None;
        }
        let own = crate::sync::lock(&self.own);
        Some(OwnSaid {
            meta: own.meta.clone(),
            kinds: own.kinds.clone(),
            shared: (!own.shared.is_empty()).then(|| {
                if own.shared_open {
                    own.shared.clone()
                } else {
                    Vec::new()
                }
            }),
        })
    }

    /// A receiver of the peer events.
    pub(crate) fn events(&self) -> PeerEvents {
        PeerEvents {
            rx: self
                .events
                .get_or_init(|| broadcast::Sender::new(EVENTS_CAPACITY))
                .subscribe(),
        }
    }

    fn emit(&self, events: Vec<PeerEvent>) {
        let Some(sender) = self.events.get() else {
            return;
        };
        for event in events {
            // No receiver: nobody listens, nothing to do.
            let _ = sender.send(event);
        }
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

    /// Adds to the queue; returns whether it holds something (then wake
    /// the transport: see `Bus::push_control`).
    pub(crate) fn push(&self, add: impl FnOnce(&mut Queue)) -> bool {
        let mut queue = crate::sync::lock(&self.queue);
        add(&mut queue);
        if queue.is_empty() {
            return false;
        }
        self.pending.store(true, Ordering::SeqCst);
        true
    }

    /// Whether the queue holds something (cheap: one relaxed load).
    #[inline]
    pub(crate) fn is_pending(&self) -> bool {
        self.pending.load(Ordering::Relaxed)
    }

    /// Takes what the queue holds.
    pub(crate) fn take(&self) -> Queue {
        let mut queue = crate::sync::lock(&self.queue);
        self.pending.store(false, Ordering::SeqCst);
        std::mem::take(&mut *queue)
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

/// Reads a peer's `_pv` (its meta, in `codec`) as canonical JSON; `None`
/// (logged at debug) when it does not read or is too large.
pub(crate) fn read_meta(
    codec: crate::wire::Codec,
    raw: &[u8],
    node: &str,
    from: &str,
) -> Option<Arc<str>> {
    // MessagePack is at most a little larger than the JSON it reads as.
    if raw.len() > MAX_META_BYTES * 2 {
        tracing::debug!(
            node,
            from,
            bytes = raw.len(),
            "ignored a peer's meta: too large"
        );
        return None;
    }
    let value: Result<serde_json::Value, String> = codec.decode(raw);
    match value.and_then(|v| canonical_meta(&v)) {
        Ok(json) => Some(json.into()),
        Err(e) => {
            tracing::debug!(node, from, error = %e, "ignored a peer's meta");
            None
        }
    }
}

/// Reads a peer's `_pk` (the kinds it handles, in `codec`), sorted; `None`
/// (logged at debug) when it does not read or is too long.
pub(crate) fn read_kinds(
    codec: crate::wire::Codec,
    raw: &[u8],
    node: &str,
    from: &str,
) -> Option<Arc<[String]>> {
    match codec.decode::<Vec<String>>(raw) {
        Ok(mut kinds)
            if kinds.len() <= MAX_PEER_KINDS && kinds.iter().all(|k| k.len() <= MAX_KIND_BYTES) =>
        {
            kinds.sort_unstable();
            kinds.dedup();
            Some(kinds.into())
        }
        Ok(kinds) => {
            tracing::debug!(
                node,
                from,
                kinds = kinds.len(),
                "ignored a peer's kinds: too many or too long"
            );
            None
        }
        Err(e) => {
            tracing::debug!(node, from, error = %e, "ignored a peer's kinds");
            None
        }
    }
}

/// Writes this node's `_pv` (meta, canonical JSON), `_pk` (kinds) and,
/// when it has shared handlers, `_ps` (kinds handled shared) entries, key
/// and value, in `codec`: each one entry of a heartbeat body.
pub(crate) fn own_entries(codec: crate::wire::Codec, said: &OwnSaid) -> Vec<Vec<u8>> {
    use crate::wire::{Codec, KEY_PEER_KINDS, KEY_PEER_META, KEY_SHARED_KINDS};
    let (meta, kinds) = (said.meta.as_deref(), &said.kinds);
    let mut entries = Vec::with_capacity(3);
    let key = |buf: &mut Vec<u8>, key: &str| match codec {
        Codec::Json => {
            buf.push(b'"');
            buf.extend_from_slice(key.as_bytes());
            buf.extend_from_slice(b"\":");
        }
        Codec::MessagePack => {
            rmp::encode::write_str(buf, key).expect("writing to a Vec");
        }
    };
    if let Some(meta) = meta {
        let mut buf = Vec::with_capacity(meta.len() + 8);
        key(&mut buf, KEY_PEER_META);
        match codec {
            Codec::Json => buf.extend_from_slice(meta.as_bytes()),
            Codec::MessagePack => {
                // Canonical JSON read back: it serialises.
                let value: serde_json::Value =
                    serde_json::from_str(meta).expect("canonical JSON reads back");
                rmp_serde::encode::write(&mut buf, &value).expect("a JSON value serialises");
            }
        }
        entries.push(buf);
    }
    let mut buf = Vec::with_capacity(16 * kinds.len() + 8);
    key(&mut buf, KEY_PEER_KINDS);
    match codec {
        Codec::Json => serde_json::to_writer(&mut buf, kinds).expect("strings serialise"),
        Codec::MessagePack => rmp_serde::encode::write(&mut buf, kinds).expect("strings serialise"),
    }
    entries.push(buf);
    if let Some(shared) = &said.shared {
        let mut buf = Vec::with_capacity(16 * shared.len() + 8);
        key(&mut buf, KEY_SHARED_KINDS);
        match codec {
            Codec::Json => serde_json::to_writer(&mut buf, shared).expect("strings serialise"),
            Codec::MessagePack => {
                rmp_serde::encode::write(&mut buf, shared).expect("strings serialise")
            }
        }
        entries.push(buf);
    }
    entries
}
