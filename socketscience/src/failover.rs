//! Failover: electing one active instance among the live ones, through the
//! chat alone ([`Failover`], [`Role`], [`Node::role`](crate::Node::role),
//! [`Node::watch_role`](crate::Node::watch_role)).
//!
//! Every node taking part says, in each heartbeat, its term, its role, its
//! priority and whether it may become active (the reserved key `_el`, see
//! `docs/wire-format.md`). Every node evaluates the same rule:
//!
//! - a claim carries a term that only grows; between two actives, the
//!   higher term wins, then the higher priority, then the smaller name;
//!   the other steps down as soon as it hears the winner (of the same
//!   term, once the winner, hearing it, claimed the next term, or after a
//!   lease if it does not: the tenure that stays holds the higher fencing
//!   token, whichever heard the other first);
//! - a standby that has heard no active for the lease claims the next term
//!   (the highest it has heard, plus one); the best-ranked standby (priority,
//!   then name) claims first, the others wait one heartbeat interval more
//!   per rank, and hear its claim before their turn comes;
//! - a node that starts is a standby and listens for one lease before it
//!   claims (unless it hears an active sooner): instances started together
//!   elect the best-ranked one, and a restarted instance comes back as a
//!   standby;
//! - with [`Failover::quorum`], a node is active only while it hears at
//!   least that many instances, itself included.
//!
//! The active node heartbeats every interval even when it posts other
//! things: the election's state travels only in heartbeats, and its lease
//! runs from them. A standby heartbeats when it posted nothing else for
//! its interval, which stretches with the fleet's size under the presence
//! budget (`presence::Options::stretched`); it stays counted (quorum,
//! ranks) while presence hears it, for up to the peer timeout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::wire::{Codec, KEY_ELECTION};

/// Taking part in the election of one active instance, for
/// [`NodeBuilder::failover`](crate::NodeBuilder::failover).
///
/// ```
/// use socketscience::Failover;
/// use std::time::Duration;
///
/// let failover = Failover::new().priority(10).lease(Duration::from_secs(90)).quorum(2);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failover {
    priority: i64,
    lease: Option<Duration>,
    quorum: usize,
    preempt: bool,
    eligible: bool,
}

impl Default for Failover {
    fn default() -> Self {
        Failover::new()
    }
}

impl Failover {
    /// Priority 0, the default lease (three heartbeat intervals), no
    /// quorum, no preemption.
    pub fn new() -> Failover {
        Failover {
            priority: 0,
            lease: None,
            quorum: 1,
            preempt: false,
            eligible: true,
        }
    }

    /// This instance's priority (default 0): among standbys, the highest
    /// claims first; between two actives of one term, the highest stays.
    /// Equal priorities are ranked by instance name (the smaller first).
    pub fn priority(mut self, priority: i64) -> Failover {
        self.priority = priority;
        self
    }

    /// How long the active instance may go unheard before a standby claims
    /// (default: three heartbeat intervals). Also how long a starting node
    /// listens before it claims. It must be longer than the heartbeat
    /// interval plus the chat's delivery delay, or a slow chat makes
    /// standbys claim while the active lives.
    pub fn lease(mut self, lease: Duration) -> Failover {
        self.lease = Some(lease);
        self
    }

    /// Becomes (and stays) active only while hearing at least `instances`
    /// instances within the lease, this one included (default 1: no
    /// quorum). For a fleet of three, `quorum(2)`: the side of a partition
    /// holding one instance stays without an active rather than having two.
    pub fn quorum(mut self, instances: usize) -> Failover {
        self.quorum = instances.max(1);
        self
    }

    /// Whether this instance, as a standby that outranks the live active
    /// one by priority, takes over from it (default `false`: an active
    /// instance that lives and is heard is never preempted).
    pub fn preempt(mut self, preempt: bool) -> Failover {
        self.preempt = preempt;
        self
    }

    /// Whether this instance may become active at all (default `true`):
    /// `false` makes a permanent standby that still takes part (it is
    /// listed with its role, and counts towards the quorum).
    pub fn eligible(mut self, eligible: bool) -> Failover {
        self.eligible = eligible;
        self
    }
}

