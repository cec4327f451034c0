//! The send path's last step: taking envelopes from the outbox, grouping
//! them into posts (a batch, a merged map, deflated), framing and chunking
//! the posts, and the presence and repair traffic, for the transport's
//! [`TransportIo::next_post`](crate::transport::TransportIo::next_post).

use std::collections::VecDeque;
use std::task::Poll;

use crate::core::envelope::{
    assemble_into, assemble_msgpack_batch_into, grown_size, mergeable, overhead, Encoded, Signer,
};
use crate::core::Core;
use crate::repair::History;
use crate::stats::Counters;
use crate::wire::{self, Codec, LineMode};

/// The sending side of a transport's handle: what waits to be posted.
pub(crate) struct Poster {
    max_len: usize,
    lines: LineMode,
    rng: fastrand::Rng,
    /// Posts made and not yet handed over (the chunks of a long one, the
    /// presence and repair traffic).
    pending: VecDeque<String>,
    /// The body being framed, kept for the next post.
    body: Vec<u8>,
    /// The envelopes of the post being made (kept for its allocation).
    group: Vec<Encoded>,
    /// Envelopes taken from the outbox that did not fit the last post:
    /// they go first in the next.
    carry: VecDeque<Encoded>,
    /// The compressed body being tried (kept for its allocation).
    packed: Vec<u8>,
    /// The envelopes posted, kept to post again when asked.
    history: History,
    /// One past the highest sequence number of the envelopes assembled
    /// into posts so far.
    assembled_end: u64,
    /// One past the highest sequence number the transport is done with
    /// once the last post handed over is posted (a frame's envelopes once
    /// its last chunk is).
    through: u64,
    /// Whether the transport says itself which posts are done
    /// ([`TransportIo::confirm_explicitly`](crate::transport::TransportIo)); otherwise
    /// a post is done when the transport asks for the next.
    explicit: bool,
    /// The node's session, which its chunks are bound to, and its keys,
    /// which sign them.
    session: u64,
    keys: crate::security::Keys,
}

/// What [`Poster::gather`] found.
enum Gathered {
    /// Envelopes to post.
    Envelopes,
    /// Presence or repair traffic to post.
    Control,
    /// The node shut down and nothing waits.
    Closed,
}

/// Most envelopes one post carries.
const MAX_GROUP: usize = 1_024;
/// Most kinds one merged MessagePack map carries (receivers refuse more
/// than their `max_kinds`, 64 by default).
const MAX_MERGED_KINDS: usize = 32;
/// How many times a post's room the envelopes gathered for it may take
/// before compression: a group of small, similar envelopes deflates to a
/// fifth to a tenth of its size (BENCHMARKS.md, "Messages per post").
const GATHER_FACTOR: usize = 12;

impl Poster {
    /// Posts of at most `max_len` characters in `lines` mode, keeping what
    /// they carried in `history`.
    pub(crate) fn new(
        max_len: usize,
        lines: LineMode,
        rng: fastrand::Rng,
        history: History,
        session: u64,
        keys: crate::security::Keys,
    ) -> Poster {
        Poster {
            max_len,
            lines,
            rng,
            pending: VecDeque::new(),
            body: Vec::new(),
            group: Vec::new(),
            carry: VecDeque::new(),
            packed: Vec::new(),
            history,
            assembled_end: 0,
            through: 0,
            explicit: false,
            session,
            keys,
        }
    }

    /// The transport confirms its posts itself (see [`Poster::through`]).
    pub(crate) fn confirm_explicitly(&mut self) {
        self.explicit = true;
    }

    /// One past the highest sequence number the transport is done with once
    /// the last post it was given is posted.
    pub(crate) fn through(&self) -> u64 {
        self.through
    }

    /// How many envelopes the last post (the frame of the last chunk) held.
    pub(crate) fn last_post_envelopes(&self) -> usize {
        self.group.len()
    }

