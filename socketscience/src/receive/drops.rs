//! The drop log: what the receive path drops from the room, counted by
//! reason and summarised in the log at most once per interval.

use std::time::{Duration, Instant};

use tracing::{trace, warn};

use super::{Deliver, Dispatcher};
use crate::send::Bus;
use crate::stats::{Counters, Stats};

/// How often drops are summarised in the log, at most.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Counts drops and summarises them in the log at most once per interval,
/// so that a flood does not flood the log.
pub(super) struct DropLog {
    last: Instant,
    at_last: Stats,
}

impl DropLog {
    pub(super) fn new() -> DropLog {
        DropLog {
            last: Instant::now(),
            at_last: Stats::default(),
        }
    }

    /// Summarises the drops since the last summary, if the interval passed.
    pub(super) fn note(&mut self, bus: &Bus) {
        let now = Instant::now();
        if now.duration_since(self.last) < LOG_INTERVAL {
            return;
        }
        let stats = bus.counters.snapshot();
        let before = self.at_last;
        // One list of drop counters (stats.rs), the one `Stats::rejected`
        // sums: the two cannot disagree.
        let summary: Vec<String> = Stats::DROPS
            .iter()
            .map(|(what, _, count)| (what, count(&stats) - count(&before)))
            .filter(|(_, n)| *n > 0)
            .map(|(what, n)| format!("{what}={n}"))
            .collect();
        if !summary.is_empty() {
            warn!(
                node = %bus.name,
                since_secs = now.duration_since(self.last).as_secs(),
                "dropped from the room: {}",
                summary.join(" ")
            );
        }
        self.last = now;
        self.at_last = stats;
    }

    /// Summarises the drops since the last summary now (the receive path
    /// ends).
    pub(super) fn flush(&mut self, bus: &Bus) {
        self.last = Instant::now() - LOG_INTERVAL;
        self.note(bus);
    }
}

/// Why a message from the room was refused.
#[derive(Debug, Clone, Copy)]
pub(super) enum Refusal {
    Malformed,
    TooLarge,
    Unsigned,
    BadSignature,
    Stale,
    Duplicate,
    Compressed,
}

impl<D: Deliver> Dispatcher<D> {
    /// Counts a message from an account not trusted.
    #[cold]
    #[inline(never)]
    pub(super) fn untrusted(&mut self, account: &str) {
        Counters::add_owned(&self.bus.counters.untrusted, 1);
        trace!(node = %self.bus.name, account, "ignored a message from an untrusted account");
        self.drops.note(&self.bus);
    }

    /// Counts a refusal, traces it, and now and then summarises drops in the log.
    /// (Out of line, as the other failure paths: the receive path's own code
    /// stays small enough to sit in the instruction cache.)
    #[cold]
    #[inline(never)]
    pub(super) fn refuse(&mut self, why: Refusal, account: &str, detail: &dyn std::fmt::Display) {
        let c = &self.bus.counters;
        let counter = match why {
            Refusal::Malformed => &c.malformed,
            Refusal::TooLarge => &c.too_large,
            Refusal::Unsigned => &c.unsigned,
            Refusal::BadSignature => &c.bad_signature,
            Refusal::Stale => &c.stale,
            Refusal::Duplicate if self.bus.keys.is_empty() => &c.duplicates,
            Refusal::Duplicate => &c.replayed,
            Refusal::Compressed => &c.compressed_refused,
        };
        Counters::add_owned(counter, 1);
        trace!(node = %self.bus.name, account, reason = ?why, %detail, "dropped a message from the room");
        self.drops.note(&self.bus);
    }
}

/// Counts a chat message that is not a frame (people talking).
#[cold]
#[inline(never)]
pub(super) fn not_a_frame(bus: &Bus, account: &str) {
    Counters::add_owned(&bus.counters.not_frames, 1);
    trace!(node = %bus.name, account, "not a frame");
}
