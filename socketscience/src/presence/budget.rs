//! The presence and repair options of a node (`Options`), and what follows
//! from them and the fleet's presence budget: how long an instance waits
//! between heartbeats, how long a peer stays listed unheard, how often the
//! node's clock ticks.

use std::time::Duration;

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

    /// The interval until an instance's next heartbeat (a standby's, or
    /// any instance's without failover), drawn from `u` in `[0, 1)` so
    /// that instances started together, or that answered the same
    /// newcomer, drift apart (RTCP does so, RFC 3550 section 6.3.1):
    /// while not stretched, between `3 h / 4` and `5 h / 4` (one lost
    /// heartbeat leaves a gap under the default peer timeout of `3 h`); a
    /// stretched interval `T` between `T / 2` and `3 T / 2`, never below
    /// `h` (so the mean is a little above `T` while `T < 2 h`).
    pub(crate) fn drawn(&self, interval: Duration, u: f64) -> Duration {
        if interval <= self.heartbeat {
            return self.heartbeat.mul_f64(0.75 + u / 2.0);
        }
        interval.mul_f64(0.5 + u).max(self.heartbeat)
    }

    /// How long an instance waits before it answers a newcomer with a
    /// heartbeat, drawn from `u` in `[0, 1)`: at once while the fleet's
    /// interval is not stretched (its answers fit the budget); stretched,
    /// anywhere within the interval `T`, so that the fleet's answers come
    /// at the pace its heartbeats do, and a newcomer has heard every
    /// instance within `T`.
    pub(crate) fn answer_delay(&self, interval: Duration, u: f64) -> Duration {
        if interval <= self.heartbeat {
            return Duration::ZERO;
        }
        interval.mul_f64(u)
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
pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