/// The role of an instance in the election.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The one instance that does the job (scans, posts reports).
    Active,
    /// Ready to take over when the active instance is gone.
    Standby,
}

/// What a node knows of one peer's election state.
#[derive(Debug, Clone)]
struct PeerState {
    session: u64,
    term: u64,
    active: bool,
    priority: i64,
    eligible: bool,
    /// Its claim is an override ([`Node::force_role`](crate::Node::force_role)).
    forced: bool,
    heard: Instant,
}

/// A claim's strength: term, then an override over an election, then
/// priority, then the smaller name.
fn claim_key(
    term: u64,
    forced: bool,
    priority: i64,
    name: &str,
) -> (u64, bool, i64, std::cmp::Reverse<&str>) {
    (term, forced, priority, std::cmp::Reverse(name))
}

/// A standby's rank: priority, then the smaller name.
fn rank_key(priority: i64, name: &str) -> (i64, std::cmp::Reverse<&str>) {
    (priority, std::cmp::Reverse(name))
}

#[derive(Debug)]
struct State {
    term: u64,
    role: Role,
    /// A role the application forced ([`Node::force_role`](crate::Node::force_role)).
    forced: Option<Role>,
    started: Instant,
    /// Whether it has taken any peer's claim yet (until then, any term up
    /// to [`MAX_TERM`] is taken).
    heard_any: bool,
    /// Since when the node has heard its quorum (the start, or when it
    /// heard enough instances again): it listens one lease from then.
    listening_since: Instant,
    /// Whether it heard its quorum at the last evaluation.
    had_quorum: bool,
    /// When an active instance (another one) was last heard; `None`: never.
    active_heard: Option<Instant>,
    /// How long a standby stays counted without being heard: the peer
    /// timeout (it stretches with the fleet's size, see
    /// `presence::Options::stretched`), at least the lease.
    standby_timeout: Duration,
    /// While active: since when it has heard a stronger claim of its own
    /// term (it holds on for a lease at most, for the winner to claim the
    /// next term).
    outclaimed_since: Option<Instant>,
    peers: HashMap<Arc<str>, PeerState>,
}

impl State {
    /// The highest term known: this node's, or one a peer claimed.
    fn max_term(&self) -> u64 {
        self.peers
            .values()
            .map(|p| p.term)
            .fold(self.term, u64::max)
    }
}

/// A node's election.
pub(crate) struct Election {
    name: Arc<str>,
    priority: i64,
    lease: Duration,
    pub(crate) heartbeat: Duration,
    quorum: usize,
    preempt: bool,
    eligible: bool,
    state: Mutex<State>,
    pub(crate) role: watch::Sender<Role>,
    /// The fencing token: the term of the current tenure while active.
    pub(crate) token: watch::Sender<Option<u64>>,
}

impl std::fmt::Debug for Election {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Election")
            .field("name", &self.name)
            .field("priority", &self.priority)
            .finish_non_exhaustive()
    }
}

/// Most instances the election follows (as many as the peer list holds):
/// past it, the state of instances not yet followed is not taken.
pub(crate) const MAX_PEERS: usize = 4_096;

/// Highest term a claim may carry when this node has seen none yet; past
/// it (or past [`MAX_TERM_STEP`] above the highest term seen) a claim is
/// absurd, refused and counted (`Stats::absurd`). A term grows by one per
/// election or override: no honest fleet comes near either bound, and an
/// override ([`Node::force_role`](crate::Node::force_role)), one above
/// every term taken, always outbids what was refused.
pub(crate) const MAX_TERM: u64 = 1 << 40;
/// Most a claim's term may exceed the highest term this node has seen (its
/// own included): more elections than that while this node was not
/// listening are absurd.
pub(crate) const MAX_TERM_STEP: u64 = 1 << 10;

/// What a peer's `_el` did (see [`Election::heard`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Heard {
    /// Post a heartbeat now.
    pub(crate) announce: bool,
    /// Refused: its term is absurd.
    pub(crate) absurd: bool,
}

