//! What a node could not use of what it was sent, per kind and sender
//! ([`Node::mismatches`](crate::Node::mismatches)): values that do not fit
//! their message type and kinds no handler takes, as during a rolling
//! upgrade ([`guide::coordination`](crate::guide::coordination)). Each
//! pair is logged once; the list is bounded, since senders and kinds come
//! from the room.

use std::sync::Mutex;

use tracing::{debug, info, warn};

use super::Sender;

/// The most (kind, sender) pairs a node lists; past it, mismatches are
/// counted only in the totals ([`Stats::bad_values`](crate::Stats::bad_values),
/// [`Stats::unknown_kinds`](crate::Stats::unknown_kinds)).
pub const MAX_MISMATCHES: usize = 1_024;

/// One kind from one sender that this node could not use, from
/// [`Node::mismatches`](crate::Node::mismatches).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Mismatch {
    /// The message kind.
    pub kind: String,
    /// The sender's instance (`_from`), or its chat account when it named
    /// none (a Python instance).
    pub sender: String,
    /// Values of the kind that did not fit this node's message type (a
    /// field whose type changed, a field added without a default).
    pub bad_values: u64,
    /// Envelopes with the kind that no handler here takes (a kind this
    /// build does not know).
    pub unknown: u64,
    /// Why the latest bad value did not fit (serde's error).
    pub last_error: Option<String>,
}

/// What was wrong with one value.
pub(crate) enum What<'a> {
    Unknown,
    Bad(&'a str),
}

/// A node's list of mismatches (filled by its dispatcher).
#[derive(Debug, Default)]
pub(crate) struct Mismatches(Mutex<Vec<Mismatch>>);

impl Mismatches {
    /// Notes a mismatch of `kind` from `sender` at node `node`: logged when
    /// the pair is first seen (a bad value at WARN, an unknown kind at
    /// INFO), at DEBUG after.
    pub(crate) fn note(&self, node: &str, kind: &str, sender: &Sender, what: What<'_>) {
        let from = sender.instance().unwrap_or(sender.account());
        let mut list = crate::sync::lock(&self.0);
        let entry = match list
            .iter_mut()
            .position(|m| m.kind == kind && m.sender == from)
        {
            Some(i) => {
                if let What::Bad(e) = what {
                    debug!(node, kind, from, error = %e, "a value does not fit its message type");
                }
                &mut list[i]
            }
            None if list.len() < MAX_MISMATCHES => {
                match what {
                    What::Bad(e) => warn!(
                        node, kind, from, error = %e,
                        "a value does not fit its message type (logged once per kind and sender; \
                         Node::mismatches counts them)"
                    ),
                    What::Unknown => info!(
                        node,
                        kind,
                        from,
                        "no handler here takes this kind (logged once per kind and sender; \
                         Node::mismatches counts them)"
                    ),
                }
                list.push(Mismatch {
                    kind: kind.to_owned(),
                    sender: from.to_owned(),
                    bad_values: 0,
                    unknown: 0,
                    last_error: None,
                });
                list.last_mut().expect("just pushed")
            }
            None => {
                debug!(node, kind, from, "a mismatch past the listed ones");
                return;
            }
        };
        match what {
            What::Bad(e) => {
                entry.bad_values += 1;
                entry.last_error = Some(e.to_owned());
            }
            What::Unknown => entry.unknown += 1,
        }
    }

    /// The list, by kind, then sender.
    pub(crate) fn list(&self) -> Vec<Mismatch> {
        let mut list = crate::sync::lock(&self.0).clone();
        list.sort_by(|a, b| a.kind.cmp(&b.kind).then(a.sender.cmp(&b.sender)));
        list
    }
}
