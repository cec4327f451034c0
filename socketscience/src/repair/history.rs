//! What a sender keeps of what it posted ([`History`]), to post it again
//! when a receiver asks.

use std::collections::VecDeque;

use crate::core::envelope::Encoded;
use crate::wire::Repost;

/// The envelopes a node posted, kept to post again when asked: bounded by
/// count, by age, and by bytes ([`MAX_HISTORY_BYTES`]).
///
/// Their map entries are copied, one after the other, into one ring of
/// bytes, and the posted buffers go back to the outbox as before: keeping
/// an envelope is one append to memory written in order (no allocation
/// once the ring is grown, no buffer held out of the outbox's rotation,
/// little cache pollution). The ring grows (in powers of two) only while
/// the count bound keeps more than it holds: it stays within twice the
/// size of what it keeps.
#[derive(Debug)]
pub(crate) struct History {
    /// The ring; its length is 0 or a power of two.
    ring: Vec<u8>,
    /// How many bytes were ever written into the ring: the next envelope
    /// goes at `written` modulo its length.
    written: u64,
    entries: VecDeque<Entry>,
    capacity: usize,
    max_age_ms: u64,
    /// When the current repair window of the budget began (coarse clock),
    /// and how many envelopes were posted again within it.
    window_start_ms: u64,
    served_in_window: usize,
}

/// Most bytes of envelopes a history keeps (a power of two).
pub(crate) const MAX_HISTORY_BYTES: usize = 4 << 20;
/// The ring's length to start with (a power of two).
const MIN_RING_BYTES: usize = 4 << 10;

#[derive(Debug, Clone, Copy)]
struct Entry {
    seq: u64,
    /// Where its bytes start, counted as `History::written` counts.
    start: u64,
    len: u32,
    kinds: u32,
    /// When it was posted, on the node's coarse clock.
    posted_ms: u64,
    /// When it was last posted again (`u64::MAX`: never).
    reposted_ms: u64,
}

impl History {
    pub(crate) fn new(capacity: usize, max_age_ms: u64) -> History {
        History {
            // (Never empty while it keeps anything: `keep` masks with its
            // length.)
            ring: if capacity > 0 {
                vec![0; MIN_RING_BYTES]
            } else {
                Vec::new()
            },
            written: 0,
            entries: VecDeque::new(),
            capacity,
            max_age_ms,
            window_start_ms: 0,
            served_in_window: 0,
        }
    }

    /// Keeps a copy of the envelopes of `group`, just posted. (Out of line:
    /// the poster's loop stays small; this runs once per post.)
    #[inline(never)]
    pub(crate) fn keep(&mut self, group: &[Encoded], now_ms: u64) {
        if self.capacity == 0 {
            return;
        }
        for envelope in group {
            let bytes = &envelope.bytes[..];
            let len = bytes.len();
            if self.entries.len() >= self.capacity {
                // The usual case once it is full: the oldest goes.
                self.entries.pop_front();
            }
            // The bytes from the oldest kept on, with these, must fit.
            if self.kept_bytes() + len > self.ring.len() && !self.make_room(len) {
                continue;
            }
            let at = self.written as usize & (self.ring.len() - 1);
            let first = len.min(self.ring.len() - at);
            self.ring[at..at + first].copy_from_slice(&bytes[..first]);
            if first < len {
                self.ring[..len - first].copy_from_slice(&bytes[first..]);
            }
            self.entries.push_back(Entry {
                seq: envelope.seq,
                start: self.written,
                len: len as u32,
                kinds: envelope.kinds.len() as u32,
                posted_ms: now_ms,
                reposted_ms: u64::MAX,
            });
            self.written += len as u64;
        }
    }

    /// Makes room for `len` more bytes: grows the ring (to the power of two
    /// that holds what is kept and them, within [`MAX_HISTORY_BYTES`]),
    /// then drops the oldest entries until they fit. False if `len` alone
    /// is over the bound.
    #[cold]
    #[inline(never)]
    fn make_room(&mut self, len: usize) -> bool {
        if len > MAX_HISTORY_BYTES {
            return false;
        }
        let needed = (self.kept_bytes() + len)
            .next_power_of_two()
            .min(MAX_HISTORY_BYTES);
        if needed > self.ring.len() {
            // The kept bytes, moved to where they fall in the larger ring:
            // one span (at most two pieces in the old ring), not one copy
            // per envelope (growing to hold 16 384 envelopes copied each
            // of them several times).
            let mut ring = vec![0; needed];
            let kept = self.kept_bytes();
            let oldest = self.written - kept as u64;
            let at = oldest as usize & (self.ring.len() - 1);
            let first = kept.min(self.ring.len() - at);
            write_ring(&mut ring, oldest, &self.ring[at..at + first]);
            write_ring(&mut ring, oldest + first as u64, &self.ring[..kept - first]);
            self.ring = ring;
        }
        while self.kept_bytes() + len > self.ring.len() {
            self.entries.pop_front();
        }
        true
    }

    /// The ring's bytes from the oldest envelope kept on.
    #[inline]
    fn kept_bytes(&self) -> usize {
        let oldest = self.entries.front().map_or(self.written, |e| e.start);
        (self.written - oldest) as usize
    }

