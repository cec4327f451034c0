//! The sender table: who this node has heard from in the room, their
//! sessions and how far each got, and the check that admits an envelope
//! from the room (freshness, own echoes, duplicates, order).

use std::sync::Arc;

use tracing::trace;

use super::{Accept, Author, Deliver, Receiver, Refusal};
use crate::repair::window::{Admit, Track};
use crate::stats::Counters;
use crate::wire::Meta;

/// Most senders remembered for deduplication; past it the least recently
/// heard is forgotten.
pub(super) const MAX_SENDERS: usize = 4_096;
/// Sessions remembered per sender (a restart starts a new one; replays of
/// an older one are still recognised).
pub(super) const SESSIONS_PER_SENDER: usize = 4;
/// Sessions forgotten per sender whose ids are still remembered: what they
/// post is dropped as seen (eviction never makes an envelope run twice).
pub(super) const RETIRED_PER_SENDER: usize = 32;
pub(super) struct SenderState {
    pub(super) instance: Arc<str>,
    /// Its sessions, most recently heard first.
    pub(super) sessions: Vec<Track>,
    /// Sessions forgotten to make room, oldest first (at most
    /// [`RETIRED_PER_SENDER`]).
    pub(super) retired: Vec<u64>,
    pub(super) last_heard: u64,
    /// When its presence was last noted (coarse clock; `u64::MAX`: never).
    pub(super) published: u64,
}

/// The state of sender `from`, made if it is new (forgetting the least
/// recently heard sender when there are too many).
pub(super) fn sender_state<'s>(
    senders: &'s mut foldhash::HashMap<Box<str>, SenderState>,
    from: &str,
    heard: u64,
) -> &'s mut SenderState {
    if !senders.contains_key(from) {
        if senders.len() >= MAX_SENDERS {
            // The least recently heard eighth at once: a flood of new
            // names costs one pass per eighth, not one per name.
            let mut heard: Vec<u64> = senders.values().map(|s| s.last_heard).collect();
            let cut = MAX_SENDERS / 8;
            let (_, &mut oldest_kept, _) = heard.select_nth_unstable(cut);
            senders.retain(|_, s| s.last_heard >= oldest_kept);
        }
        senders.insert(
            from.into(),
            SenderState {
                instance: from.into(),
                sessions: Vec::new(),
                retired: Vec::new(),
                last_heard: heard,
                published: u64::MAX,
            },
        );
    }
    senders.get_mut(from).expect("inserted above")
}

/// A sender session this node follows, as found in the sender table.
pub(super) struct Followed<'s> {
    /// The sender's shared name.
    pub(super) instance: &'s Arc<str>,
    pub(super) track: &'s mut Track,
    /// Whether a later session of the sender replaced it (it restarted).
    pub(super) replaced: bool,
}

/// `instance`'s `session`, if this node follows it.
pub(super) fn followed<'s>(
    senders: &'s mut foldhash::HashMap<Box<str>, SenderState>,
    instance: &str,
    session: u64,
) -> Option<Followed<'s>> {
    let state = senders.get_mut(instance)?;
    let i = state.sessions.iter().position(|t| t.session == session)?;
    let (later, rest) = state.sessions.split_at_mut(i);
    let track = &mut rest[0];
    // (Most recently heard first.)
    let replaced = later.iter().any(|t| t.owned_by(&track.account));
    Some(Followed {
        instance: &state.instance,
        track,
        replaced,
    })
}

