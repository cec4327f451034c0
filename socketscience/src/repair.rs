//! Gap repair: what a receiver knows of each sender session ([`Track`]:
//! dispatched up to where, what arrived early, what is missing), and what a
//! sender keeps to post again ([`History`]), with the bodies of presence
//! and repair posts.
//!
//! The promise (README, "Disconnects"): while the sender process lives and
//! an envelope is within its history, every node in the room at some point
//! after the send runs each handler for it exactly once, in per-sender
//! order. What falls outside is counted in `Stats::lost` and logged.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use tokio::time::Instant;

use crate::send::envelope::{
    write_array_len, write_map_len, write_msgpack_str, write_msgpack_uint, write_uint_entry,
    Encoded, Origin, Signer,
};
use crate::wire::{
    Codec, WireRange, KEY_HEARTBEAT, KEY_REPAIR, KEY_REQUEST, KEY_TIMESTAMP, KEY_UNREPAIRABLE,
};

/// Most envelopes one request may ask for; a longer range is absurd and
/// refused (a receiver asks for at most this much at a time).
pub(crate) const MAX_ASK: u64 = 4_096;
/// The end of a request that asks for everything from its first envelope
/// on (a probe: "how far did this session go?").
pub(crate) const TO_THE_END: u64 = u64::MAX;
/// Most ranges one post carries in `_rq` or `_nak`, and most a receiver
/// reads.
pub(crate) const MAX_RANGES: usize = 64;
/// Most envelopes one `_rp` list may carry.
pub(crate) const MAX_REPAIRS: usize = 4_096;
/// Most ranges a receiver asks for per sender session per round.
pub(crate) const RANGES_PER_ASK: usize = 8;
/// Most bytes of early envelopes a receiver holds per sender session; past
/// it (or past the count, `Options::max_held`) the gap before them is given
/// up.
pub(crate) const MAX_HELD_BYTES: usize = 16 << 20;
/// Most envelopes a `_nak` may give up at once; more is absurd.
pub(crate) const MAX_GIVE_UP: u64 = 1 << 20;

// ---------------------------------------------------------------------------
// Receiving

/// What a receiver knows of one sender session.
#[derive(Debug)]
pub(crate) struct Track {
    pub(crate) session: u64,
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
    /// Partly seen already (only when a body's grouping differs from what
    /// arrived before): dropped, what it lacks is asked for.
    Partial,
}

impl Track {
    pub(crate) fn new(session: u64, next: u64) -> Track {
        Track {
            session,
            next,
            end: next,
            held: BTreeMap::new(),
            held_count: 0,
            held_bytes: 0,
            gap: None,
        }
    }

