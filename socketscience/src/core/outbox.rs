//! The node's outgoing envelopes: numbered and queued under one lock for
//! its transport (to post) and its dispatcher (to run its own handlers), so
//! that sequence numbers follow queue order; each side takes what is
//! waiting under that same lock.
//!
//! One mutex over two `VecDeque`s: a send is one uncontended lock and,
//! while the transport and the dispatcher are busy, no wake-up; they take
//! envelopes in batches.
//!
//! The byte buffers go round: the transport and the dispatcher give back
//! the ones they are done with, and a sending thread gets one to encode its
//! next envelope into, so that a steady flow of envelopes allocates nothing.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;

use super::envelope::{self, BodyWriter, Encoded};
use crate::stats::{Counter, Counters};

/// Why an envelope was not queued.
pub(crate) enum Refused {
    /// A queue is at its capacity: the envelope, to try again with.
    Full(BodyWriter),
    /// The node is shutting down.
    Closed,
}

/// (On cache lines of its own: every task of the node takes its lock, and
/// nothing else of the node's shared state should move with it between
/// cores.)
#[repr(align(128))]
pub(crate) struct Outbox {
    state: Mutex<State>,
    capacity: usize,
    /// Senders waiting for room ([`Outbox::push`]).
    room: Notify,
}

struct State {
    next_seq: u64,
    open: bool,
    /// Envelopes to post, taken by the transport.
    posts: VecDeque<Encoded>,
    /// The same envelopes' bodies for this node's handlers, taken by the
    /// dispatcher.
    own: VecDeque<Vec<u8>>,
    /// The transport's task, while it waits for an envelope.
    transport: Option<Waker>,
    /// The dispatcher's task, while it waits for an envelope.
    dispatcher: Option<Waker>,
    /// Emptied buffers given back, for the next envelopes.
    spare: Vec<Vec<u8>>,
}

/// Most buffers kept for reuse.
const MAX_SPARE: usize = 256;
/// Largest buffer kept for reuse; bigger ones (a rare huge envelope) go.
const REUSED_CAPACITY: usize = 4 << 10;

impl State {
    /// Keeps `buf`'s allocation for a next envelope, if it is not too big.
    #[inline]
    fn give_back(&mut self, mut buf: Vec<u8>) {
        if self.spare.len() < MAX_SPARE && buf.capacity() <= REUSED_CAPACITY {
            buf.clear();
            self.spare.push(buf);
        }
    }

    fn spare(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_default()
    }
}

/// Wakes the task waiting in `slot`, if one is.
fn wake(slot: Option<Waker>) {
    if let Some(waker) = slot {
        waker.wake();
    }
}

