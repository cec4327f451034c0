//! [`IrcStatus`]: what the connection is doing, shared between the
//! driver and whoever holds a handle.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::proto::irc_lower;

/// What an [`IrcChat`](super::IrcChat) is doing, for health checks, logs and tests. Cheap
/// to clone; every clone sees the same connection.
#[derive(Clone, Default)]
pub struct IrcStatus {
    inner: Arc<Mutex<StatusInner>>,
}

#[derive(Debug, Default)]
pub(super) struct StatusInner {
    pub(super) nick: Option<String>,
    pub(super) account: Option<String>,
    pub(super) joined: bool,
    /// Other members of the channel, by lowercased nick.
    pub(super) members: BTreeMap<String, String>,
    pub(super) connections: u64,
    pub(super) posted: u64,
    pub(super) resent: u64,
    pub(super) flood_slowdowns: u64,
    pub(super) last_disconnect: Option<String>,
}

impl fmt::Debug for IrcStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.lock().fmt(f)
    }
}

impl IrcStatus {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, StatusInner> {
        crate::sync::lock(&self.inner)
    }

    /// Whether the transport is in the channel and may post.
    pub fn is_joined(&self) -> bool {
        self.lock().joined
    }

    /// The nick the server knows us by, once registered (the configured one,
    /// or it with `_` appended if that was taken).
    pub fn nick(&self) -> Option<String> {
        self.lock().nick.clone()
    }

    /// The services account the server logged us into with SASL, as the
    /// server spells it (what other nodes' trust patterns must match).
    pub fn account(&self) -> Option<String> {
        self.lock().account.clone()
    }

    /// The other members of the channel, as last seen.
    pub fn members(&self) -> Vec<String> {
        self.lock().members.values().cloned().collect()
    }

    /// Whether we are in the channel and every nick of `nicks` is too
    /// (compared as IRC does, ignoring case).
    pub fn has_members<S: AsRef<str>>(&self, nicks: &[S]) -> bool {
        let inner = self.lock();
        inner.joined
            && nicks
                .iter()
                .all(|n| inner.members.contains_key(&irc_lower(n.as_ref())))
    }

    /// Waits until [`has_members(nicks)`](IrcStatus::has_members), for at
    /// most `wait`. Returns whether they are all there.
    pub async fn wait_for_members<S: AsRef<str>>(&self, nicks: &[S], wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        loop {
            if self.has_members(nicks) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// How many times the transport registered with the server (1 while
    /// it never lost its connection).
    pub fn connections(&self) -> u64 {
        self.lock().connections
    }

    /// Lines posted, first posts and resends together.
    pub fn lines_posted(&self) -> u64 {
        self.lock().posted
    }

    /// Lines posted again after a disconnect or a kick, because their
    /// delivery could not be known.
    pub fn lines_resent(&self) -> u64 {
        self.lock().resent
    }

    /// How many times the server complained of flooding and the send rate
    /// was halved.
    pub fn flood_slowdowns(&self) -> u64 {
        self.lock().flood_slowdowns
    }

    /// Why the last connection ended, if one did.
    pub fn last_disconnect(&self) -> Option<String> {
        self.lock().last_disconnect.clone()
    }
}