impl<D: Deliver> Receiver<D> {
    /// Drops own echoes, stale and repeated envelopes; holds those that
    /// come before their turn; says who sent the rest.
    pub(super) fn accept(
        &mut self,
        meta: &Meta<'_>,
        account: &Arc<str>,
        signed: bool,
        has_messages: bool,
    ) -> Accept {
        let count = meta.count.unwrap_or(1);
        if signed {
            let max_skew = self.checks.max_skew;
            let now = crate::clock::now_millis();
            let fresh = meta
                .timestamp
                .is_some_and(|ts| now.abs_diff(ts) <= max_skew.as_millis() as u64);
            if !fresh {
                self.refuse(
                    Refusal::Stale,
                    account,
                    &format_args!("timestamp {:?}, now {now}", meta.timestamp),
                );
                return Accept::Reject;
            }
        }
        let Some(from) = meta.from.as_deref() else {
            // Python SocketScience sends no metadata.
            return Accept::Now {
                release: false,
                author: Author::Account,
            };
        };
        let core = &self.core;
        if meta.session == Some(core.session) && from == &*core.name {
            Counters::add_owned(&core.counters.own_echoes, 1);
            return Accept::Reject;
        }
        let (Some(session), Some(seq)) = (meta.session, meta.seq) else {
            if !has_messages {
                // Presence or repair traffic only.
                return Accept::Skip;
            }
            return Accept::Now {
                release: false,
                author: Author::Unnumbered,
            };
        };
        self.heard += 1;
        let heard = self.heard;
        // One lookup while the sender and its session are known.
        let (state, i) = match self.senders.get_mut(from) {
            Some(state) => match state.sessions.iter().position(|t| t.session == session) {
                Some(i) => (state, i),
                None => {
                    if let Some(refused) = self.first_of_session(from, session, seq, account) {
                        return refused;
                    }
                    match self.senders.get_mut(from) {
                        Some(state) => (state, 0),
                        None => return Accept::Reject,
                    }
                }
            },
            None => {
                if let Some(refused) = self.first_of_session(from, session, seq, account) {
                    return refused;
                }
                match self.senders.get_mut(from) {
                    Some(state) => (state, 0),
                    None => return Accept::Reject,
                }
            }
        };
        if !state.sessions[i].owned_by(account) {
            return self.not_owner(account, from, session);
        }
        state.last_heard = heard;
        let mut admitted = state.sessions[i].admit(seq, count);
        if admitted == Admit::TooFar {
            let silent = silent_for_long(&self.core.presence, state.published);
            let track = &mut state.sessions[i];
            if !silent {
                return self.absurd(account, from, seq);
            }
            // Cut off for long: followed wherever the session got.
            track.learn_end(seq);
            admitted = track.admit(seq, count);
        }
        let release = !state.sessions[i].held.is_empty();
        // Most recently used first (usually it is already).
        if i > 0 {
            state.sessions[..=i].rotate_right(1);
        }
        // A sign of life, unless it was seen before (a replay says nothing
        // of whether the sender still lives).
        if matches!(admitted, Admit::InOrder | Admit::Ahead) {
            let presence = &self.core.presence;
            let ms = presence.coarse_ms();
            if state.published == u64::MAX || ms >= state.published.saturating_add(1_000) {
                state.published = ms;
                let forgotten =
                    presence.heard(&state.instance, account, session, ms, Default::default());
                if forgotten > 0 {
                    Counters::add_owned(&self.core.counters.peers_dropped, forgotten);
                }
            }
        }
        match admitted {
            Admit::InOrder => Accept::Now {
                release,
                author: Author::Followed(state.instance.clone()),
            },
            Admit::Ahead => Accept::Hold,
            Admit::Duplicate => {
                let instance = state.instance.clone();
                self.refuse(
                    Refusal::Duplicate,
                    account,
                    &format_args!("{instance} #{seq}"),
                );
                Accept::Reject
            }
            Admit::Partial | Admit::TooFar => {
                trace!(node = %self.core.name, from, seq, count, "dropped a body that repeats part of what arrived");
                Accept::Reject
            }
        }
    }

    /// Makes `author` (of an envelope [`accept`](Self::accept)ed, with its
    /// `meta` and `account`) the sender its handlers see.
    pub(super) fn name_sender(&mut self, account: &Arc<str>, meta: &Meta<'_>, author: Author) {
        match author {
            Author::Account => self.deliver.set_sender(account, None, |name| name.into()),
            Author::Unnumbered => {
                self.deliver
                    .set_sender(account, meta.from.as_deref(), |name| name.into());
            }
            // The state's own name: recognised by address when it goes on.
            Author::Followed(instance) => {
                self.deliver
                    .set_sender(account, Some(&instance), |_| instance.clone());
            }
        }
    }

    /// The first post heard of `from`'s `session` (an envelope numbered
    /// `seq`, or a heartbeat saying it reached `seq`): the session is
    /// followed (first in its sender's list) if it may be (see
    /// `new_session`); otherwise what to answer.
    #[cold]
    #[inline(never)]
    pub(super) fn first_of_session(
        &mut self,
        from: &str,
        session: u64,
        seq: u64,
        account: &Arc<str>,
    ) -> Option<Accept> {
        match self.new_session(from, session, seq, account) {
            NewSession::Followed => None,
            NewSession::Retired => {
                self.refuse(
                    Refusal::Duplicate,
                    account,
                    &format_args!("{from} #{seq} of a session forgotten"),
                );
                Some(Accept::Reject)
            }
            NewSession::NotOwner => Some(Accept::Reject),
        }
    }

    /// Counts a statement about `from`'s `session` not from its owner.
    #[cold]
    #[inline(never)]
    pub(super) fn not_owner(&mut self, account: &str, from: &str, session: u64) -> Accept {
        Counters::add_owned(&self.core.counters.not_owner, 1);
        trace!(node = %self.core.name, account, from, session, "refused a post about a session of another account");
        self.drops.note(&self.core);
        Accept::Reject
    }

    /// Counts an absurd value from the room.
    #[cold]
    #[inline(never)]
    pub(super) fn absurd(&mut self, account: &str, from: &str, value: u64) -> Accept {
        Counters::add_owned(&self.core.counters.absurd, 1);
        trace!(node = %self.core.name, account, from, value, "refused an absurd value");
        self.drops.note(&self.core);
        Accept::Reject
    }
}

/// Whether a sender last heard at coarse time `published` has been silent
/// for longer than the peer timeout (`u64::MAX`: just heard).
pub(super) fn silent_for_long(presence: &crate::presence::Presence, published: u64) -> bool {
    published != u64::MAX
        && presence.coarse_ms().saturating_sub(published)
            > presence.peer_timeout().as_millis() as u64
}

/// What became of a session heard for the first time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NewSession {
    /// Followed from now on (the sender's first session).
    Followed,
    /// A session forgotten to make room: what it posts was seen.
    Retired,
    /// Refused: a live session of another account holds the instance, and
    /// no room is left (counted).
    NotOwner,
}
