//! The replay window of each sender session ([`Track`]): dispatched up to
//! where, what arrived early and is held, what is missing, what is given
//! up; what admits an envelope in order and refuses a duplicate.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::time::Instant;

use crate::repair::{MAX_AHEAD, MAX_ASK};

/// What a receiver knows of one sender session.
#[derive(Debug)]
pub(crate) struct Track {
    pub(crate) session: u64,
    /// The chat account the session posted from when it was first heard:
    /// with the instance, its owner. Only the owner's statements about the
    /// session (its envelopes, where it ends, what it gave up) are taken.
    pub(crate) account: Arc<str>,
    /// Every envelope below was dispatched or given up.
    pub(crate) next: u64,
    /// One past the highest envelope known to exist (heard, or announced
    /// by a heartbeat or a `_nak`).
    pub(crate) end: u64,
    /// Envelopes from `next` on that arrived early (or were given up), by
    /// first sequence number.
    pub(crate) held: BTreeMap<u64, Held>,
    /// Envelopes held (not given up).
    pub(crate) held_count: u64,
    /// Bytes of the bodies held.
    pub(crate) held_bytes: usize,
    /// Repair bookkeeping while envelopes are missing.
    pub(crate) gap: Option<Gap>,
    /// The timestamp of the latest signed presence post taken from this
    /// session (0: none): an older or equal one is a replay, and says
    /// nothing of whether the sender still lives.
    pub(crate) presence_ts: u64,
}

/// Envelopes `first..end` of a session, held until those before them are
/// dispatched; `body` is `None` for a range given up.
#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) end: u64,
    pub(crate) body: Option<HeldBody>,
}

/// A body held: who posted it, its bytes (a whole decoded body, or one
/// repaired envelope's map of kinds), and whether it came through repair.
#[derive(Debug)]
pub(crate) struct HeldBody {
    pub(crate) account: Arc<str>,
    pub(crate) bytes: Vec<u8>,
    pub(crate) repaired: bool,
}

/// When a receiver noticed a gap and when it asks (again).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gap {
    pub(crate) since: Instant,
    pub(crate) ask_at: Instant,
}

/// What to do with an envelope (or several, `seq..seq + count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// The next one: dispatch it now.
    InOrder,
    /// Seen (or given up) already.
    Duplicate,
    /// Later than the next one: hold it; there is a gap before it.
    Ahead,
    /// Further than [`MAX_AHEAD`] beyond what the session is known to
    /// have reached, or ending past u64: absurd, refused (nothing changed).
    TooFar,
    /// Partly seen already (only when a body's grouping differs from what
    /// arrived before): dropped, what it lacks is asked for.
    Partial,
}

impl Track {
    pub(crate) fn new(session: u64, next: u64, account: Arc<str>) -> Track {
        Track {
            session,
            account,
            next,
            end: next,
            held: BTreeMap::new(),
            held_count: 0,
            held_bytes: 0,
            gap: None,
            presence_ts: 0,
        }
    }

    /// Whether a signed presence post stamped `ts` is newer than every
    /// one taken from this session before (then it is noted).
    pub(crate) fn fresh_presence(&mut self, ts: u64) -> bool {
        let fresh = ts > self.presence_ts;
        if fresh {
            self.presence_ts = ts;
        }
        fresh
    }

    #[inline]
    pub(crate) fn admit(&mut self, seq: u64, count: u64) -> Admit {
        // Numbers past the end of u64 follow nothing: a session at 2^64-1
        // would otherwise take that envelope as the next, again and again.
        let Some(end) = seq.checked_add(count) else {
            return Admit::TooFar;
        };
        if seq == self.next && self.held.is_empty() {
            self.next = end;
            if self.end < end {
                self.end = end;
            }
            return Admit::InOrder;
        }
        self.admit_slow(seq, end)
    }

    #[cold]
    #[inline(never)]
    fn admit_slow(&mut self, seq: u64, end: u64) -> Admit {
        if end <= self.next {
            return Admit::Duplicate;
        }
        if seq < self.next {
            return Admit::Partial;
        }
        // Overlap with what is held?
        if let Some((&first, held)) = self.held.range(..end).next_back() {
            if held.end > seq {
                return if first <= seq && end <= held.end {
                    Admit::Duplicate
                } else {
                    Admit::Partial
                };
            }
        }
        if self.end < end {
            if !self.within_reach(end) {
                return Admit::TooFar;
            }
            self.end = end;
        }
        if seq == self.next {
            self.next = end;
            Admit::InOrder
        } else {
            Admit::Ahead
        }
    }

    /// Holds `seq..end` (admitted as [`Admit::Ahead`]).
    pub(crate) fn hold(&mut self, seq: u64, end: u64, body: HeldBody) {
        self.held_count += end - seq;
        self.held_bytes += body.bytes.len();
        self.held.insert(
            seq,
            Held {
                end,
                body: Some(body),
            },
        );
    }

