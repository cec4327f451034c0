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

use tokio::sync::watch;
use tokio::time::Instant;

use crate::failover::Role;
use crate::wire::WireRange;

/// Another instance heard in the room, from [`Node::peers`](crate::Node::peers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    instance: Arc<str>,
    account: Arc<str>,
    session: u64,
    last_heard: Instant,
    /// Failover: filled in by `Node::peers` (see `failover`).
    pub(crate) role: Option<Role>,
}

impl Peer {
    /// The instance's name (`_from`).
    pub fn instance(&self) -> &str {
        &self.instance
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
}

/// The presence and repair options of a node (see the `NodeBuilder`
/// methods of the same names).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    /// Zero: no heartbeats.
    pub(crate) heartbeat: Duration,
    pub(crate) peer_timeout: Option<Duration>,
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
            history: 1_024,
            history_age: Duration::from_secs(600),
            repair_window: Duration::from_secs(5),
            repair_timeout: Duration::from_secs(60),
            max_held: 4_096,
        }
    }
}

impl Options {
    /// How long a peer stays listed without being heard.
    pub(crate) fn peer_timeout(&self) -> Duration {
        self.peer_timeout.unwrap_or(if self.heartbeat.is_zero() {
            Duration::from_secs(90)
        } else {
            self.heartbeat * 3
        })
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
    peers: watch::Sender<Vec<Peer>>,
}

impl Presence {
    pub(crate) fn new(options: Options) -> Presence {
        Presence {
            options,
            base: Instant::now(),
            coarse: AtomicU64::new(0),
            pending: AtomicBool::new(false),
            queue: Mutex::new(Queue::default()),
            posted_end: AtomicU64::new(0),
            peers: watch::Sender::new(Vec::new()),
        }
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
    /// at coarse time `ms`. Watchers are told of joins and restarts only.
    pub(crate) fn heard(&self, instance: &Arc<str>, account: &Arc<str>, session: u64, ms: u64) {
        let at = self.at(ms);
        self.peers.send_if_modified(|peers| {
            match peers.iter_mut().find(|p| p.instance == *instance) {
                Some(peer) if peer.session == session => {
                    peer.last_heard = at;
                    if peer.account != *account {
                        peer.account = account.clone();
                    }
                    false
                }
                Some(peer) => {
                    *peer = Peer {
                        instance: instance.clone(),
                        account: account.clone(),
                        session,
                        last_heard: at,
                        role: None,
                    };
                    true
                }
                None => {
                    peers.push(Peer {
                        instance: instance.clone(),
                        account: account.clone(),
                        session,
                        last_heard: at,
                        role: None,
                    });
                    true
                }
            }
        });
    }

    /// Drops the peers not heard within the timeout (watchers are told).
    pub(crate) fn expire(&self) {
        let timeout = self.options.peer_timeout();
        let now = Instant::now();
        self.peers.send_if_modified(|peers| {
            let before = peers.len();
            peers.retain(|p| now.saturating_duration_since(p.last_heard) <= timeout);
            peers.len() != before
        });
    }

    /// The peers heard within the timeout.
    pub(crate) fn peers(&self) -> Vec<Peer> {
        let timeout = self.options.peer_timeout();
        let now = Instant::now();
        self.peers
            .borrow()
            .iter()
            .filter(|p| now.saturating_duration_since(p.last_heard) <= timeout)
            .cloned()
            .collect()
    }

    /// Failover: tells the watchers of the peer list that a peer's role
    /// changed.
    pub(crate) fn role_changed(&self) {
        self.peers.send_modify(|_| {});
    }

    /// A receiver of the peer list, changed when a peer joins, leaves or
    /// restarts.
    pub(crate) fn watch(&self) -> watch::Receiver<Vec<Peer>> {
        self.peers.subscribe()
    }
}
