//! Shared handlers, the node's side: which instance runs a job (the rule
//! is `crate::shared`), the jobs this node holds for takeover until their
//! instance confirms them, and the takeovers. Only messages of a kind with
//! shared handlers come here (the dispatcher's one check: the handler's
//! mode).

use std::collections::VecDeque;

use serde_json::value::RawValue;
use tokio::time::Instant;
use tracing::{info, warn};

use super::{Context, Sender};
use crate::core::Core;
use crate::shared::{choose, job_id, job_id_of_value, peer_candidates, Candidate};
use crate::stats::Counters;
use crate::wire::RawValueRef;

/// What the dispatcher does with a shared job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Run its shared handlers here (`true`: it may run elsewhere too).
    Run(bool),
    /// Another instance runs it (held here for takeover, if it can be).
    Elsewhere,
}

/// A job's value, owned while it is held.
enum Value {
    Json(Box<RawValue>),
    MessagePack(Vec<u8>),
}

impl Value {
    fn of(raw: RawValueRef<'_>) -> Value {
        match raw {
            RawValueRef::Json(raw) => Value::Json(raw.to_owned()),
            RawValueRef::MessagePack(bytes) => Value::MessagePack(bytes.to_vec()),
        }
    }

    fn as_ref(&self) -> RawValueRef<'_> {
        match self {
            Value::Json(raw) => RawValueRef::Json(raw),
            Value::MessagePack(bytes) => RawValueRef::MessagePack(bytes),
        }
    }
}

/// A job held until the instance chosen to run it confirms it.
struct Held {
    kind: &'static str,
    job: u64,
    /// Its sender session and envelope (the body's first) sequence number.
    session: u64,
    seq: u64,
    value: Value,
    sender: Sender,
    /// The candidates when it arrived, besides this node: a takeover
    /// chooses among those still live (a peer that came later never saw
    /// it).
    candidates: Vec<Candidate>,
    /// Whether this node was a candidate when it arrived (if not, the
    /// others chose among themselves).
    was_candidate: bool,
    /// The instance that runs it; `None`: none was live.
    chosen: Option<Candidate>,
    since: Instant,
}

/// The jobs this node holds, and what its peers confirmed.
#[derive(Default)]
pub(crate) struct Jobs {
    held: VecDeque<Held>,
    /// Each peer session's latest confirmations: sender session to end.
    confirmed: Vec<(Candidate, Vec<(u64, u64)>)>,
}

impl Jobs {
    /// Whether `who` said it dealt with `session`'s jobs through `seq`.
    fn is_confirmed(&self, who: &Candidate, session: u64, seq: u64) -> bool {
        self.confirmed
            .iter()
            .find(|(c, _)| c == who)
            .and_then(|(_, ends)| ends.iter().find(|(s, _)| *s == session))
            .is_some_and(|(_, end)| *end > seq)
    }

    /// A peer's `_sc`: drops the jobs it was chosen for that it confirms.
    pub(crate) fn confirmed(&mut self, who: Candidate, list: &[(u64, u64)]) {
        let at = match self.confirmed.iter().position(|(c, _)| *c == who) {
            Some(at) => at,
            None => {
                self.confirmed.push((who.clone(), Vec::new()));
                self.confirmed.len() - 1
            }
        };
        let ends = &mut self.confirmed[at].1;
        for &(session, end) in list {
            match ends.iter_mut().find(|(s, _)| *s == session) {
                Some(e) => e.1 = e.1.max(end),
                None => {
                    if ends.len() >= 4 * crate::shared::MAX_CONFIRMED {
                        ends.drain(..crate::shared::MAX_CONFIRMED);
                    }
                    ends.push((session, end));
                }
            }
        }
        let ends = &self.confirmed[at].1;
        self.held.retain(|h| {
            h.chosen.as_ref() != Some(&who)
                || !ends.iter().any(|&(s, end)| s == h.session && end > h.seq)
        });
    }
}

/// Where a job comes from: its sender, session and place.
pub(crate) struct Origin<'a> {
    pub(crate) cx: &'a Context,
    pub(crate) session: Option<u64>,
    pub(crate) seq: Option<u64>,
    pub(crate) at: usize,
}

/// Decides who runs a shared job of `kind`; holds it when another
/// instance does.
pub(crate) fn decide(
    core: &Core,
    jobs: &mut Jobs,
    kind: &'static str,
    raw: RawValueRef<'_>,
    origin: Origin<'_>,
) -> Decision {
    let presence = &core.presence;
    let options = presence.options;
    let own = core.shared.candidate(options.heartbeat);
    let peers = presence.with_peers(|p| peer_candidates(p, kind, presence.peer_timeout()));
    let holdable = origin.session.zip(origin.seq);
    let job = match holdable {
        Some((session, seq)) => job_id(session, seq, origin.at),
        None => job_id_of_value(origin.cx.sender().account(), raw_bytes(raw)),
    };
    let chosen = choose(job, own.map(|_| &*core.name), &peers);
    if let (Some(None), Some(takeover)) = (chosen, own) {
        return Decision::Run(takeover);
    }
    let Some((session, seq)) = holdable else {
        // A Python instance's envelope: no identity to confirm.
        return Decision::Elsewhere;
    };
    let chosen = chosen.flatten().cloned();
    if let Some(c) = &chosen {
        if jobs.is_confirmed(c, session, seq) {
            return Decision::Elsewhere;
        }
    }
    let max = core.shared.options.max_held;
    if jobs.held.len() >= max {
        if let Some(old) = jobs.held.pop_front() {
            dropped(core, &[old], "more jobs held than the bound");
        }
    }
    if max > 0 {
        jobs.held.push_back(Held {
            kind,
            job,
            session,
            seq,
            value: Value::of(raw),
            sender: origin.cx.sender().clone(),
            candidates: peers,
            was_candidate: own.is_some(),
            chosen,
            since: Instant::now(),
        });
    }
    Decision::Elsewhere
}