    /// The next text to post: see [`TransportIo::next_post`](crate::transport::TransportIo::next_post).
    pub(crate) async fn next_post(&mut self, core: &Core) -> Option<String> {
        if !self.explicit {
            // Asked again: the last post is done. (One writer: a plain store.)
            core.confirmed_end
                .store(self.through, std::sync::atomic::Ordering::Relaxed);
        }
        let post = match self.pending.pop_front() {
            Some(chunk) => chunk,
            None => loop {
                let mut group = std::mem::take(&mut self.group);
                let gathered = std::future::poll_fn(|cx| self.gather(cx, core, &mut group)).await;
                match gathered {
                    Gathered::Envelopes => {}
                    Gathered::Control => {
                        self.group = group;
                        self.control(core);
                        match self.pending.pop_front() {
                            Some(post) => break post,
                            None => continue,
                        }
                    }
                    Gathered::Closed => {
                        self.group = group;
                        return None;
                    }
                }
                let body = self.assemble(core, &mut group);
                if let Some(last) = group.last() {
                    let presence = &core.presence;
                    self.assembled_end = last.seq + 1;
                    presence
                        .posted_end
                        .store(self.assembled_end, std::sync::atomic::Ordering::Relaxed);
                    // A copy kept for repair.
                    self.history.keep(&group, presence.coarse_ms());
                }
                let post = self.frame(&body);
                if body.capacity() <= 64 << 10 {
                    self.body = body;
                }
                self.group = group;
                match post.or_else(|| self.pending.pop_front()) {
                    Some(post) => break post,
                    None => continue,
                }
            },
        };
        if self.pending.is_empty() {
            // The post is a whole frame or the last chunk of one.
            self.through = self.assembled_end;
        }
        Counters::add_owned(&core.counters.posts, 1);
        Some(post)
    }

    /// The body bytes most one post carries (a frame is 8 characters
    /// around the base64 of its body).
    fn room(&self) -> usize {
        self.max_len.saturating_sub(8) / 4 * 3
    }

    /// The body of a post of `group`'s envelopes: a single envelope as it
    /// is; several as a batch (or, in MessagePack where no kind repeats, a
    /// merged map), deflated if that is too long for one post. If even
    /// deflated it is too long, the last envelopes go back to wait for the
    /// next post (in `carry`) until it fits, or one envelope is left. (With
    /// `python_peers`, groups are of one envelope: posted as it is.)
    // Inline: `next_post` is its one caller, once per post.
    #[inline]
    fn assemble(&mut self, core: &Core, group: &mut Vec<Encoded>) -> Vec<u8> {
        let signer = Signer::now(&core.keys);
        let mut body = std::mem::take(&mut self.body);
        write_group(&mut body, core, group, signer);
        if self.fits(group, &body) {
            return body;
        }
        self.shrink(core, group, body, signer)
    }

    /// Whether `body` goes in one post as it is (one envelope always does:
    /// in chunks if need be).
    #[inline]
    fn fits(&self, group: &[Encoded], body: &[u8]) -> bool {
        group.len() == 1 || body.len() <= self.room()
    }

    /// A body too long for one post: deflated, and if that is still too
    /// long, written again with fewer envelopes (the rest go back to wait,
    /// in `carry`) until it fits or one envelope is left. (Out of line:
    /// only a burst's posts come here.)
    #[inline(never)]
    fn shrink(
        &mut self,
        core: &Core,
        group: &mut Vec<Encoded>,
        mut body: Vec<u8>,
        signer: Option<Signer<'_>>,
    ) -> Vec<u8> {
        let room = self.room();
        loop {
            wire::deflate_body(&body, &mut self.packed);
            if self.packed.len() <= room {
                std::mem::swap(&mut body, &mut self.packed);
                return body;
            }
            // Fewer envelopes, by the ratio seen (with a margin).
            let n = group.len();
            let keep = (n * room * 15 / 16 / self.packed.len()).clamp(1, n - 1);
            for e in group.drain(keep..).rev() {
                self.carry.push_front(e);
            }
            write_group(&mut body, core, group, signer);
            if self.fits(group, &body) {
                return body;
            }
        }
    }