    #[inline]
    pub(crate) fn admit(&mut self, seq: u64, count: u64) -> Admit {
        let end = seq.saturating_add(count);
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

    /// A heartbeat or a `_nak` says the session reached `end`.
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

// ---------------------------------------------------------------------------
// Sending

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

/// An envelope to post again, as [`write_control_body`] writes it.
#[derive(Debug, Clone)]
pub(crate) struct Repost {
    pub(crate) seq: u64,
    pub(crate) kinds: usize,
    pub(crate) bytes: Vec<u8>,
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

// The writers of presence and repair bodies: the send path's MessagePack
// writers (rmp, in envelope.rs), with the JSON forms of the few shapes
// these bodies have.

fn write_key(codec: Codec, buf: &mut Vec<u8>, key: &str) {
    match codec {
        Codec::Json => {
            buf.push(b'"');
            buf.extend_from_slice(key.as_bytes());
            buf.extend_from_slice(b"\":");
        }
        Codec::MessagePack => write_msgpack_str(buf, key),
    }
}

fn write_uint(codec: Codec, buf: &mut Vec<u8>, n: u64) {
    match codec {
        Codec::Json => buf.extend_from_slice(n.to_string().as_bytes()),
        Codec::MessagePack => write_msgpack_uint(buf, n),
    }
}

/// `key: [[instance, session, first, end], ...]`.
fn write_entry(codec: Codec, buf: &mut Vec<u8>, key: &str, list: &[WireRange]) {
    write_key(codec, buf, key);
    match codec {
        Codec::Json => buf.push(b'['),
        Codec::MessagePack => write_array_len(buf, list.len()),
    }
    for (i, (instance, session, first, end)) in list.iter().enumerate() {
        match codec {
            Codec::Json => {
                if i > 0 {
                    buf.push(b',');
                }
                buf.push(b'[');
                // A JSON string, escaped as serde_json does it.
                let quoted = serde_json::Value::from(instance.as_str()).to_string();
                buf.extend_from_slice(quoted.as_bytes());
                for n in [session, first, end] {
                    buf.push(b',');
                    write_uint(codec, buf, *n);
                }
                buf.push(b']');
            }
            Codec::MessagePack => {
                write_array_len(buf, 4);
                write_msgpack_str(buf, instance);
                for n in [session, first, end] {
                    write_msgpack_uint(buf, *n);
                }
            }
        }
    }
    if codec == Codec::Json {
        buf.push(b']');
    }
}

/// The body of a presence or repair post: `origin`'s metadata, a heartbeat
/// (`_hb`, how many envelopes it posted), the lists that are not empty, and
/// the timestamp and signature with a signer. Only reserved keys: a Python
/// SocketScience receiver calls no callback for it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_control_body(
    buf: &mut Vec<u8>,
    codec: Codec,
    origin: &Origin,
    heartbeat: u64,
    requests: &[WireRange],
    unrepairable: &[WireRange],
    repairs: &[Repost],
    election: Option<&[u8]>,
    signer: Option<Signer<'_>>,
) {
    buf.clear();
    match codec {
        Codec::Json => {
            buf.push(b'{');
            buf.extend_from_slice(origin.entries(codec));
            buf.push(b',');
            write_uint_entry(codec, buf, KEY_HEARTBEAT, heartbeat);
            // Failover: the election's `_el` entry, written by the election.
            if let Some(entry) = election {
                buf.push(b',');
                buf.extend_from_slice(entry);
            }
            for (key, list) in [(KEY_REQUEST, requests), (KEY_UNREPAIRABLE, unrepairable)] {
                if !list.is_empty() {
                    buf.push(b',');
                    write_entry(codec, buf, key, list);
                }
            }
            if !repairs.is_empty() {
                buf.extend_from_slice(b",\"");
                buf.extend_from_slice(KEY_REPAIR.as_bytes());
                buf.extend_from_slice(b"\":[");
                for (i, e) in repairs.iter().enumerate() {
                    if i > 0 {
                        buf.push(b',');
                    }
                    buf.push(b'[');
                    buf.extend_from_slice(e.seq.to_string().as_bytes());
                    buf.extend_from_slice(b",{");
                    buf.extend_from_slice(&e.bytes);
                    buf.extend_from_slice(b"}]");
                }
                buf.push(b']');
            }
            match signer {
                Some(signer) => {
                    buf.push(b',');
                    write_uint_entry(codec, buf, KEY_TIMESTAMP, signer.timestamp);
                    signer.keys.sign(codec, buf);
                }
                None => buf.push(b'}'),
            }
        }
        Codec::MessagePack => {
            let entries = 3
                + usize::from(!requests.is_empty())
                + usize::from(!unrepairable.is_empty())
                + usize::from(!repairs.is_empty())
                + usize::from(election.is_some())
                + if signer.is_some() { 2 } else { 0 };
            write_map_len(buf, entries);
            buf.extend_from_slice(origin.entries(codec));
            write_uint_entry(codec, buf, KEY_HEARTBEAT, heartbeat);
            if let Some(entry) = election {
                buf.extend_from_slice(entry);
            }
            for (key, list) in [(KEY_REQUEST, requests), (KEY_UNREPAIRABLE, unrepairable)] {
                if !list.is_empty() {
                    write_entry(codec, buf, key, list);
                }
            }
            if !repairs.is_empty() {
                write_key(codec, buf, KEY_REPAIR);
                write_array_len(buf, repairs.len());
                for e in repairs {
                    write_array_len(buf, 2);
                    write_msgpack_uint(buf, e.seq);
                    write_map_len(buf, e.kinds);
                    buf.extend_from_slice(&e.bytes);
                }
            }
            if let Some(signer) = signer {
                write_uint_entry(codec, buf, KEY_TIMESTAMP, signer.timestamp);
                signer.keys.sign(codec, buf);
            }
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
        let mut t = Track::new(1, 0);
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

    #[test]
    fn giving_up_skips_what_is_held() {
        let mut t = Track::new(1, 0);
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
