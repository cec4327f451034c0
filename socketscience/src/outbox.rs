//! The node's outgoing envelopes: numbered and queued under one lock for
//! its transport (to post) and its dispatcher (to run its own handlers), so
//! that sequence numbers follow queue order; each side takes what is
//! waiting under that same lock.
//!
//! One mutex and two `VecDeque`s in place of two bounded channels: a send
//! is one uncontended lock and, while the transport and the dispatcher are
//! busy, no wake-up; they take envelopes in batches.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;

use crate::envelope::{BodyWriter, Encoded};
use crate::stats::{Counter, Counters};

/// Why an envelope was not queued.
pub(crate) enum Refused {
    /// A queue is at its capacity: the envelope and its own body, to try
    /// again with.
    Full(BodyWriter, Vec<u8>),
    /// The node is shutting down.
    Closed,
}

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
            }),
            capacity,
            room: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Numbers the envelope and queues it for both sides, if both have
    /// room, counting it in `sent`. `own` is its body for this node's
    /// handlers.
    pub(crate) fn try_push(
        &self,
        writer: BodyWriter,
        own: Vec<u8>,
        sent: &Counter,
    ) -> Result<(), Refused> {
        let mut state = self.lock();
        if !state.open {
            return Err(Refused::Closed);
        }
        if state.posts.len() >= self.capacity || state.own.len() >= self.capacity {
            return Err(Refused::Full(writer, own));
        }
        let seq = state.next_seq;
        state.next_seq += 1;
        state.posts.push_back(writer.finish(seq));
        state.own.push_back(own);
        // Every writer of `sent` holds the lock.
        Counters::add_owned(sent, 1);
        let wake = [state.transport.take(), state.dispatcher.take()];
        drop(state);
        wake.into_iter().flatten().for_each(Waker::wake);
        Ok(())
    }

    /// [`try_push`](Self::try_push), waiting while a queue is full.
    pub(crate) async fn push(
        &self,
        mut writer: BodyWriter,
        mut own: Vec<u8>,
        sent: &Counter,
    ) -> Result<(), Refused> {
        loop {
            // Registered before looking, so that room made in between wakes it.
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.try_push(writer, own, sent) {
                Err(Refused::Full(w, o)) => (writer, own) = (w, o),
                done => return done,
            }
            room.await;
        }
    }

    /// Takes the next envelope to post into `group` (empty), with those
    /// behind it that `fits` accepts, in order. `fits` sees each envelope
    /// with the group so far, the first too (which is taken whatever it
    /// says). `Ready(false)` once the outbox is closed and empty.
    pub(crate) fn poll_posts(
        &self,
        cx: &Context<'_>,
        group: &mut Vec<Encoded>,
        mut fits: impl FnMut(&[Encoded], &Encoded) -> bool,
    ) -> Poll<bool> {
        let mut state = self.lock();
        let was_full = state.posts.len() >= self.capacity;
        let Some(first) = state.posts.pop_front() else {
            if !state.open {
                return Poll::Ready(false);
            }
            register(&mut state.transport, cx);
            return Poll::Pending;
        };
        fits(group, &first);
        group.push(first);
        while let Some(next) = state.posts.front() {
            if !fits(group, next) {
                break;
            }
            group.extend(state.posts.pop_front());
        }
        drop(state);
        if was_full {
            self.room.notify_waiters();
        }
        Poll::Ready(true)
    }

    /// Moves up to `most` of this node's own bodies into `into`.
    /// `Ready(false)` once the outbox is closed and empty.
    pub(crate) fn poll_own(
        &self,
        cx: &Context<'_>,
        into: &mut VecDeque<Vec<u8>>,
        most: usize,
    ) -> Poll<bool> {
        let mut state = self.lock();
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
    pub(crate) fn discard_own(&self) {
        self.lock().own.clear();
    }

    /// Refuses further envelopes; what is queued is still taken.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.open = false;
        let wake = [state.transport.take(), state.dispatcher.take()];
        drop(state);
        wake.into_iter().flatten().for_each(Waker::wake);
        self.room.notify_waiters();
    }

    /// Whether [`close`](Self::close) was called.
    pub(crate) fn is_closed(&self) -> bool {
        !self.lock().open
    }
}