/// What evaluating the rule decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    None,
    /// Tell the room now (a claim, a step-down, or a conflict seen).
    Announce,
}

impl Election {
    pub(crate) fn new(name: Arc<str>, config: Failover, heartbeat: Duration) -> Election {
        Election {
            name,
            priority: config.priority,
            lease: config.lease.unwrap_or(heartbeat * 3),
            heartbeat,
            quorum: config.quorum,
            preempt: config.preempt,
            eligible: config.eligible,
            state: Mutex::new(State {
                term: 0,
                role: Role::Standby,
                forced: None,
                started: Instant::now(),
                heard_any: false,
                listening_since: Instant::now(),
                had_quorum: config.quorum <= 1,
                active_heard: None,
                standby_timeout: Duration::ZERO,
                outclaimed_since: None,
                peers: HashMap::new(),
            }),
            role: watch::Sender::new(Role::Standby),
            token: watch::Sender::new(None),
        }
    }

    /// Publishes the fencing token `s` implies (the term while active),
    /// when it changed.
    fn publish_token(&self, s: &State) {
        let token = (s.role == Role::Active).then_some(s.term);
        self.token.send_if_modified(|t| {
            let changed = *t != token;
            *t = token;
            changed
        });
    }

    /// How many peers it has heard claims from.
    pub(crate) fn peer_count(&self) -> usize {
        self.lock().peers.len()
    }

    /// The term this node knows (its own claim's, or the highest heard).
    #[cfg(feature = "metrics")]
    pub(crate) fn term(&self) -> u64 {
        self.lock().term
    }

    /// The lease this election uses (checked against the heartbeat at
    /// start).
    pub(crate) fn lease(&self) -> Duration {
        self.lease
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }

    /// The `_el` entry of this node's heartbeats, key and value, in `codec`:
    /// `[term, active (1) or standby (0), priority, may become active (1/0),
    /// forced (1/0)]`.
    pub(crate) fn entry(&self, codec: Codec) -> Vec<u8> {
        let (term, role, eligible, forced) = {
            let s = self.lock();
            (
                s.term,
                s.role,
                self.may_claim(&s),
                s.forced == Some(Role::Active),
            )
        };
        let value = (
            term,
            u8::from(role == Role::Active),
            self.priority,
            u8::from(eligible),
            u8::from(forced && role == Role::Active),
        );
        let mut buf = Vec::with_capacity(32);
        match codec {
            Codec::Json => {
                buf.push(b'"');
                buf.extend_from_slice(KEY_ELECTION.as_bytes());
                buf.extend_from_slice(b"\":");
                // Integers only: serialising cannot fail.
                serde_json::to_writer(&mut buf, &value).expect("integers serialise");
            }
            Codec::MessagePack => {
                rmp::encode::write_str(&mut buf, KEY_ELECTION).expect("writing to a Vec");
                rmp_serde::encode::write(&mut buf, &value).expect("integers serialise");
            }
        }
        buf
    }

    fn may_claim(&self, s: &State) -> bool {
        self.eligible && s.forced != Some(Role::Standby)
    }

    /// A peer's `_el` (raw, in `codec`) arrived: whether to post a
    /// heartbeat now, whether the peer's role changed (or is new), whether
    /// it was refused (an absurd term).
    pub(crate) fn heard(
        &self,
        instance: &Arc<str>,
        session: u64,
        codec: Codec,
        raw: &[u8],
    ) -> Heard {
        let decoded: Result<(u64, u8, i64, u8, u8), String> = codec.decode(raw);
        let (term, active, priority, eligible, forced) = match decoded {
            Ok(v) => v,
            Err(e) => {
                warn!(node = %self.name, from = %instance, error = %e, "ignored an unreadable election state");
                return Heard::default();
            }
        };
        let now = Instant::now();
        let change = {
            let mut s = self.lock();
            let seen = s.max_term();
            let bound = if s.heard_any {
                seen.saturating_add(MAX_TERM_STEP)
            } else {
                MAX_TERM.max(seen)
            };
            if term > bound {
                debug!(node = %self.name, from = %instance, term, seen, "refused an absurd election term");
                return Heard {
                    absurd: true,
                    ..Heard::default()
                };
            }
            let before = s.peers.get(instance).cloned();
            if before.is_none() && s.peers.len() >= MAX_PEERS {
                return Heard::default();
            }
            s.heard_any = true;
            // An active that steps down (or restarts) says so: the others
            // need not wait out its lease.
            if let Some(before) = &before {
                if before.active && (active == 0 || before.session != session) {
                    let started = s.started;
                    s.active_heard = Some(
                        now.checked_sub(self.lease)
                            .map_or(started, |t| t.max(started)),
                    );
                }
            }
            s.peers.insert(
                instance.clone(),
                PeerState {
                    session,
                    term,
                    active: active != 0,
                    priority,
                    eligible: eligible != 0,
                    forced: forced != 0,
                    heard: now,
                },
            );
            self.evaluate(&mut s, now)
        };
        Heard {
            announce: change == Change::Announce,
            absurd: false,
        }
    }

