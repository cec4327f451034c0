//! Reassembly of chunked frames, bounded in count, bytes and age.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::wire::Chunk;

/// Bounds on partial envelopes held while their chunks arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblyLimits {
    /// Most partial envelopes held at once; past it the oldest is dropped.
    pub max_partials: usize,
    /// Most bytes held in all partial envelopes; past it the oldest are dropped.
    pub max_bytes: usize,
    /// Longest a partial envelope waits for its missing chunks.
    pub max_age: Duration,
}

impl Default for ReassemblyLimits {
    fn default() -> Self {
        ReassemblyLimits {
            max_partials: 64,
            max_bytes: 4 << 20,
            max_age: Duration::from_secs(120),
        }
    }
}

struct Partial {
    started: Instant,
    pieces: Vec<Option<Box<str>>>,
    have: usize,
    bytes: usize,
}

/// What adding a chunk gave.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Added {
    /// The body is whole: here is its base64.
    Complete(String),
    /// Still waiting for pieces.
    Pending,
    /// A piece already held, or of a frame already completed.
    Duplicate,
    /// Inconsistent with the chunks held for that id, or over a limit alone.
    Rejected,
}

/// A partial envelope's key: the posting account, the session its chunks
/// are bound to (`None`: unbound chunks) and the chunk id. Nobody else's
/// pieces join it: another account's are collected apart, and so are
/// another session's.
type Key = (Arc<str>, Option<u64>, u32);

/// Partial envelopes, keyed by the posting account, the session and the
/// chunk id.
pub(crate) struct Reassembly {
    limits: ReassemblyLimits,
    max_body: usize,
    partials: HashMap<Key, Partial>,
    /// Insertion order, for dropping the oldest.
    order: VecDeque<Key>,
    /// Recently completed ids, so late duplicates do not start a new partial.
    done: VecDeque<Key>,
    bytes: usize,
}

impl Reassembly {
    pub(crate) fn new(limits: ReassemblyLimits, max_body: usize) -> Reassembly {
        Reassembly {
            limits,
            max_body,
            partials: HashMap::new(),
            order: VecDeque::new(),
            done: VecDeque::new(),
            bytes: 0,
        }
    }

    /// Adds a chunk; `dropped` counts partials dropped to stay within limits.
    pub(crate) fn add(
        &mut self,
        account: &Arc<str>,
        chunk: Chunk<'_>,
        now: Instant,
        dropped: &mut u64,
    ) -> Added {
        *dropped += self.expire(now);
        let key = (account.clone(), chunk.session, chunk.id);
        if self.done.contains(&key) {
            return Added::Duplicate;
        }
        let total = chunk.total as usize;
        // A frame whose pieces cannot fit the body limit is refused at once.
        if total.saturating_mul(chunk.piece.len()) > self.max_body.saturating_mul(2)
            || chunk.piece.len() > self.max_body
        {
            return Added::Rejected;
        }
        if !self.partials.contains_key(&key) {
            while self.partials.len() >= self.limits.max_partials.max(1) {
                self.drop_oldest();
                *dropped += 1;
            }
            self.partials.insert(
                key.clone(),
                Partial {
                    started: now,
                    pieces: vec![None; total],
                    have: 0,
                    bytes: 0,
                },
            );
            self.order.push_back(key.clone());
        }
        let Some(partial) = self.partials.get_mut(&key) else {
            return Added::Rejected;
        };
        if partial.pieces.len() != total {
            return Added::Rejected;
        }
        let slot = &mut partial.pieces[chunk.index as usize - 1];
        if slot.is_some() {
            return Added::Duplicate;
        }
        *slot = Some(chunk.piece.into());
        partial.have += 1;
        partial.bytes += chunk.piece.len();
        self.bytes += chunk.piece.len();
        if partial.bytes > self.max_body {
            self.remove(&key);
            *dropped += 1;
            return Added::Rejected;
        }
        if partial.have == total {
            let Some(partial) = self.remove(&key) else {
                return Added::Rejected;
            };
            self.done.push_back(key);
            if self.done.len() > 256 {
                self.done.pop_front();
            }
            let mut body = String::with_capacity(partial.bytes);
            for piece in partial.pieces.into_iter().flatten() {
                body.push_str(&piece);
            }
            return Added::Complete(body);
        }
        while self.bytes > self.limits.max_bytes && !self.order.is_empty() {
            let oldest = self.order.front().cloned();
            self.drop_oldest();
            *dropped += 1;
            if oldest.as_ref() == Some(&key) {
                return Added::Rejected;
            }
        }
        Added::Pending
    }

    /// Drops partials older than the age limit; returns how many.
    pub(crate) fn expire(&mut self, now: Instant) -> u64 {
        let mut dropped = 0;
        while let Some(key) = self.order.front() {
            match self.partials.get(key) {
                Some(p) if now.duration_since(p.started) > self.limits.max_age => {
                    self.drop_oldest();
                    dropped += 1;
                }
                Some(_) => break,
                None => {
                    self.order.pop_front();
                }
            }
        }
        dropped
    }

    fn drop_oldest(&mut self) {
        while let Some(key) = self.order.pop_front() {
            if let Some(p) = self.partials.remove(&key) {
                self.bytes -= p.bytes;
                return;
            }
        }
    }

    fn remove(&mut self, key: &Key) -> Option<Partial> {
        let p = self.partials.remove(key)?;
        self.bytes -= p.bytes;
        self.order.retain(|k| k != key);
        Some(p)
    }

    /// Partial envelopes and bytes held now.
    #[cfg(test)]
    pub(crate) fn held(&self) -> (usize, usize) {
        (self.partials.len(), self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(id: u32, index: u32, total: u32, piece: &str) -> Chunk<'_> {
        Chunk {
            id,
            index,
            total,
            piece,
            session: None,
            tag: None,
        }
    }

    #[test]
    fn out_of_order_and_duplicates_make_one_body() {
        let mut r = Reassembly::new(ReassemblyLimits::default(), 1 << 20);
        let a: Arc<str> = "smokey".into();
        let now = Instant::now();
        let mut dropped = 0;
        assert_eq!(
            r.add(&a, chunk(7, 3, 3, "cc"), now, &mut dropped),
            Added::Pending
        );
        assert_eq!(
            r.add(&a, chunk(7, 3, 3, "cc"), now, &mut dropped),
            Added::Duplicate
        );
        assert_eq!(
            r.add(&a, chunk(7, 1, 3, "aa"), now, &mut dropped),
            Added::Pending
        );
        assert_eq!(
            r.add(&a, chunk(7, 2, 3, "bb"), now, &mut dropped),
            Added::Complete("aabbcc".into())
        );
        assert_eq!(
            r.add(&a, chunk(7, 2, 3, "bb"), now, &mut dropped),
            Added::Duplicate
        );
        assert_eq!(dropped, 0);
        assert_eq!(r.held(), (0, 0));
    }

    #[test]
    fn limits_hold() {
        let limits = ReassemblyLimits {
            max_partials: 4,
            max_bytes: 100,
            max_age: Duration::from_secs(10),
        };
        let mut r = Reassembly::new(limits, 1 << 20);
        let a: Arc<str> = "smokey".into();
        let now = Instant::now();
        let mut dropped = 0;
        for id in 0..1000 {
            r.add(&a, chunk(id, 1, 2, "0123456789"), now, &mut dropped);
            let (n, bytes) = r.held();
            assert!(n <= 4 && bytes <= 100);
        }
        assert_eq!(dropped, 996);
        assert_eq!(r.expire(now + Duration::from_secs(11)), 4);
        assert_eq!(r.held(), (0, 0));
    }
}