/// Registers `cx`'s waker in `slot`, cloning it only when it changed.
fn register(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(waker) if waker.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

impl Outbox {
    /// An open outbox holding at most `capacity` envelopes per side.
    pub(crate) fn new(capacity: usize) -> Outbox {
        Outbox {
            state: Mutex::new(State {
                next_seq: 0,
                open: true,
                posts: VecDeque::new(),
                own: VecDeque::new(),
                transport: None,
                dispatcher: None,
                spare: Vec::new(),
            }),
            capacity,
            room: Notify::new(),
        }
    }

    /// The most envelopes each queue holds.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    #[inline]
    fn lock(&self) -> MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }

    /// Numbers the envelope and queues it for both sides (its body for this
    /// node's handlers too), if both have room, counting it in `sent`.
    pub(crate) fn try_push(&self, writer: BodyWriter, sent: &Counter) -> Result<(), Refused> {
        let mut state = self.lock();
        if !state.open {
            return Err(Refused::Closed);
        }
        if state.posts.len() >= self.capacity || state.own.len() >= self.capacity {
            return Err(Refused::Full(writer));
        }
        let seq = state.next_seq;
        state.next_seq += 1;
        let mut own = state.spare();
        let encoded = writer.finish_into(seq, &mut own);
        state.posts.push_back(encoded);
        state.own.push_back(own);
        // The envelope took this thread's encoding buffer: give it another.
        envelope::give_scratch(state.spare());
        // Every writer of `sent` holds the lock.
        Counters::add_owned(sent, 1);
        let (transport, dispatcher) = (state.transport.take(), state.dispatcher.take());
        drop(state);
        wake(transport);
        wake(dispatcher);
        Ok(())
    }

    /// [`try_push`](Self::try_push), waiting while a queue is full.
    pub(crate) async fn push(&self, mut writer: BodyWriter, sent: &Counter) -> Result<(), Refused> {
        loop {
            // Registered before looking, so that room made in between wakes it.
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.try_push(writer, sent) {
                Err(Refused::Full(back)) => writer = back,
                done => return done,
            }
            room.await;
        }
    }

    /// Takes the next envelope to post into `group`, with those behind it
    /// that `fits` accepts, in order: first those in `carry` (taken
    /// earlier and not posted yet, which come before the queue's), then
    /// the queue's. The envelopes `group` held (posted) are given back
    /// first. `fits` sees each envelope with the group so far, the first
    /// too (which is taken whatever it says). `Ready(false)` once the
    /// outbox is closed and empty.
    // Inline: the poster is its one caller.
    #[inline]
    pub(crate) fn poll_posts(
        &self,
        cx: &Context<'_>,
        group: &mut Vec<Encoded>,
        carry: &mut VecDeque<Encoded>,
        mut fits: impl FnMut(&[Encoded], &Encoded) -> bool,
    ) -> Poll<bool> {
        let mut state = self.lock();
        for posted in group.drain(..) {
            state.give_back(posted.bytes);
        }
        let was_full = state.posts.len() >= self.capacity;
        let Some(first) = carry.pop_front().or_else(|| state.posts.pop_front()) else {
            if !state.open {
                return Poll::Ready(false);
            }
            register(&mut state.transport, cx);
            return Poll::Pending;
        };
        fits(group, &first);
        group.push(first);
        loop {
            let next = match carry.front() {
                Some(next) => next,
                None => match state.posts.front() {
                    Some(next) => next,
                    None => break,
                },
            };
            if !fits(group, next) {
                break;
            }
            group.extend(carry.pop_front().or_else(|| state.posts.pop_front()));
        }
        drop(state);
        if was_full {
            self.room.notify_waiters();
        }
        Poll::Ready(true)
    }

    /// Moves up to `most` of this node's own bodies into `into`, after
    /// taking back those in `done` (dispatched). `Ready(false)` once the
    /// outbox is closed and empty.
    pub(crate) fn poll_own(
        &self,
        cx: &Context<'_>,
        into: &mut VecDeque<Vec<u8>>,
        most: usize,
        done: &mut Vec<Vec<u8>>,
    ) -> Poll<bool> {
        let mut state = self.lock();
        for body in done.drain(..) {
            state.give_back(body);
        }
        if state.own.is_empty() {
            if !state.open {
                return Poll::Ready(false);
            }
            register(&mut state.dispatcher, cx);
            return Poll::Pending;
        }
        let was_full = state.own.len() >= self.capacity;
        let n = state.own.len().min(most);
        into.extend(state.own.drain(..n));
        drop(state);
        if was_full {
            self.room.notify_waiters();
        }
        Poll::Ready(true)
    }

    /// Drops this node's own bodies waiting for the dispatcher (for the
    /// harness, which does not run them).
    #[cfg(feature = "test-util")]
    pub(crate) fn discard_own(&self) {
        let mut state = self.lock();
        let was_full = state.own.len() >= self.capacity;
        while let Some(body) = state.own.pop_front() {
            state.give_back(body);
        }
        drop(state);
        if was_full {
            self.room.notify_waiters();
        }
    }

    /// Refuses further envelopes; what is queued is still taken.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.open = false;
        let (transport, dispatcher) = (state.transport.take(), state.dispatcher.take());
        drop(state);
        wake(transport);
        wake(dispatcher);
        self.room.notify_waiters();
    }

    /// Wakes the transport if it waits for an envelope: presence and
    /// repair traffic is waiting for it (see `presence`). Under the lock, so
    /// that a transport about to wait sees the flag set before it or gets
    /// the wake-up.
    pub(crate) fn wake_transport(&self) {
        let transport = self.lock().transport.take();
        wake(transport);
    }

    /// How many envelopes were numbered (accepted) so far.
    pub(crate) fn numbered(&self) -> u64 {
        self.lock().next_seq
    }

    /// Whether [`close`](Self::close) was called.
    pub(crate) fn is_closed(&self) -> bool {
        !self.lock().open
    }
}