    /// Frames the presence and repair traffic waiting into posts (queued
    /// in `pending`): one post of heartbeat, requests and ranges that
    /// cannot be repaired, and the envelopes asked for, posted again (at
    /// most once per repair window each), in as few posts as fit.
    #[cold]
    #[inline(never)]
    fn control(&mut self, core: &Core) {
        let presence = &core.presence;
        let queue = presence.take();
        presence.tick();
        let posted = presence
            .posted_end
            .load(std::sync::atomic::Ordering::Relaxed);
        let (picked, gone) = self.history.select(
            &queue.serve,
            presence.coarse_ms(),
            presence.options.repair_window.as_millis() as u64,
        );
        let mut unrepairable = queue.unrepairable;
        for (first, end) in gone {
            if unrepairable.len() < crate::repair::MAX_QUEUED {
                unrepairable.push((core.name.to_string(), core.session, first, end));
            }
        }
        let codec = core.codec;
        let origin = &core.origin;
        let mut body = Vec::new();
        let counters = &core.counters;
        let election = core.election.as_deref().map(|e| e.entry(codec));
        if queue.heartbeat || !queue.requests.is_empty() || !unrepairable.is_empty() {
            // This node's meta and kinds, when they changed or a newcomer
            // has not heard them; how far it dealt with shared jobs.
            let own = presence
                .take_own()
                .map(|said| crate::presence::own_entries(codec, &said))
                .unwrap_or_default();
            let confirmed = core.shared.take_confirmations(codec);
            let entries: Vec<&[u8]> = election
                .as_deref()
                .into_iter()
                .chain(own.iter().map(Vec::as_slice))
                .chain(confirmed.as_deref())
                .collect();
            wire::write_control_body(
                &mut body,
                codec,
                origin,
                posted,
                &queue.requests,
                &unrepairable,
                &[],
                &entries,
                Signer::now(&core.keys)
                    .as_ref()
                    .map(|s| s as &dyn wire::Sign),
            );
            if let Some(frame) = self.frame(&body) {
                self.pending.push_back(frame);
            }
            if queue.requests.is_empty() && unrepairable.is_empty() {
                Counters::add_owned(&counters.heartbeats, 1);
            } else {
                Counters::add_owned(&counters.repair_posts, 1);
            }
        }
        // The envelopes asked for, as many per post as fit.
        let room = self.max_len.saturating_sub(8) / 4 * 3;
        let limit = room.saturating_sub(overhead(origin) + 32);
        let mut at = 0;
        while at < picked.len() {
            let mut group = Vec::new();
            let mut size = 0;
            while let Some(e) = picked.get(at) {
                let grown = size + e.bytes.len() + 24;
                if !group.is_empty() && (grown > limit || group.len() >= crate::repair::MAX_REPAIRS)
                {
                    break;
                }
                size = grown;
                group.push(e.clone());
                at += 1;
            }
            wire::write_control_body(
                &mut body,
                codec,
                origin,
                posted,
                &[],
                &[],
                &group,
                &election.as_deref().into_iter().collect::<Vec<_>>(),
                Signer::now(&core.keys)
                    .as_ref()
                    .map(|s| s as &dyn wire::Sign),
            );
            let n = group.len() as u64;
            if let Some(frame) = self.frame(&body) {
                self.pending.push_back(frame);
            }
            Counters::add_owned(&counters.repair_posts, 1);
            Counters::add_owned(&counters.resent, n);
        }
    }

