//! Counters: what a node sent, received, dispatched and dropped, by reason.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident $(: $drop:ident)?,)*) => {
        /// A snapshot of a node's counters, from [`Node::stats`](crate::Node::stats).
        ///
        /// Every counter only grows. Drops and rejections each have their own
        /// counter, so a flood or a misconfiguration shows up by reason.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct Stats {
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $(pub(crate) $name: Counter,)*
        }

        impl Counters {
            pub(crate) fn snapshot(&self) -> Stats {
                Stats { $($name: self.$name.0.load(Relaxed),)* }
            }
        }

        impl Stats {
            /// Every counter as (name, value, help), in the order declared:
            /// what an exporter publishes (a counter added to `Stats`
            /// appears here by itself). The help is the field's doc.
            ///
            /// ```
            /// let stats = socketscience::Stats::default();
            /// let (name, value, help) = stats.iter().next().unwrap();
            /// assert_eq!((name, value), ("sent", 0));
            /// assert!(help.starts_with("Envelopes accepted"));
            /// ```
            pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64, &'static str)> {
                const HELP: &[(&str, &str)] = &[
                    $((stringify!($name), concat!($($doc, "\n"),*)),)*
                ];
                let values = [$(self.$name,)*];
                HELP.iter()
                    .zip(values)
                    .map(|(&(name, help), value)| (name, value, help.trim()))
            }

            /// The counters of what is dropped from the room, by name, in
            /// the order declared: what [`Stats::rejected`] sums and what
            /// the receive path's drop log summarises.
            pub(crate) const DROPS: &'static [(&'static str, DropKind, fn(&Stats) -> u64)] = &[
                $($((stringify!($name), DropKind::$drop, |s: &Stats| s.$name),)?)*
            ];
        }
    };
}

/// How a counter of drops counts (marked after its name in `counters!`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropKind {
    /// A chat message or envelope refused: part of [`Stats::rejected`].
    Rejected,
    /// Dropped but not a refusal of a message (a partial envelope given up,
    /// repair traffic refused): logged, not part of [`Stats::rejected`].
    Dropped,
}

