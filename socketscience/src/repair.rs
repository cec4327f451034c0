//! Gap repair's limits, shared by the receive path (`receive/gaps.rs`,
//! `receive/window.rs`: what a receiver knows of each sender session) and
//! the send path (`send/history.rs`: what a sender keeps to post again;
//! `send/control.rs`: the bodies of presence and repair posts).
//!
//! The promise (README, "Disconnects"): while the sender process lives and
//! an envelope is within its history, every node in the room at some point
//! after the send runs each handler for it exactly once, in per-sender
//! order. What falls outside is counted in `Stats::lost` and logged.

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
/// Most entries of each list of the presence queue (requests, ranges to
/// serve, ranges that cannot be repaired); past it, new ones wait for the
/// next round (their askers ask again).
pub(crate) const MAX_QUEUED: usize = 64;