    /// The kept envelopes of `ranges` not posted again within `window_ms`
    /// (marked as posted again now), in order, at most
    /// [`MAX_SERVED_PER_WINDOW`](crate::repair::MAX_SERVED_PER_WINDOW) per
    /// window (the rest wait for their askers to ask again); and the parts
    /// of the ranges no longer kept (or never posted).
    pub(crate) fn select(
        &mut self,
        ranges: &[(u64, u64)],
        now_ms: u64,
        window_ms: u64,
    ) -> (Vec<Repost>, Vec<(u64, u64)>) {
        // Too old: as good as gone.
        while self
            .entries
            .front()
            .is_some_and(|e| now_ms.saturating_sub(e.posted_ms) > self.max_age_ms)
        {
            self.entries.pop_front();
        }
        let mut wanted: Vec<u64> = ranges.iter().flat_map(|&(a, b)| a..b).collect();
        wanted.sort_unstable();
        wanted.dedup();
        let mut picked = Vec::new();
        let mut gone: Vec<(u64, u64)> = Vec::new();
        if now_ms.saturating_sub(self.window_start_ms) >= window_ms {
            self.window_start_ms = now_ms;
            self.served_in_window = 0;
        }
        for seq in wanted {
            // (In order of their numbers; consecutive but where one could
            // not be kept.)
            let Ok(i) = self.entries.binary_search_by_key(&seq, |e| e.seq) else {
                match gone.last_mut() {
                    Some(range) if range.1 == seq => range.1 = seq + 1,
                    _ => gone.push((seq, seq + 1)),
                }
                continue;
            };
            let entry = &mut self.entries[i];
            if entry.reposted_ms != u64::MAX && now_ms.saturating_sub(entry.reposted_ms) < window_ms
            {
                continue;
            }
            if self.served_in_window >= crate::repair::MAX_SERVED_PER_WINDOW {
                continue;
            }
            self.served_in_window += 1;
            entry.reposted_ms = now_ms;
            let mut bytes = Vec::with_capacity(entry.len as usize);
            read_ring(&self.ring, entry.start, entry.len as usize, &mut bytes);
            picked.push(Repost {
                seq,
                kinds: entry.kinds as usize,
                bytes,
            });
        }
        (picked, gone)
    }
}

/// Appends the `len` bytes at `start` (as `History::written` counts) in
/// `ring` to `out`.
fn read_ring(ring: &[u8], start: u64, len: usize, out: &mut Vec<u8>) {
    let at = start as usize & (ring.len() - 1);
    let first = len.min(ring.len() - at);
    out.extend_from_slice(&ring[at..at + first]);
    out.extend_from_slice(&ring[..len - first]);
}

/// Writes `bytes` at `start` (as `History::written` counts) in `ring`.
fn write_ring(ring: &mut [u8], start: u64, bytes: &[u8]) {
    let at = start as usize & (ring.len() - 1);
    let first = bytes.len().min(ring.len() - at);
    ring[at..at + first].copy_from_slice(&bytes[..first]);
    ring[..bytes.len() - first].copy_from_slice(&bytes[first..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_history_keeps_the_latest_envelopes_within_its_bounds() {
        let encoded = |seq: u64, len: usize| Encoded {
            seq,
            kinds: Default::default(),
            bytes: vec![seq as u8; len],
        };
        let mut h = History::new(3, 1_000);
        for seq in 0..5 {
            h.keep(&[encoded(seq, 10)], 0);
        }
        let (picked, gone) = h.select(&[(0, 5)], 0, 100);
        assert_eq!(gone, [(0, 2)]);
        assert_eq!(picked.iter().map(|r| r.seq).collect::<Vec<_>>(), [2, 3, 4]);
        assert!(picked.iter().all(|r| r.bytes == vec![r.seq as u8; 10]));
        // Once per window.
        assert!(h.select(&[(2, 5)], 50, 100).0.is_empty());
        assert_eq!(h.select(&[(2, 5)], 150, 100).0.len(), 3);
        // Too old.
        let (picked, gone) = h.select(&[(2, 5)], 5_000, 100);
        assert!(picked.is_empty());
        assert_eq!(gone, [(2, 5)]);
        // The log wraps: the oldest bytes are overwritten, never mixed up.
        let mut h = History::new(1_000, 1_000);
        let big = MAX_HISTORY_BYTES / 3 + 1;
        for seq in 0..7 {
            h.keep(&[encoded(seq, big)], 0);
        }
        let (picked, gone) = h.select(&[(0, 7)], 0, 100);
        assert_eq!(gone, [(0, 5)]);
        assert_eq!(picked.iter().map(|r| r.seq).collect::<Vec<_>>(), [5, 6]);
        assert!(picked.iter().all(|r| r.bytes == vec![r.seq as u8; big]));
        // Numbers that do not follow (one that could not be kept between).
        let mut h = History::new(1_000, 1_000);
        for seq in (0..300).chain(500..502) {
            h.keep(&[encoded(seq, 10)], 0);
        }
        let (picked, gone) = h.select(&[(299, 301), (500, 501)], 0, 100);
        assert_eq!(gone, [(300, 301)]);
        assert_eq!(picked.iter().map(|r| r.seq).collect::<Vec<_>>(), [299, 500]);
        assert!(picked.iter().all(|r| r.bytes == vec![r.seq as u8; 10]));
        // Envelopes of different sizes, many rounds of the log.
        let mut h = History::new(1_000, 1_000);
        let sizes = [MAX_HISTORY_BYTES / 5, 100, MAX_HISTORY_BYTES / 7, 3_000];
        for seq in 0..60u64 {
            h.keep(&[encoded(seq, sizes[seq as usize % 4])], 0);
            let (picked, _) = h.select(&[(0, seq + 1)], 0, 0);
            assert!(!picked.is_empty());
            assert_eq!(picked.last().map(|r| r.seq), Some(seq));
            for r in &picked {
                assert_eq!(
                    r.bytes,
                    vec![r.seq as u8; sizes[r.seq as usize % 4]],
                    "{seq}"
                );
            }
        }
    }
}
