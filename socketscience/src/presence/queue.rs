//! The queue of presence and repair traffic (`Queue`): what the receive
//! path and the presence task add (heartbeats due, repair requests,
//! unrepairable ranges, ranges to serve) and the transport takes to post.

use std::sync::atomic::Ordering;

use super::Presence;
use crate::wire::WireRange;

/// Presence and repair traffic waiting for the transport.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    /// A heartbeat is due (the node posted nothing for a while).
    pub(crate) heartbeat: bool,
    /// Ranges this node asks others for.
    pub(crate) requests: Vec<WireRange>,
    /// Ranges this node says cannot be repaired.
    pub(crate) unrepairable: Vec<WireRange>,
    /// Ranges of this node's own envelopes to post again.
    pub(crate) serve: Vec<(u64, u64)>,
}

impl Queue {
    fn is_empty(&self) -> bool {
        !self.heartbeat
            && self.requests.is_empty()
            && self.unrepairable.is_empty()
            && self.serve.is_empty()
    }
}

impl Presence {
    /// Adds to the queue; returns whether it holds something (then wake
    /// the transport: see `Bus::push_control`).
    pub(crate) fn push(&self, add: impl FnOnce(&mut Queue)) -> bool {
        let mut queue = crate::sync::lock(&self.queue);
        add(&mut queue);
        if queue.is_empty() {
            return false;
        }
        self.pending.store(true, Ordering::SeqCst);
        true
    }

    /// Whether the queue holds something (cheap: one relaxed load).
    #[inline]
    pub(crate) fn is_pending(&self) -> bool {
        self.pending.load(Ordering::Relaxed)
    }

    /// Takes what the queue holds.
    pub(crate) fn take(&self) -> Queue {
        let mut queue = crate::sync::lock(&self.queue);
        self.pending.store(false, Ordering::SeqCst);
        std::mem::take(&mut *queue)
    }
}