    /// Whether the session may have reached `end`: at most [`MAX_AHEAD`]
    /// beyond what is known of it (further is absurd).
    pub(crate) fn within_reach(&self, end: u64) -> bool {
        end <= self.end.saturating_add(MAX_AHEAD)
    }

    /// Whether `account` is the session's owner's.
    #[inline]
    pub(crate) fn owned_by(&self, account: &Arc<str>) -> bool {
        Arc::ptr_eq(&self.account, account) || *self.account == **account
    }

    /// A heartbeat or a `_nak` of the owner says the session reached `end`
    /// (checked [`within_reach`](Self::within_reach) by the caller).
    pub(crate) fn learn_end(&mut self, end: u64) {
        if end > self.end {
            self.end = end;
        }
    }

    /// Whether envelopes are missing.
    pub(crate) fn waiting(&self) -> bool {
        self.next < self.end
    }

    /// The missing ranges, at most `max`, each at most [`MAX_ASK`] long.
    pub(crate) fn missing(&self, max: usize) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut at = self.next;
        for (&first, held) in &self.held {
            if out.len() == max {
                return out;
            }
            if first > at {
                out.push((at, first.min(at.saturating_add(MAX_ASK))));
            }
            at = at.max(held.end);
        }
        if at < self.end && out.len() < max {
            out.push((at, self.end.min(at.saturating_add(MAX_ASK))));
        }
        out
    }

    /// Gives up the missing envelopes in `first..end` (the session reaches
    /// at least `end`); returns how many.
    pub(crate) fn give_up(&mut self, first: u64, end: u64) -> u64 {
        self.learn_end(end);
        let first = first.max(self.next);
        if first >= end {
            return 0;
        }
        let mut gaps = Vec::new();
        let mut at = first;
        for (&seq, held) in self.held.range(..end) {
            if held.end <= at {
                continue;
            }
            if seq > at {
                gaps.push((at, seq));
            }
            at = at.max(held.end);
        }
        if at < end {
            gaps.push((at, end));
        }
        let mut lost = 0;
        for (a, b) in gaps {
            lost += b - a;
            self.held.insert(a, Held { end: b, body: None });
        }
        lost
    }

    /// Gives up everything missing up to `end` and the first held body
    /// (to make room); returns how many were lost.
    pub(crate) fn give_up_all(&mut self) -> u64 {
        self.give_up(self.next, self.end)
    }

    /// The next held range if it is due (starts at `next`), taken; ranges
    /// left behind by an overlap are dropped on the way.
    pub(crate) fn pop_ready(&mut self) -> Option<(u64, Held)> {
        loop {
            let entry = self.held.first_entry()?;
            let first = *entry.key();
            if first > self.next {
                return None;
            }
            let held = entry.remove();
            if let Some(body) = &held.body {
                self.held_count -= held.end - first;
                self.held_bytes -= body.bytes.len();
            }
            if held.end <= self.next {
                continue;
            }
            self.next = held.end;
            if !self.waiting() && self.held.is_empty() {
                self.gap = None;
            }
            return Some((first, held));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> HeldBody {
        HeldBody {
            account: "a".into(),
            bytes: Vec::new(),
            repaired: false,
        }
    }

    #[test]
    fn a_track_holds_what_comes_early_and_releases_it_in_order() {
        let mut t = Track::new(1, 0, "a".into());
        assert_eq!(t.admit(0, 1), Admit::InOrder);
        assert_eq!(t.admit(0, 1), Admit::Duplicate);
        assert_eq!(t.admit(3, 2), Admit::Ahead);
        t.hold(3, 5, body());
        assert_eq!(t.admit(3, 2), Admit::Duplicate, "held already");
        assert_eq!(t.missing(8), [(1, 3)]);
        t.learn_end(7);
        assert_eq!(t.missing(8), [(1, 3), (5, 7)]);
        assert_eq!(t.admit(1, 1), Admit::InOrder);
        assert!(t.pop_ready().is_none(), "2 is still missing");
        assert_eq!(t.admit(2, 1), Admit::InOrder);
        let (first, held) = t.pop_ready().expect("3..5 is due");
        assert_eq!((first, held.end), (3, 5));
        assert_eq!(t.next, 5);
        assert_eq!(t.give_up_all(), 2);
        assert!(t.pop_ready().is_some_and(|(_, h)| h.body.is_none()));
        assert!(!t.waiting());
        assert_eq!(t.held_count, 0);
    }

    #[test]
    fn giving_up_skips_what_is_held() {
        let mut t = Track::new(1, 0, "a".into());
        t.hold(2, 3, body());
        t.hold(5, 6, body());
        assert_eq!(t.give_up(0, 8), 2 + 2 + 2);
        let mut dispatched = Vec::new();
        while let Some((first, held)) = t.pop_ready() {
            dispatched.push((first, held.body.is_some()));
        }
        assert_eq!(
            dispatched,
            [(0, false), (2, true), (3, false), (5, true), (6, false)]
        );
        assert_eq!(t.next, 8);
    }
}