// A counter of drops from the room is marked after its name: `Rejected`
// (summed by `Stats::rejected`) or `Dropped` (not a refusal); both are
// summarised by the receive path's drop log.
counters! {
    /// Envelopes accepted by `send`/`broadcast` (one per envelope, whatever it holds).
    sent,
    /// Chat posts handed to the transport (frames and chunks).
    posts,
    /// Chat messages the transport delivered from the room.
    received,
    /// Envelopes read and accepted from the room, or sent by this node itself.
    envelopes,
    /// Handler runs that completed without error.
    dispatched,
    /// Messages whose kind no handler of this node takes.
    unknown_kinds,
    /// Messages whose value does not fit their type (logged with the serde error).
    bad_values,
    /// Chat messages that are not frames (human talk): not an error.
    not_frames,
    /// Chat messages from accounts this node does not trust, dropped unread.
    untrusted: Rejected,
    /// Frames or chunks that could not be read (bad framing, base64 or body).
    malformed: Rejected,
    /// Envelopes over a size, kinds or depth limit, dropped.
    too_large: Rejected,
    /// Envelopes seen before (same sender, session and sequence number),
    /// dropped; on a node without a secret (see `replayed` for one with).
    duplicates: Rejected,
    /// Envelopes with no signature, dropped by a node with a secret.
    unsigned: Rejected,
    /// Envelopes whose signature does not match any of the node's secrets.
    bad_signature: Rejected,
    /// Signed envelopes whose timestamp is outside the allowed clock skew.
    stale: Rejected,
    /// Signed envelopes seen before (same sender, session and sequence
    /// number), and signed presence posts no newer than the last taken from
    /// their sender's session: neither counts as a sign of life.
    replayed: Rejected,
    /// This node's own posts echoed back by the chat, dropped (their handlers ran at send time).
    own_echoes,
    /// Chunks received.
    chunks,
    /// Framed chat messages from untrusted accounts beyond the first 64,
    /// which [`Node::untrusted_accounts`](crate::Node::untrusted_accounts)
    /// does not list (they are in `untrusted` too).
    untrusted_unlisted,
    /// Partial envelopes dropped before completion (too old, too many, too large).
    partials_dropped: Dropped,
    /// Peers forgotten to stay within the most listed (4 096, the least
    /// recently heard first): a flood of instance names.
    peers_dropped: Dropped,
    /// Shared jobs (messages of a kind with `#[handler(shared)]` handlers)
    /// this node ran: the rest ran in other instances.
    shared_runs,
    /// Shared jobs this node ran that may have run in another instance too
    /// ([`Context::is_takeover`](crate::Context::is_takeover)): taken over
    /// from an instance gone before it confirmed them, or run while this
    /// node had just joined the share. Part of `shared_runs`.
    shared_takeovers,
    /// Shared jobs held for takeover that fell out of their bound (count or
    /// age, see [`NodeBuilder::shared_held`](crate::NodeBuilder::shared_held))
    /// before their instance confirmed them: logged; if that instance did
    /// not run them, nobody did.
    shared_dropped,
    /// Handler runs that returned an error.
    handler_errors,
    /// Handler runs that panicked.
    handler_panics,
    /// Chat posts the transport gave up on after its tries of real
    /// failures (logged with how many envelopes each held); throttle
    /// answers never count as failures.
    posts_given_up,
    /// Chat messages seen in the room whose full source could not be read
    /// within the transport's bound (logged with their message id): their
    /// envelopes did not reach this node.
    sources_lost,
    /// Times the chat answered that the room is in timeout; the transport
    /// waited it out.
    room_timeouts,
    /// Envelopes given up: missed and not repaired (the sender restarted,
    /// its history no longer held them, or the repair timeout passed); each
    /// range is also logged with its sender.
    lost,
    /// Envelopes that arrived through repair (posted again on request).
    repaired,
    /// Heartbeat posts (made when the node posted nothing for a heartbeat
    /// interval).
    heartbeats,
    /// Ranges this node asked others to post again.
    repair_requests,
    /// Posts spent on repair: requests, ranges that cannot be repaired, and
    /// envelopes posted again.
    repair_posts,
    /// This node's envelopes posted again on request.
    resent,
    /// Repair traffic refused: absurd or unreadable requests, ranges asked
    /// of this node that it never posted.
    repairs_refused: Dropped,
    /// Statements about a sender session refused because they did not come
    /// from its owner (the same instance, posting from the chat account the
    /// session has posted from): its envelopes, heartbeats and reposts from
    /// another account, a `_nak` about it from another instance, a new
    /// session that would replace a live one of another account.
    not_owner: Dropped,
    /// Values from the room refused as absurd: a sequence number or
    /// heartbeat end more than 2^20 beyond what was heard of a live
    /// session, an election term beyond what was seen, a `_nak` reaching
    /// past the session's end.
    absurd: Dropped,
    /// Gaps in the room's history a transport could not read back whole
    /// (Matrix: more was posted while away than its backfill bound), so
    /// that messages may have been missed.
    history_gaps,
    /// Compressed bodies refused before they were read: they would inflate
    /// past `max_envelope_bytes` (a compression bomb), their compressed
    /// data is broken, or their method unknown.
    compressed_refused: Rejected,
    /// Envelopes still not posted when `shutdown` reached its bound
    /// ([`NodeBuilder::shutdown_timeout`](crate::NodeBuilder::shutdown_timeout)):
    /// dropped, logged with their count, and named in the error `shutdown`
    /// returns.
    unposted,
}

impl Stats {
    /// All envelopes and chat messages rejected, whatever the reason.
    pub fn rejected(&self) -> u64 {
        Stats::DROPS
            .iter()
            .filter(|(_, kind, _)| *kind == DropKind::Rejected)
            .map(|(_, _, count)| count(self))
            .sum()
    }

    /// All handler failures: errors and panics.
    pub fn handler_failures(&self) -> u64 {
        self.handler_errors + self.handler_panics
    }
}

impl Counter {
    /// Adds to a counter that several tasks may update at once (a
    /// transport's posting and receiving sides).
    pub(crate) fn add_shared(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }
}

/// One counter, alone on its cache line: the sending side and the
/// dispatcher, on different cores, count without fighting over a line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Counter(AtomicU64);

impl Counters {
    /// Adds to a counter that one writer at a time updates: the node's
    /// dispatcher (everything about receiving), its transport (`posts`), or
    /// the sender holding the outbox's lock (`sent`). A plain load and
    /// store, without the locked instruction of `fetch_add`; readers see a
    /// recent value.
    pub(crate) fn add_owned(counter: &Counter, n: u64) {
        counter
            .0
            .store(counter.0.load(Relaxed).wrapping_add(n), Relaxed);
    }
}