    /// Evaluates the rule at `now` (on a tick); returns whether to post a
    /// heartbeat now.
    pub(crate) fn tick(&self) -> bool {
        let mut s = self.lock();
        self.evaluate(&mut s, Instant::now()) == Change::Announce
    }

    fn set_role(&self, s: &mut State, role: Role, why: &str) {
        if s.role == role {
            return;
        }
        s.role = role;
        s.outclaimed_since = None;
        if role == Role::Standby {
            // It knows an active instance existed until now.
            s.active_heard = Some(Instant::now());
        }
        info!(node = %self.name, role = ?role, term = s.term, "failover: {why}");
        self.publish_token(s);
        self.role.send_replace(role);
    }

    /// Evaluates the rule ([`decide`](Election::decide)) and publishes the
    /// fencing token it implies.
    fn evaluate(&self, s: &mut State, now: Instant) -> Change {
        let change = self.decide(s, now);
        self.publish_token(s);
        change
    }

    fn decide(&self, s: &mut State, now: Instant) -> Change {
        let lease = self.lease;
        // An active peer counts for its lease; a standby, whose heartbeats
        // stretch with the fleet's size, until the peer timeout.
        let standby = s.standby_timeout.max(lease);
        s.peers.retain(|_, p| {
            now.saturating_duration_since(p.heard) <= if p.active { lease } else { standby }
        });
        let max_term = s.max_term();
        let hearing = s.peers.len() + 1;
        let best_active = s
            .peers
            .iter()
            .filter(|(_, p)| p.active)
            .max_by(|a, b| {
                claim_key(a.1.term, a.1.forced, a.1.priority, a.0).cmp(&claim_key(
                    b.1.term,
                    b.1.forced,
                    b.1.priority,
                    b.0,
                ))
            })
            .map(|(name, p)| (name.clone(), p.clone()));
        if let Some((_, p)) = &best_active {
            s.active_heard = Some(s.active_heard.map_or(p.heard, |t| t.max(p.heard)));
        }
        let has_quorum = hearing >= self.quorum;
        if has_quorum && !s.had_quorum {
            s.listening_since = now;
        }
        s.had_quorum = has_quorum;
        match s.role {
            Role::Active => {
                let forced = s.forced == Some(Role::Active);
                // Kept only while a stronger claim of its term is heard.
                let outclaimed_since = s.outclaimed_since.take();
                if let Some((name, p)) = &best_active {
                    if forced && !p.forced && p.term >= s.term {
                        // An override wins over an election it did not
                        // know of when it was made: claim above it.
                        s.term = max_term.saturating_add(1);
                        return Change::Announce;
                    }
                    if claim_key(p.term, p.forced, p.priority, name)
                        > claim_key(s.term, forced, self.priority, &self.name)
                    {
                        // Of the same term, the stronger claim takes the
                        // next term as soon as it hears this one (below):
                        // this one holds on until then, so that the
                        // tenure that stays has a fencing token above the
                        // one that ends, whichever heard the other first;
                        // for a lease at most (the winner may not hear it).
                        if p.term == s.term && !p.forced && !forced {
                            let since = outclaimed_since.unwrap_or(now);
                            if now < since + lease {
                                s.outclaimed_since = Some(since);
                                return Change::None;
                            }
                        }
                        s.term = max_term;
                        s.forced = s.forced.filter(|&r| r != Role::Active);
                        self.set_role(
                            s,
                            Role::Standby,
                            &format!("{name} holds a stronger claim; standing by"),
                        );
                        return Change::Announce;
                    }
                    // A weaker active is heard: tell it now. Of the same
                    // term, claim the next one: the tenure that stays has a
                    // fencing token above the one that ends.
                    if p.term >= s.term {
                        s.term = max_term.saturating_add(1);
                    }
                    return Change::Announce;
                }
                if !has_quorum && !forced {
                    s.term = max_term;
                    self.set_role(s, Role::Standby, "lost the quorum; standing by");
                    return Change::Announce;
                }
                Change::None
            }
            Role::Standby => {
                s.term = max_term;
                if !self.may_claim(s) || !has_quorum {
                    return Change::None;
                }
                let better_standbys = s
                    .peers
                    .iter()
                    .filter(|(name, p)| {
                        !p.active
                            && p.eligible
                            && rank_key(p.priority, name) > rank_key(self.priority, &self.name)
                    })
                    .count() as u32;
                let since = s.active_heard.unwrap_or(s.started).max(s.listening_since);
                if let Some((_, p)) = &best_active {
                    let preempts = self.preempt
                        && better_standbys == 0
                        && self.priority > p.priority
                        && now >= s.listening_since + lease;
                    if !preempts {
                        return Change::None;
                    }
                } else if now < since + lease + self.heartbeat * better_standbys {
                    return Change::None;
                }
                s.term = max_term.saturating_add(1);
                let why = match &best_active {
                    Some((name, _)) => format!("preempting {name}: active"),
                    None => "no active instance heard for the lease: active".to_owned(),
                };
                self.set_role(s, Role::Active, &why);
                Change::Announce
            }
        }
    }

