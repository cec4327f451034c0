//! Shared handlers (`#[handler(shared)]`, `Node::register_shared`): for
//! each envelope of a kind, one live instance among those with a shared
//! handler for it runs it. This file holds the rule and what the node's
//! tasks share of it; the jobs held for takeover, and running them, are
//! the node's (`node/shared.rs`).
//!
//! - **The choice** costs no post: every instance sees the room's envelopes
//!   in the same order, and computes the same rendezvous hash of the
//!   envelope's identity (sender session, sequence number, place in the
//!   body) over the candidates: the live instances that said (`_ps`, in
//!   their heartbeats) they handle the kind shared, and itself.
//! - **Confirmations**: an instance says in its heartbeats (`_sc`) how far
//!   it has dealt with each sender session's shared jobs; the other
//!   candidates hold each job until its chosen instance confirms it, and
//!   the next choice runs it when the chosen instance is gone first (a
//!   takeover, which may have run twice: counted).
//! - **Joining** is not exact either: a node counts itself as a candidate
//!   one heartbeat interval after it started (it has heard the others
//!   answer its first heartbeat), and what it runs within one more
//!   interval may have run elsewhere too (the others, or a sender's own
//!   dispatch, may not have heard it yet): marked and counted as a
//!   takeover.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::presence::Peer;

/// Most sender sessions one confirmation lists (the rest wait for the
/// next heartbeat).
pub(crate) const MAX_CONFIRMED: usize = 256;
/// Most entries a received `_sc` may hold; a longer one is ignored whole.
pub(crate) const MAX_CONFIRMED_READ: usize = 1_024;

/// The bounds on jobs held for takeover (see the `NodeBuilder` methods).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    pub(crate) max_held: usize,
    /// `None`: four peer timeouts.
    pub(crate) max_age: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_held: 16_384,
            max_age: None,
        }
    }
}

/// What the node's tasks share of its shared handlers.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) options: Options,
    inner: Mutex<Inner>,
    /// Confirmations wait for a heartbeat (read by the presence task).
    unconfirmed: AtomicBool,
}

#[derive(Debug, Default)]
struct Inner {
    /// When this node became a candidate; `None`: not (yet, or leaving).
    since: Option<Instant>,
    /// It stopped being one for good (shutdown).
    leaving: bool,
    /// Per sender session: the end of what this node has dealt with, and
    /// whether it moved since it was last confirmed.
    handled: Vec<(u64, u64, bool)>,
}

impl Shared {
    pub(crate) fn new(options: Options) -> Shared {
        Shared {
            options,
            inner: Mutex::new(Inner::default()),
            unconfirmed: AtomicBool::new(false),
        }
    }

    /// This node becomes a candidate (its warm-up is over); `false` when
    /// it is leaving.
    pub(crate) fn open(&self) -> bool {
        let mut inner = crate::sync::lock(&self.inner);
        if !inner.leaving && inner.since.is_none() {
            inner.since = Some(Instant::now());
        }
        !inner.leaving
    }

    /// This node's shared kinds changed: what it runs within the grace
    /// from now may have run elsewhere (the others have not heard yet).
    pub(crate) fn rejoin(&self) {
        let mut inner = crate::sync::lock(&self.inner);
        if inner.since.is_some() {
            inner.since = Some(Instant::now());
        }
    }

    /// This node stops being a candidate (it shuts down): what it confirms
    /// from now on is what it dealt with before.
    pub(crate) fn leave(&self) {
        let mut inner = crate::sync::lock(&self.inner);
        inner.leaving = true;
        inner.since = None;
    }

    /// Whether this node is a candidate, and whether what it runs now may
    /// also have run elsewhere (it became one less than `grace` ago).
    pub(crate) fn candidate(&self, grace: Duration) -> Option<bool> {
        let since = crate::sync::lock(&self.inner).since?;
        Some(since.elapsed() < grace)
    }

    /// This node has dealt with every shared job of sender `session` below
    /// `end` (while a candidate; otherwise nothing is recorded).
    pub(crate) fn handled(&self, session: u64, end: u64) {
        let mut inner = crate::sync::lock(&self.inner);
        if inner.since.is_none() {
            return;
        }
        match inner.handled.iter_mut().find(|(s, ..)| *s == session) {
            Some(entry) if entry.1 < end => {
                entry.1 = end;
                entry.2 = true;
            }
            Some(_) => return,
            None => {
                if inner.handled.len() >= 4 * MAX_CONFIRMED {
                    // Long-silent senders first out: the oldest entries.
                    inner.handled.drain(..MAX_CONFIRMED);
                }
                inner.handled.push((session, end, true));
            }
        }
        self.unconfirmed.store(true, Ordering::Relaxed);
    }

    /// Whether confirmations wait for a heartbeat.
    pub(crate) fn unconfirmed(&self) -> bool {
        self.unconfirmed.load(Ordering::Relaxed)
    }

