//! The peer events: each change in the peer list ([`PeerEvent`],
//! [`PeerChange`]), given to each receiver ([`PeerEvents`]) once, in the
//! order the node noticed them.

use tokio::sync::broadcast;

use super::{Peer, Presence};

/// How many peer events a [`PeerEvents`] receiver may fall behind before
/// it skips the oldest (and logs how many).
const EVENTS_CAPACITY: usize = 1024;

/// A change in the peer list, from [`Node::peer_events`](crate::Node::peer_events),
/// each once, in the order the node noticed them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerEvent {
    /// An instance was heard that was not listed (or only with another
    /// session: a restarted instance is a [`Left`](PeerEvent::Left) of its
    /// old session, then a `Joined` of its new one). What its first post
    /// said (meta, kinds, role) is in the peer already.
    Joined(Peer),
    /// An instance was not heard within the peer timeout, or restarted
    /// (the peer is as last heard, with its old session).
    Left(Peer),
    /// A listed instance said something new about itself.
    Changed {
        /// The peer as it is now.
        peer: Peer,
        /// What changed.
        change: PeerChange,
    },
}

impl PeerEvent {
    /// The peer the event is about.
    pub fn peer(&self) -> &Peer {
        match self {
            PeerEvent::Joined(p) | PeerEvent::Left(p) | PeerEvent::Changed { peer: p, .. } => p,
        }
    }
}

/// What changed in a [`PeerEvent::Changed`]: one event per change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum PeerChange {
    /// Its role in the election ([`Peer::role`]).
    Role,
    /// Its meta ([`Peer::meta`]).
    Meta,
    /// The kinds it handles ([`Peer::kinds`]), or handles shared
    /// ([`Peer::shared_kinds`]).
    Kinds,
}

/// The peer events of a node, from [`Node::peer_events`](crate::Node::peer_events):
/// `recv().await` gives each, `None` once the node is gone. A receiver that
/// falls more than 1 024 events behind skips the oldest (logged at WARN).
#[derive(Debug)]
pub struct PeerEvents {
    rx: broadcast::Receiver<PeerEvent>,
}

impl PeerEvents {
    /// The next event; `None` once the node is dropped.
    pub async fn recv(&mut self) -> Option<PeerEvent> {
        loop {
            match self.rx.recv().await {
                Ok(event) => return Some(event),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(skipped = n, "peer events not read in time were skipped");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<PeerEvent> {
        loop {
            match self.rx.try_recv() {
                Ok(event) => return Some(event),
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    tracing::warn!(skipped = n, "peer events not read in time were skipped");
                }
                Err(_) => return None,
            }
        }
    }
}

impl Presence {
    /// A receiver of the peer events.
    pub(crate) fn events(&self) -> PeerEvents {
        PeerEvents {
            rx: self
                .events
                .get_or_init(|| broadcast::Sender::new(EVENTS_CAPACITY))
                .subscribe(),
        }
    }

    pub(super) fn emit(&self, events: Vec<PeerEvent>) {
        let Some(sender) = self.events.get() else {
            return;
        };
        for event in events {
            // No receiver: nobody listens, nothing to do.
            let _ = sender.send(event);
        }
    }
}
