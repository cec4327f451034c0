//! What a sender keeps of what it posted ([`History`]), to post it again
//! when a receiver asks.

use std::collections::VecDeque;

use super::envelope::Encoded;
use crate::wire::Repost;

/// The envelopes a node posted, kept to post again when asked: bounded by
/// count, by age, and by bytes ([`MAX_HISTORY_BYTES`]).
///
/// Their map entries are copied, one after the other, into one circular
/// log of bytes, and the posted buffers go back to the outbox as before:
/// keeping an envelope is one append to memory written in order (no
/// allocation once the log is grown, no buffer held out of the outbox's
/// rotation, little cache pollution).
#[derive(Debug)]
pub(crate) struct History {
    /// The log; it grows to [`MAX_HISTORY_BYTES`], then wraps.
    log: Vec<u8>,
    /// Where the next envelope's bytes go.
    head: usize,
    entries: VecDeque<Entry>,
    capacity: usize,
    max_age_ms: u64,
}

/// Most bytes of envelopes a history keeps.
pub(crate) const MAX_HISTORY_BYTES: usize = 4 << 20;

#[derive(Debug, Clone, Copy)]
struct Entry {
    seq: u64,
    start: u32,
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
            log: Vec::new(),
            head: 0,
            entries: VecDeque::new(),
            capacity,
            max_age_ms,
        }
    }

    /// Keeps a copy of the envelopes of `group`, just posted.
    #[inline]
    pub(crate) fn keep(&mut self, group: &[Encoded], now_ms: u64) {
        if self.capacity == 0 {
            return;
        }
        for envelope in group {
            let len = envelope.bytes.len();
            let start = if self.room_at_start(len) {
                // Back to the start while the log is small: it stays about
                // twice the size of what it keeps (in the cache), rather
                // than running through all of its bound.
                self.head = 0;
                0
            } else if self.head + len <= MAX_HISTORY_BYTES {
                self.head
            } else if len <= MAX_HISTORY_BYTES {
                self.wrap();
                0
            } else {
                continue;
            };
            if self.entries.len() >= self.capacity {
                // The usual case once it is full: the oldest goes.
                self.entries.pop_front();
            }
            if self.overlaps(start, len) {
                self.evict(start, len);
            }
            let end = start + len;
            if end <= self.log.len() {
                self.log[start..end].copy_from_slice(&envelope.bytes);
            } else {
                self.log.truncate(start);
                self.log.extend_from_slice(&envelope.bytes);
            }
            self.head = end;
            self.entries.push_back(Entry {
                seq: envelope.seq,
                start: start as u32,
                len: len as u32,
                kinds: envelope.kinds.len() as u32,
                posted_ms: now_ms,
                reposted_ms: u64::MAX,
            });
        }
    }

    /// Whether the log is in one piece and the space before its oldest
    /// entry holds `len` bytes and at least as much as the entries take.
    #[inline]
    fn room_at_start(&self, len: usize) -> bool {
        match self.entries.front() {
            Some(oldest) => {
                let first = oldest.start as usize;
                first < self.head && first >= len && first >= self.head - first
            }
            None => self.head > 0,
        }
    }

    /// Whether writing `len` bytes at `start` would overwrite the oldest
    /// entry kept.
    #[inline]
    fn overlaps(&self, start: usize, len: usize) -> bool {
        self.entries.front().is_some_and(|oldest| {
            let (a, b) = (oldest.start as usize, (oldest.start + oldest.len) as usize);
            start < b && a < start + len
        })
    }

    /// Goes back to the log's start: the entries past the head (the oldest,
    /// from the last round) go.
    #[cold]
    #[inline(never)]
    fn wrap(&mut self) {
        let head = self.head;
        while self
            .entries
            .front()
            .is_some_and(|oldest| oldest.start as usize >= head)
        {
            self.entries.pop_front();
        }
        self.head = 0;
    }

    /// Drops the oldest entries until there is room for one more, of `len`
    /// bytes at `start`.
    #[cold]
    #[inline(never)]
    fn evict(&mut self, start: usize, len: usize) {
        while self.entries.len() >= self.capacity || self.overlaps(start, len) {
            self.entries.pop_front();
        }
    }

    /// The kept envelopes of `ranges` not posted again within `window_ms`
    /// (marked as posted again now), in order; and the parts of the ranges
    /// no longer kept (or never posted).
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
        let lo = self.entries.front().map_or(u64::MAX, |e| e.seq);
        let mut picked = Vec::new();
        let mut gone: Vec<(u64, u64)> = Vec::new();
        for seq in wanted {
            let kept = seq >= lo && seq - lo < self.entries.len() as u64;
            if !kept {
                match gone.last_mut() {
                    Some(range) if range.1 == seq => range.1 = seq + 1,
                    _ => gone.push((seq, seq + 1)),
                }
                continue;
            }
            let entry = &mut self.entries[(seq - lo) as usize];
            if entry.reposted_ms != u64::MAX && now_ms.saturating_sub(entry.reposted_ms) < window_ms
            {
                continue;
            }
            entry.reposted_ms = now_ms;
            let (start, len) = (entry.start as usize, entry.len as usize);
            picked.push(Repost {
                seq,
                kinds: entry.kinds as usize,
                bytes: self.log[start..start + len].to_vec(),
            });
        }
        (picked, gone)
    }
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
