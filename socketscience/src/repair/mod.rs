//! Gap repair: what a sender keeps to post again ([`History`], `history.rs`),
//! what a receiver knows of each sender session (the replay window,
//! `window.rs`: what ran, what is held, what is missing), and the limits
//! both sides hold to (here). The send and receive paths call into it:
//! the receive path's `receive/gaps.rs` drives the windows (holding,
//! releasing, asking, giving up), the presence queue (`presence::Queue`)
//! carries requests and answers to the poster, and `Poster::control`
//! (`send/post.rs`) posts them, with bodies `wire/control.rs` writes.
//!
//! The promise ([`guide::reliability`](crate::guide::reliability)): while the sender process lives and
//! an envelope is within its history, every node in the room at some point
//! after the send runs each handler for it exactly once, in per-sender
//! order. What falls outside is counted in `Stats::lost` and logged.

mod history;
pub(crate) mod window;

pub(crate) use history::History;

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
/// Most ranges a receiver asks for per sender session per round (half of
/// what one post carries: a fast stream through a lossy chat leaves many
/// small gaps).
pub(crate) const RANGES_PER_ASK: usize = MAX_RANGES / 2;
/// Most bytes of early envelopes a receiver holds per sender session; past
/// it (or past the count, `Options::max_held`) the gap before them is given
/// up.
pub(crate) const MAX_HELD_BYTES: usize = 16 << 20;
/// Most bytes of early envelopes (inflated) a receiver holds in total, of
/// every sender session; past it the session holding the most gives up its
/// gap (counted in `Stats::lost`) and what it held runs.
pub(crate) const MAX_HELD_BYTES_TOTAL: usize = 2 * MAX_HELD_BYTES;
/// Most envelopes a `_nak` may give up at once; more is absurd.
pub(crate) const MAX_GIVE_UP: u64 = 1 << 20;
/// Furthest a session's end may move in one step beyond what a receiver
/// knows of it (an envelope's number, a heartbeat's or a `_nak`'s end):
/// further is absurd, refused and counted in `Stats::absurd`. A sender
/// this node has not heard for the peer timeout (it was cut off) is
/// followed wherever it got.
pub(crate) const MAX_AHEAD: u64 = 1 << 20;
/// Most entries of each list of the presence queue (requests, ranges to
/// serve, ranges that cannot be repaired); past it, new ones wait for the
/// next round (their askers ask again).
pub(crate) const MAX_QUEUED: usize = 64;
/// Most envelopes a node posts again per repair window, whoever asks: a
/// flood of requests cannot drive its posting further (what is left out
/// is asked for again by its askers).
pub(crate) const MAX_SERVED_PER_WINDOW: usize = 1_024;