    /// Tells the election what presence heard (on each tick of the
    /// failover task): a standby heard in any post (an envelope, which
    /// carries no `_el`, included) is still counted, for up to `timeout`
    /// (the peer timeout) since; the active must be heard in heartbeats.
    /// `heard` gives each peer presence lists: its instance, session and
    /// when it was last heard.
    pub(crate) fn refresh<'a>(
        &self,
        timeout: Duration,
        heard: impl Iterator<Item = (&'a str, u64, Instant)>,
    ) {
        let mut s = self.lock();
        s.standby_timeout = timeout;
        if s.peers.is_empty() {
            return;
        }
        for (instance, session, last_heard) in heard {
            if let Some(p) = s.peers.get_mut(instance) {
                if !p.active && p.session == session && last_heard > p.heard {
                    p.heard = last_heard;
                }
            }
        }
    }

    /// Forces a role (see [`Node::force_role`](crate::Node::force_role));
    /// returns whether to announce.
    pub(crate) fn force(&self, role: Role) -> bool {
        let mut s = self.lock();
        s.forced = Some(role);
        match role {
            Role::Active => {
                // Claim above everyone heard (again, when already active),
                // so that the fleet follows this node.
                s.term = s.max_term().saturating_add(1);
                if s.role != Role::Active {
                    self.set_role(&mut s, Role::Active, "forced active");
                }
            }
            Role::Standby => {
                self.set_role(&mut s, Role::Standby, "forced standby");
            }
        }
        self.publish_token(&s);
        true
    }

    pub(crate) fn release(&self) -> bool {
        let mut s = self.lock();
        s.forced = None;
        let now = Instant::now();
        self.evaluate(&mut s, now) == Change::Announce
    }

    /// A peer's role and term, as its latest `_el` said.
    pub(crate) fn role_of(&self, instance: &str, session: u64) -> Option<(Role, u64)> {
        let s = self.lock();
        s.peers
            .get(instance)
            .filter(|p| p.session == session)
            .map(|p| {
                let role = if p.active {
                    Role::Active
                } else {
                    Role::Standby
                };
                (role, p.term)
            })
    }
}