    /// Takes the next envelope waiting into `group` (after giving back the
    /// last post's), with those behind it that fit one post with it; or
    /// says that presence or repair traffic waits.
    #[inline]
    fn gather(
        &mut self,
        cx: &mut std::task::Context<'_>,
        core: &Core,
        group: &mut Vec<Encoded>,
    ) -> Poll<Gathered> {
        if core.presence.is_pending() {
            return Poll::Ready(Gathered::Control);
        }
        match self.gather_envelopes(cx, core, group) {
            Poll::Ready(true) => Poll::Ready(Gathered::Envelopes),
            Poll::Ready(false) => Poll::Ready(Gathered::Closed),
            // Looked at again after the outbox registered the waker (see
            // `Outbox::wake_transport`).
            Poll::Pending if core.presence.is_pending() => Poll::Ready(Gathered::Control),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Takes the next envelope waiting into `group` (after giving back the
    /// last post's), with those behind it that fit one post with it.
    /// `Ready(false)` once the node has shut down and nothing waits.
    #[inline]
    fn gather_envelopes(
        &mut self,
        cx: &mut std::task::Context<'_>,
        core: &Core,
        group: &mut Vec<Encoded>,
    ) -> Poll<bool> {
        let room = self.room();
        // Enough to fill a post once deflated (see `assemble`, which checks
        // what fits exactly), within what receivers inflate.
        let limit = (room * GATHER_FACTOR)
            .saturating_sub(overhead(&core.origin))
            .min(core.max_envelope_bytes / 2);
        let mut size = 0;
        // With Python peers, each envelope goes alone, as it was sent (so
        // never in a batch, never deflated).
        let alone = core.python_peers.is_some();
        core.outbox
            .poll_posts(cx, group, &mut self.carry, |group, next| {
                if group.is_empty() {
                    // The first goes whatever its size (in chunks if need be).
                    size = grown_size(0, next);
                    return true;
                }
                if alone {
                    return false;
                }
                let grown = grown_size(size, next);
                let fits = group.len() < MAX_GROUP && grown <= limit;
                if fits {
                    size = grown;
                }
                fits
            })
    }

    /// Frames a body: the frame if it fits one post; else its chunks,
    /// queued at the back of `pending` (`None`). (Framing and chunking in
    /// one place.)
    #[inline]
    fn frame(&mut self, body: &[u8]) -> Option<String> {
        // Sized at once (`write_frame_of` reserves what it writes).
        let mut frame = String::with_capacity(wire::frame_len(self.lines, body.len()));
        wire::write_frame_of(&mut frame, self.lines, self.rng.u16(0..10_000), body);
        if frame.len() <= self.max_len {
            return Some(frame);
        }
        self.chunk(frame)
    }

    /// A frame too long for one post, split into chunks queued at the back
    /// of `pending` (`None`). (Out of line: most posts fit.)
    #[inline(never)]
    fn chunk(&mut self, frame: String) -> Option<String> {
        // The base64 body sits between the start and the `\x03`.
        let start = self.lines.frame_start().len() + 4;
        let b64 = &frame[start..frame.len() - 1];
        // The node checked at start that chunks fit this transport (were it
        // not so, the whole frame would go).
        let keys = &self.keys;
        let sign = |covered: &[u8]| keys.chunk_tag(covered).unwrap_or_default();
        let binding = wire::Binding {
            session: self.session,
            signer: (!keys.is_empty()).then_some(&sign as wire::ChunkSigner<'_>),
        };
        match wire::split_into_bound_chunks(
            self.lines,
            self.rng.u32(..),
            binding,
            b64,
            self.max_len,
        ) {
            Some(chunks) => {
                self.pending.extend(chunks);
                None
            }
            None => Some(frame),
        }
    }
}

/// Writes the body of `group`'s envelopes: a single envelope as it is;
/// several as a batch (or, in MessagePack where no kind repeats, a merged
/// map).
#[inline]
fn write_group(body: &mut Vec<u8>, core: &Core, group: &[Encoded], signer: Option<Signer<'_>>) {
    let (codec, origin) = (core.codec, &core.origin);
    if codec == Codec::MessagePack && group.len() > 1 && !mergeable(group, MAX_MERGED_KINDS) {
        assemble_msgpack_batch_into(body, origin, group, signer);
    } else {
        assemble_into(body, codec, origin, group, signer);
    }
}