fn raw_bytes(raw: RawValueRef<'_>) -> &[u8] {
    match raw {
        RawValueRef::Json(raw) => raw.get().as_bytes(),
        RawValueRef::MessagePack(bytes) => bytes,
    }
}

/// A takeover to run: the job's kind, value and context.
pub(crate) struct Takeover {
    pub(crate) kind: &'static str,
    value: Value,
    pub(crate) cx: Context,
}

impl Takeover {
    pub(crate) fn value(&self) -> RawValueRef<'_> {
        self.value.as_ref()
    }
}

/// At the dispatcher's tick: drops what is past the age bound, and takes
/// out the jobs whose chosen instance is gone without confirming them and
/// that fall to this node now (the rest go to their next choice).
pub(crate) fn tick(core: &Core, node: &super::Node, jobs: &mut Jobs) -> Vec<Takeover> {
    let presence = &core.presence;
    let options = presence.options;
    let timeout = presence.peer_timeout();
    let max_age = core.shared.options.max_age.unwrap_or(timeout * 4);
    let now = Instant::now();
    let mut old = Vec::new();
    while jobs
        .held
        .front()
        .is_some_and(|h| now.saturating_duration_since(h.since) > max_age)
    {
        old.extend(jobs.held.pop_front());
    }
    if !old.is_empty() {
        dropped(core, &old, "held longer than the bound");
    }
    // Live peers and what each shares, looked at once.
    let live: Vec<(Candidate, Vec<String>)> = presence.with_peers(|peers| {
        peers
            .iter()
            .filter(|p| now.saturating_duration_since(p.last_heard()) <= timeout)
            .map(|p| ((p.instance_arc(), p.session()), p.shared_kinds().to_vec()))
            .collect()
    });
    jobs.confirmed
        .retain(|(c, _)| live.iter().any(|(l, _)| l == c));
    let is_live = |c: &Candidate, kind: &str| {
        live.iter()
            .any(|(l, kinds)| l == c && kinds.iter().any(|k| k == kind))
    };
    let own = core.shared.candidate(options.heartbeat);
    let mut takeovers = Vec::new();
    let mut kept = VecDeque::with_capacity(jobs.held.len());
    for mut h in std::mem::take(&mut jobs.held) {
        if h.chosen.as_ref().is_some_and(|c| is_live(c, h.kind)) {
            kept.push_back(h);
            continue;
        }
        // Among those that saw it and still share the kind; when none was
        // known as it arrived (this node was just starting), among those
        // that share it now.
        let candidates: Vec<Candidate> = if h.candidates.is_empty() {
            live.iter()
                .filter(|(_, kinds)| kinds.iter().any(|k| k == h.kind))
                .map(|(c, _)| c.clone())
                .collect()
        } else {
            h.candidates
                .iter()
                .filter(|c| is_live(c, h.kind))
                .cloned()
                .collect()
        };
        // This node, if the others counted it, or if nobody else is left.
        let own_name = own
            .filter(|_| h.was_candidate || candidates.is_empty())
            .map(|_| &*core.name);
        match choose(h.job, own_name, &candidates) {
            Some(None) => takeovers.push(Takeover {
                kind: h.kind,
                cx: Context::new(node.clone(), h.sender).taking_over(),
                value: h.value,
            }),
            next => {
                let next = next.flatten().cloned();
                // Its next choice already dealt with it (it held the job too).
                let done = next
                    .as_ref()
                    .is_some_and(|c| jobs.is_confirmed(c, h.session, h.seq));
                if !done {
                    h.chosen = next;
                    kept.push_back(h);
                }
            }
        }
    }
    jobs.held = kept;
    if !takeovers.is_empty() {
        info!(node = %core.name, jobs = takeovers.len(), "taking over shared jobs of an instance gone before it confirmed them");
    }
    takeovers
}

/// Counts and logs jobs that fell out of the bound.
#[cold]
fn dropped(core: &Core, jobs: &[Held], why: &str) {
    Counters::add_owned(&core.counters.shared_dropped, jobs.len() as u64);
    let first = &jobs[0];
    warn!(
        node = %core.name,
        jobs = jobs.len(),
        kind = first.kind,
        sender = first.sender.instance().unwrap_or(first.sender.account()),
        seq = first.seq,
        chosen = first.chosen.as_ref().map(|c| &*c.0).unwrap_or("none"),
        why,
        "shared jobs held for takeover dropped unconfirmed: if their instance did not run them, nobody did"
    );
}
