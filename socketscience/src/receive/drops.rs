//! The drop log: what the receive path drops from the room, counted by
//! reason and summarised in the log at most once per interval.

use std::time::{Duration, Instant};

use tracing::{trace, warn};

use super::{Deliver, Receiver};
use crate::core::ChatMessage;
use crate::core::Core;
use crate::security::Counted;
use crate::stats::{Counters, Stats};
use crate::wire::{self, ChatText};

/// How often drops are summarised in the log, at most.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Counts drops and summarises them in the log at most once per interval,
/// so that a flood does not flood the log.
pub(super) struct DropLog {
    last: Instant,
    at_last: Stats,
}

impl DropLog {
    pub(super) fn new() -> DropLog {
        DropLog {
            last: Instant::now(),
            at_last: Stats::default(),
        }
    }

    /// Summarises the drops since the last summary, if the interval passed.
    pub(super) fn note(&mut self, core: &Core) {
        let now = Instant::now();
        if now.duration_since(self.last) < LOG_INTERVAL {
            return;
        }
        let stats = core.counters.snapshot();
        let before = self.at_last;
        // One list of drop counters (stats.rs), the one `Stats::rejected`
        // sums: the two cannot disagree.
        let summary: Vec<String> = Stats::DROPS
            .iter()
            .map(|(what, _, count)| (what, count(&stats) - count(&before)))
            .filter(|(_, n)| *n > 0)
            .map(|(what, n)| format!("{what}={n}"))
            .collect();
        if !summary.is_empty() {
            warn!(
                node = %core.name,
                since_secs = now.duration_since(self.last).as_secs(),
                "dropped from the room: {}",
                summary.join(" ")
            );
        }
        self.last = now;
        self.at_last = stats;
    }

    /// Summarises the drops since the last summary now (the receive path
    /// ends).
    pub(super) fn flush(&mut self, core: &Core) {
        self.last = Instant::now() - LOG_INTERVAL;
        self.note(core);
    }
}

/// Why a message from the room was refused.
#[derive(Debug, Clone, Copy)]
pub(super) enum Refusal {
    Malformed,
    TooLarge,
    Unsigned,
    BadSignature,
    Stale,
    Duplicate,
    Compressed,
}

impl<D: Deliver> Receiver<D> {
    /// Counts a message from an account not trusted; a framed one also
    /// per account, and the first of each account is logged at WARN with
    /// the `.trust(..)` that would admit it.
    #[cold]
    #[inline(never)]
    pub(super) fn untrusted(&mut self, message: &ChatMessage) {
        let account = &*message.account;
        Counters::add_owned(&self.core.counters.untrusted, 1);
        trace!(node = %self.core.name, account, "ignored a message from an untrusted account");
        let text = wire::clean(&message.text);
        let body = match wire::parse_chat_text(&text) {
            Ok(ChatText::Frame { body }) => Some(body),
            Ok(ChatText::Chunk(_)) => None,
            _ => return self.drops.note(&self.core),
        };
        match self.core.untrusted.count(account) {
            Counted::Again => {}
            Counted::Unlisted => Counters::add_owned(&self.core.counters.untrusted_unlisted, 1),
            Counted::First => self.first_untrusted(account, body),
        }
        self.drops.note(&self.core);
    }

    /// The first envelope of an untrusted account: says who it claims to
    /// be and how to admit it.
    fn first_untrusted(&mut self, account: &str, body_b64: Option<&str>) {
        let core = &self.core;
        let mut bytes = Vec::new();
        let mut instance = None;
        let mut election = false;
        if let Some(b64) = body_b64.filter(|b| b.len() / 4 * 3 <= core.max_envelope_bytes) {
            if wire::decode_base64(b64, &mut bytes).is_ok() {
                if let Ok(body) = wire::parse_body(&bytes, self.checks.body_limits) {
                    instance = body.meta.from.map(|f| f.into_owned());
                    election = body.meta.control.is_some_and(|c| c.election.is_some());
                }
            }
        }
        if let Some(instance) = &instance {
            core.untrusted.claimed(account, instance);
        }
        let own = &*core.account;
        let suggestion = self.checks.trust.suggest(own, account);
        let claims = instance.as_deref().unwrap_or("unknown");
        warn!(
            node = %core.name,
            account,
            instance = claims,
            "ignored an envelope from chat account `{account}` (instance `{claims}`), which this \
             node does not trust (it trusts {}); if it is one of this fleet's instances, add \
             `{suggestion}` to every node's builder (until then the fleet is split: each part \
             hears only itself); `node.untrusted_accounts()` lists the accounts ignored",
            self.checks.trust.describe(own)
        );
        if election && core.election.as_ref().is_some_and(|e| e.peer_count() == 0) {
            warn!(
                node = %core.name,
                account,
                "this node takes part in failover, and the only election traffic it hears is \
                 from untrusted accounts (`{account}`): it will elect itself alone while other \
                 instances elect among themselves; add `{suggestion}` to every node's builder"
            );
        }
    }

    /// Counts a refusal, traces it, and now and then summarises drops in the log.
    /// (Out of line, as the other failure paths: the receive path's own code
    /// stays small enough to sit in the instruction cache.)
    #[cold]
    #[inline(never)]
    pub(super) fn refuse(&mut self, why: Refusal, account: &str, detail: &dyn std::fmt::Display) {
        let c = &self.core.counters;
        let counter = match why {
            Refusal::Malformed => &c.malformed,
            Refusal::TooLarge => &c.too_large,
            Refusal::Unsigned => &c.unsigned,
            Refusal::BadSignature => &c.bad_signature,
            Refusal::Stale => &c.stale,
            Refusal::Duplicate if self.core.keys.is_empty() => &c.duplicates,
            Refusal::Duplicate => &c.replayed,
            Refusal::Compressed => &c.compressed_refused,
        };
        Counters::add_owned(counter, 1);
        trace!(node = %self.core.name, account, reason = ?why, %detail, "dropped a message from the room");
        self.drops.note(&self.core);
    }
}

/// Counts a chat message that is not a frame (people talking).
#[cold]
#[inline(never)]
pub(super) fn not_a_frame(core: &Core, account: &str) {
    Counters::add_owned(&core.counters.not_frames, 1);
    trace!(node = %core.name, account, "not a frame");
}