    /// The `_sc` entry of the next heartbeat, key and value in `codec`:
    /// `[[session, end], ...]` of the sender sessions whose end moved.
    /// `None` when nothing moved.
    pub(crate) fn take_confirmations(&self, codec: crate::wire::Codec) -> Option<Vec<u8>> {
        if !self.unconfirmed.swap(false, Ordering::Relaxed) {
            return None;
        }
        let mut inner = crate::sync::lock(&self.inner);
        let mut list = Vec::new();
        for (session, end, moved) in inner.handled.iter_mut() {
            if *moved && list.len() < MAX_CONFIRMED {
                *moved = false;
                list.push((*session, *end));
            }
        }
        if inner.handled.iter().any(|e| e.2) {
            self.unconfirmed.store(true, Ordering::Relaxed);
        }
        drop(inner);
        (!list.is_empty()).then(|| write_confirmations(codec, &list))
    }
}

/// `"_sc": [[session, end], ...]` in `codec`.
fn write_confirmations(codec: crate::wire::Codec, list: &[(u64, u64)]) -> Vec<u8> {
    use crate::wire::{Codec, KEY_SHARED_CONFIRMED};
    let mut buf = Vec::with_capacity(8 + 24 * list.len());
    match codec {
        Codec::Json => {
            buf.extend_from_slice(format!("\"{KEY_SHARED_CONFIRMED}\":").as_bytes());
            serde_json::to_writer(&mut buf, list).expect("numbers serialise");
        }
        Codec::MessagePack => {
            rmp::encode::write_str(&mut buf, KEY_SHARED_CONFIRMED).expect("writing to a Vec");
            rmp_serde::encode::write(&mut buf, list).expect("numbers serialise");
        }
    }
    buf
}

/// Reads a peer's `_sc`; `None` (logged at debug) when it does not read or
/// is too long.
pub(crate) fn read_confirmations(
    codec: crate::wire::Codec,
    raw: &[u8],
    node: &str,
    from: &str,
) -> Option<Vec<(u64, u64)>> {
    match codec.decode::<Vec<(u64, u64)>>(raw) {
        Ok(list) if list.len() <= MAX_CONFIRMED_READ => Some(list),
        Ok(list) => {
            tracing::debug!(
                node,
                from,
                entries = list.len(),
                "ignored a peer's confirmations: too many"
            );
            None
        }
        Err(e) => {
            tracing::debug!(node, from, error = %e, "ignored a peer's confirmations");
            None
        }
    }
}

/// The identity of a job: its envelope's sender session and sequence
/// number (the body's first), and the message's place in the body.
/// Mixed the same way in every instance and every version.
pub(crate) fn job_id(session: u64, seq: u64, at: usize) -> u64 {
    mix(mix(session) ^ seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (at as u64).rotate_left(40))
}

/// The identity of a job whose envelope has no sequence number (Python
/// SocketScience's): its sender's account and its value.
pub(crate) fn job_id_of_value(account: &str, value: &[u8]) -> u64 {
    mix(fnv(account.as_bytes()) ^ fnv(value).rotate_left(17))
}

/// The rendezvous score of `instance` for job `job`: the highest runs it.
pub(crate) fn score(job: u64, instance: &str) -> u64 {
    mix(job ^ fnv(instance.as_bytes()))
}

/// A live peer that may run a shared job: its instance and session.
pub(crate) type Candidate = (std::sync::Arc<str>, u64);

/// The live peers (heard within `timeout`) that said they handle `kind`
/// shared.
pub(crate) fn peer_candidates(peers: &[Peer], kind: &str, timeout: Duration) -> Vec<Candidate> {
    let now = Instant::now();
    peers
        .iter()
        .filter(|p| {
            now.saturating_duration_since(p.last_heard()) <= timeout && p.handles_shared(kind)
        })
        .map(|p| (p.instance_arc(), p.session()))
        .collect()
}

/// Who runs job `job`: `Some(None)` this node (`own`, its name when it is
/// a candidate), `Some(Some(peer))` one of `peers`; `None` nobody (no
/// candidate at all). The highest score wins; a tie, the greater name.
pub(crate) fn choose<'a>(
    job: u64,
    own: Option<&'a str>,
    peers: &'a [Candidate],
) -> Option<Option<&'a Candidate>> {
    peers
        .iter()
        .map(|p| (&*p.0, Some(p)))
        .chain(own.map(|o| (o, None)))
        .max_by_key(|(name, _)| (score(job, name), *name))
        .map(|(_, who)| who)
}

/// SplitMix64's finaliser.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// FNV-1a, 64 bits.
fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_choice_spreads_evenly_and_moves_only_to_a_newcomer() {
        let names = ["a", "b", "c"];
        let mut counts = [0usize; 3];
        let mut moved_elsewhere = 0;
        for seq in 0..30_000u64 {
            let job = job_id(7, seq, 0);
            let best = (0..3)
                .max_by_key(|&i| (score(job, names[i]), names[i]))
                .unwrap();
            counts[best] += 1;
            // A fourth joining takes jobs only for itself.
            let with_d = ["a", "b", "c", "d"]
                .into_iter()
                .max_by_key(|n| (score(job, n), *n))
                .unwrap();
            if with_d != "d" && with_d != names[best] {
                moved_elsewhere += 1;
            }
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
        assert_eq!(moved_elsewhere, 0);
    }
}
