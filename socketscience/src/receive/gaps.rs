//! The receive side of gap repair: holding envelopes that come early,
//! releasing them in order, presence and repair traffic (heartbeats,
//! requests, unrepairable ranges, envelopes posted again), the repair
//! timers, and what is given up. The dispatcher's rare paths: the usual
//! one stays in `mod.rs`.

use super::senders::{
    followed, sender_state, silent_for_long, Followed, NewSession, RETIRED_PER_SENDER,
    SESSIONS_PER_SENDER,
};
use super::*;

impl<D: Deliver> Receiver<D> {
    /// A session of `from` heard for the first time, first at `seq`, from
    /// `account`. A node is owed everything a session posts after the node
    /// started: a session that replaces one of the same account heard before
    /// (a restart) is followed from its first envelope; one already running
    /// when this node started from the first heard. What the replaced
    /// sessions still miss can no longer be repaired. A session forgotten
    /// to make room is not followed again (what it posts was seen), and a
    /// new session never replaces or pushes out a live session of another
    /// account: only the owner (the instance on the account it posts from)
    /// restarts.
    #[cold]
    #[inline(never)]
    pub(super) fn new_session(
        &mut self,
        from: &str,
        session: u64,
        seq: u64,
        account: &Arc<str>,
    ) -> NewSession {
        let now = tokio::time::Instant::now();
        let window = self.core.presence.options.repair_window;
        let state = sender_state(&mut self.senders, from, self.heard);
        if state.retired.contains(&session) {
            return NewSession::Retired;
        }
        let restarted = state.sessions.iter().any(|t| t.owned_by(account));
        let others_live = !silent_for_long(&self.core.presence, state.published)
            && state.sessions.iter().any(|t| !t.owned_by(account));
        // Room is made by forgetting a session of this account only.
        if others_live && !restarted && state.sessions.len() >= SESSIONS_PER_SENDER {
            self.not_owner(account, from, session);
            return NewSession::NotOwner;
        }
        let mut lost = Vec::new();
        let mut probed = false;
        for old in state.sessions.iter_mut().filter(|t| t.owned_by(account)) {
            let (next, end) = (old.next, old.end);
            let n = old.give_up_all();
            if n > 0 {
                lost.push((old.session, next, end, n));
                self.to_release.push((state.instance.clone(), old.session));
            }
            if !probed {
                probed = true;
                self.probes.push(Probe {
                    instance: state.instance.clone(),
                    session: old.session,
                    first: old.end,
                    ask_at: now + jitter(&mut self.rng, window),
                });
            }
        }
        state.sessions.insert(
            0,
            Track::new(session, if restarted { 0 } else { seq }, account.clone()),
        );
        if state.sessions.len() > SESSIONS_PER_SENDER {
            // The least recently heard session of this account goes (there
            // is one: see above), or else the least recently heard.
            let i = state
                .sessions
                .iter()
                .rposition(|t| t.owned_by(account))
                .filter(|&i| i > 0)
                .unwrap_or(state.sessions.len() - 1);
            let gone = state.sessions.remove(i);
            if state.retired.len() >= RETIRED_PER_SENDER {
                state.retired.remove(0);
            }
            state.retired.push(gone.session);
        }
        state.published = u64::MAX;
        let instance = state.instance.clone();
        for (old, first, end, n) in lost {
            self.lose(&instance, old, first, end, n, "the sender restarted");
        }
        NewSession::Followed
    }

    /// The rest of [`read_frame`](Self::read_frame) when there is more to do than
    /// dispatching: releasing held envelopes, holding this one, presence
    /// and repair traffic. Out of line (and boxed): the usual path's future
    /// stays small.
    #[cold]
    #[inline(never)]
    pub(super) async fn read_frame_slow(
        &mut self,
        accepted: Accept,
        meta: &Meta<'_>,
        messages: &Messages<'_>,
        account: &Arc<str>,
        body: &[u8],
    ) {
        let rejected = accepted == Accept::Reject;
        match accepted {
            Accept::Now { release, author } => {
                self.name_sender(account, meta, author);
                self.deliver
                    .room(messages, meta.count, meta.seq, meta.session, false)
                    .await;
                if release {
                    self.release_after(meta);
                }
            }
            Accept::Hold => self.hold(meta, account, body),
            Accept::Skip | Accept::Reject => {}
        }
        if !rejected {
            if let Some(control) = meta.control.as_deref() {
                self.control(meta, control, account, Codec::sniff(body))
                    .await;
            }
        }
        if !self.to_release.is_empty() {
            self.release_pending().await;
        }
    }

    /// Counts and logs envelopes given up.
    #[cold]
    #[inline(never)]
    fn lose(&self, instance: &str, session: u64, first: u64, end: u64, n: u64, why: &str) {
        Counters::add_owned(&self.core.counters.lost, n);
        warn!(
            node = %self.core.name,
            sender = instance,
            session = format_args!("{session:016x}"),
            range = format_args!("{first}..{end}"),
            lost = n,
            "envelopes lost: {why}"
        );
    }

    /// Holds a body that came before its turn.
    #[cold]
    #[inline(never)]
    fn hold(&mut self, meta: &Meta<'_>, account: &Arc<str>, body: &[u8]) {
        let (Some(from), Some(session), Some(seq)) = (meta.from.as_deref(), meta.session, meta.seq)
        else {
            return;
        };
        let end = seq.saturating_add(meta.count.unwrap_or(1));
        let body = HeldBody {
            account: account.clone(),
            bytes: body.to_vec(),
            repaired: false,
        };
        self.hold_body(from, session, seq, end, body);
    }

    fn hold_body(&mut self, from: &str, session: u64, seq: u64, end: u64, body: HeldBody) {
        let max_held = self.core.presence.options.max_held as u64;
        let Some(Followed {
            instance, track, ..
        }) = followed(&mut self.senders, from, session)
        else {
            return;
        };
        let instance = instance.clone();
        self.held_estimate += body.bytes.len();
        track.hold(seq, end, body);
        trace!(node = %self.core.name, from, seq, next = track.next, "holding an envelope that came early");
        if track.held_count > max_held || track.held_bytes > repair::MAX_HELD_BYTES {
            let (next, end) = (track.next, track.end);
            let n = track.give_up_all();
            self.to_release.push((instance.clone(), session));
            self.lose(&instance, session, next, end, n, "too many envelopes held");
        }
        if self.held_estimate > repair::MAX_HELD_BYTES_TOTAL {
            self.held_over_total();
        }
    }

    /// The bytes held may be over the bound for all sessions: counted
    /// exactly, and if so, the session holding the most gives up its gap
    /// (what it held is released, freeing it).
    #[cold]
    #[inline(never)]
    fn held_over_total(&mut self) {
        let mut total = 0;
        let mut most: Option<(usize, Arc<str>, u64)> = None;
        for state in self.senders.values() {
            for track in &state.sessions {
                total += track.held_bytes;
                if most.as_ref().is_none_or(|m| track.held_bytes > m.0) {
                    most = Some((track.held_bytes, state.instance.clone(), track.session));
                }
            }
        }
        self.held_estimate = total;
        if total <= repair::MAX_HELD_BYTES_TOTAL {
            return;
        }
        let Some((bytes, instance, session)) = most else {
            return;
        };
        let Some(Followed { track, .. }) = followed(&mut self.senders, &instance, session) else {
            return;
        };
        let (next, end) = (track.next, track.end);
        let n = track.give_up_all();
        self.held_estimate = total - bytes;
        self.to_release.push((instance.clone(), session));
        self.lose(
            &instance,
            session,
            next,
            end,
            n,
            "too many bytes held in total",
        );
    }

    /// After an envelope of the body `meta` ran: releases those held after it.
    fn release_after(&mut self, meta: &Meta<'_>) {
        if let (Some(from), Some(session)) = (meta.from.as_deref(), meta.session) {
            if let Some(state) = self.senders.get(from) {
                self.to_release.push((state.instance.clone(), session));
            }
        }
    }

    /// Dispatches the held envelopes now due, of every session listed.
    async fn release_pending(&mut self) {
        while let Some((from, session)) = self.to_release.pop() {
            self.release(&from, session).await;
        }
    }

    /// Dispatches the held envelopes of `from`'s `session` now due.
    async fn release(&mut self, from: &str, session: u64) {
        let limits = self.checks.body_limits;
        loop {
            let Some(Followed {
                instance, track, ..
            }) = followed(&mut self.senders, from, session)
            else {
                return;
            };
            let instance = instance.clone();
            let Some((first, held)) = track.pop_ready() else {
                return;
            };
            let Some(body) = held.body else { continue };
            let n = held.end - first;
            let mut messages = self.take_messages();
            match self.read(&body.bytes, limits, &mut messages) {
                Ok(_) => {
                    self.deliver
                        .set_sender(&body.account, Some(&instance), |_| instance.clone());
                    if body.repaired {
                        Counters::add_owned(&self.core.counters.repaired, n);
                    }
                    self.deliver
                        .room(
                            &messages,
                            (n > 1).then_some(n),
                            Some(first),
                            Some(session),
                            body.repaired,
                        )
                        .await;
                }
                Err(e) => self.refuse(Refusal::Malformed, &body.account, &e),
            }
            self.keep(messages);
        }
    }

    /// Presence and repair traffic: heartbeats, requests, ranges that
    /// cannot be repaired, envelopes posted again.
    async fn control(
        &mut self,
        meta: &Meta<'_>,
        control: &Control<'_>,
        account: &Arc<str>,
        codec: Codec,
    ) {
        let (Some(from), Some(session)) = (meta.from.as_deref(), meta.session) else {
            return;
        };
        let core = self.core.clone();
        let presence = &core.presence;
        let options = presence.options;
        let now = tokio::time::Instant::now();
        let ms = presence.coarse_ms();
        self.heard += 1;
        let heard = self.heard;
        // The sender's session, followed from its heartbeat's end if new.
        let state = sender_state(&mut self.senders, from, heard);
        if !state.sessions.iter().any(|t| t.session == session)
            && self
                .first_of_session(from, session, control.heartbeat.unwrap_or(0), account)
                .is_some()
        {
            return;
        }
        let state = sender_state(&mut self.senders, from, heard);
        let instance = state.instance.clone();
        let silent = silent_for_long(presence, state.published);
        let Some(track) = state.sessions.iter_mut().find(|t| t.session == session) else {
            return;
        };
        // Only the owner speaks for its session.
        if !track.owned_by(account) {
            self.not_owner(account, from, session);
            return;
        }
        // A signed post no newer than the last taken from this session is a
        // replay (`accept` lets through what is within the clock skew): it
        // says nothing of whether the sender lives, nor how far it got, and
        // what it asks or gives up is not acted on: dropped whole.
        if let (Some(ts), true) = (meta.timestamp, !core.keys.is_empty()) {
            if !track.fresh_presence(ts) {
                Counters::add_owned(&core.counters.replayed, 1);
                debug!(node = %core.name, from, session, "a replayed presence or repair post: dropped");
                return;
            }
        }
        if let Some(posted) = control.heartbeat {
            if !silent && !track.within_reach(posted) {
                self.absurd(account, from, posted);
                return;
            }
            track.learn_end(posted);
        }
        state.last_heard = heard;
        state.published = ms;
        // Failover: the sender's election state; then what it says of
        // itself. Both before the peer list hears of it, so that a
        // newcomer joins with them.
        let mut said = crate::presence::Said::default();
        // Only the account the peer list knows for the instance speaks for
        // it in the election too (another account's session under its name
        // could otherwise say it stepped down).
        let election = match control.election {
            Some(_) if !presence.speaks_for(&instance, account) => {
                self.not_owner(account, from, session);
                None
            }
            election => election,
        };
        if let Some(raw) = election {
            if core.election_heard(&instance, session, codec, raw) {
                self.absurd(account, from, 0);
            }
            if let Some((role, term)) = core
                .election
                .as_ref()
                .and_then(|e| e.role_of(&instance, session))
            {
                (said.role, said.term) = (Some(role), Some(term));
            }
        }
        if let Some(raw) = control.meta {
            said.meta = crate::presence::read_meta(codec, raw, &core.name, from);
        }
        if let Some(raw) = control.kinds {
            said.kinds = crate::presence::read_kinds(codec, raw, &core.name, from);
        }
        if let Some(raw) = control.shared {
            said.shared = crate::presence::read_kinds(codec, raw, &core.name, from);
        }
        // Shared handlers: what it confirms, before the peer list hears of
        // a change of what it shares (a peer that gives up its share
        // confirms what it dealt with in the same post).
        if let Some(raw) = control.confirmed {
            if let Some(list) = crate::shared::read_confirmations(codec, raw, &core.name, from) {
                self.deliver.confirmed(&instance, session, &list);
            }
        }
        let forgotten = presence.heard(&instance, account, session, ms, said);
        self.count(&core.counters.peers_dropped, forgotten);
        let mut serve = Vec::new();
        let mut unrepairable = Vec::new();
        let mut refused = 0;
        if let Some(raw) = control.requests {
            let quiet_until = now + options.repair_window;
            refused += self.requests(raw, codec, from, quiet_until, &mut serve, &mut unrepairable);
        }
        if let Some(raw) = control.unrepairable {
            refused += self.unrepairable(raw, codec, from, account);
        }
        if let Some(raw) = control.repairs {
            self.repairs(raw, codec, &instance, session, account).await;
        }
        if refused > 0 {
            Counters::add_owned(&core.counters.repairs_refused, refused);
            self.drops.note(&self.core);
        }
        for range in serve {
            if self.to_serve.len() < crate::repair::MAX_QUEUED && !self.to_serve.contains(&range) {
                self.to_serve.push(range);
            }
        }
        // Answered at the next tick, with the ranges to serve: requests
        // heard cannot make this node post more than once per tick.
        for range in unrepairable {
            if self.to_nak.len() < crate::repair::MAX_QUEUED && !self.to_nak.contains(&range) {
                self.to_nak.push(range);
            }
        }
    }

    /// A repair request heard from `from`: ranges of this node's envelopes
    /// to post again (into `serve`); ranges others asked for, which this
    /// node then does not ask for before `quiet_until`; and ranges a
    /// restarted sender cannot answer for, that this node heard further
    /// (into `unrepairable`). Gives how many requests were refused.
    fn requests(
        &mut self,
        raw: &[u8],
        codec: Codec,
        from: &str,
        quiet_until: tokio::time::Instant,
        serve: &mut Vec<(u64, u64)>,
        unrepairable: &mut Vec<wire::WireRange>,
    ) -> u64 {
        let Some(ranges) = self.ranges(raw, codec, from, "a repair request") else {
            return 1;
        };
        let mut refused = 0;
        // (Which ranges the post asks, to tell whether it asks what this
        // node misses.)
        let asked_ranges: Vec<(u64, u64, u64)> = ranges.iter().map(|r| (r.1, r.2, r.3)).collect();
        for (asked, asked_session, first, end) in ranges {
            if *asked == *self.core.name && asked_session == self.core.session {
                let posted = self
                    .core
                    .presence
                    .posted_end
                    .load(std::sync::atomic::Ordering::Relaxed);
                let end = if end == repair::TO_THE_END {
                    posted
                } else {
                    end
                };
                if first > end || end > posted || end - first > repair::MAX_ASK {
                    refused += 1;
                    warn!(node = %self.core.name, from, range = format_args!("{first}..{end}"), posted, "refused an absurd repair request");
                } else if first < end {
                    serve.push((first, end));
                }
                continue;
            }
            // Another receiver asked: this one waits for the repair, if
            // what it misses was asked for (another range does not bring
            // it).
            let Some(Followed {
                track, replaced, ..
            }) = self.heard_about(&asked, asked_session)
            else {
                continue;
            };
            let covered = |(a, b): (u64, u64)| {
                asked_ranges
                    .iter()
                    .any(|&(s, f, e)| s == asked_session && f <= a && b <= e.max(f))
            };
            if track.gap.is_some()
                && track
                    .missing(repair::RANGES_PER_ASK)
                    .into_iter()
                    .all(covered)
            {
                if let Some(gap) = &mut track.gap {
                    gap.ask_at = gap.ask_at.max(quiet_until);
                }
            }
            // A restarted sender cannot answer for its old session: who
            // heard further says how far.
            if end == repair::TO_THE_END && replaced && track.end > first {
                unrepairable.push((asked, asked_session, first, track.end));
            }
        }
        refused
    }

    /// Ranges `from` (posting from `account`) says cannot be repaired:
    /// given up here too (counted as lost, and what was held behind them
    /// released). Only the owner of a session says so, but of a session its
    /// owner replaced (it restarted and cannot answer for it), anyone who
    /// heard further. Gives how many were refused.
    fn unrepairable(&mut self, raw: &[u8], codec: Codec, from: &str, account: &Arc<str>) -> u64 {
        let Some(ranges) = self.ranges(raw, codec, from, "a list of unrepairable ranges") else {
            return 1;
        };
        let mut refused = 0;
        let mut not_owner = 0;
        for (gone, gone_session, first, end) in ranges {
            if first > end || end - first > repair::MAX_GIVE_UP {
                refused += 1;
                continue;
            }
            let Some(Followed {
                instance,
                track,
                replaced,
            }) = self.heard_about(&gone, gone_session)
            else {
                continue;
            };
            let owner = **instance == *from && track.owned_by(account);
            if !owner && !replaced {
                not_owner += 1;
                continue;
            }
            if !track.within_reach(end) {
                refused += 1;
                continue;
            }
            let gone_instance = instance.clone();
            let next = track.next;
            let n = track.give_up(first, end);
            if n > 0 {
                self.to_release.push((gone_instance.clone(), gone_session));
                self.lose(
                    &gone_instance,
                    gone_session,
                    first.max(next),
                    end,
                    n,
                    "it cannot be repaired",
                );
            }
        }
        if not_owner > 0 {
            Counters::add_owned(&self.core.counters.not_owner, not_owner);
            trace!(node = %self.core.name, from, account = &**account, "refused ranges given up by another than their owner");
        }
        refused
    }

    /// The ranges of a `_rq` or `_nak` list from `from` (`what` it is, for
    /// the log when it is refused).
    fn ranges(
        &self,
        raw: &[u8],
        codec: Codec,
        from: &str,
        what: &str,
    ) -> Option<Vec<wire::WireRange>> {
        match wire::read_ranges(codec, raw, repair::MAX_RANGES) {
            Ok(ranges) => Some(ranges),
            Err(e) => {
                trace!(node = %self.core.name, from, error = %e, "refused {what}");
                None
            }
        }
    }

    /// Another node spoke of `instance`'s `session` (asked for a range of
    /// it, or gave one up): this node no longer asks the room how far it
    /// went, and gives the session if it follows it.
    fn heard_about(&mut self, instance: &str, session: u64) -> Option<Followed<'_>> {
        self.probes
            .retain(|p| !(*p.instance == *instance && p.session == session));
        followed(&mut self.senders, instance, session)
    }

    /// Envelopes posted again by `instance`'s `session`: those missing run
    /// (or are held until their turn), the rest are dropped quietly.
    async fn repairs(
        &mut self,
        raw: &[u8],
        codec: Codec,
        instance: &Arc<str>,
        session: u64,
        account: &Arc<str>,
    ) {
        let core = self.core.clone();
        let limits = self.checks.body_limits;
        let window = core.presence.options.repair_window;
        let items = match wire::read_repairs(codec, raw, repair::MAX_REPAIRS, limits.max_depth) {
            Ok(items) => items,
            Err(e) => return self.refuse(Refusal::Malformed, account, &e),
        };
        let now = tokio::time::Instant::now();
        for (seq, item) in items {
            let Some(Followed { track, .. }) = followed(&mut self.senders, instance, session)
            else {
                // A session this node does not follow: not owed to it.
                return;
            };
            if let Some(gap) = &mut track.gap {
                gap.ask_at = gap.ask_at.max(now + window);
            }
            match track.admit(seq, 1) {
                Admit::InOrder => {
                    let mut messages = self.take_messages();
                    match self.read(item, limits, &mut messages) {
                        Ok(_) => {
                            self.deliver
                                .set_sender(account, Some(instance), |_| instance.clone());
                            Counters::add_owned(&core.counters.repaired, 1);
                            self.deliver
                                .room(&messages, None, Some(seq), Some(session), true)
                                .await;
                        }
                        Err(e) => self.refuse(Refusal::Malformed, account, &e),
                    }
                    self.keep(messages);
                    self.release(instance, session).await;
                }
                Admit::Ahead => {
                    let body = HeldBody {
                        account: account.clone(),
                        bytes: item.to_vec(),
                        repaired: true,
                    };
                    // (`admit` refused what would overflow.)
                    self.hold_body(instance, session, seq, seq + 1, body);
                }
                Admit::Duplicate | Admit::Partial => {}
                Admit::TooFar => {
                    self.absurd(account, instance, seq);
                    return;
                }
            }
        }
    }

    /// The repair timers: asks for what is missing (after a random delay,
    /// unless another node asked first), gives up what waited too long,
    /// asks the room about replaced sessions; drops peers not heard.
    pub(super) async fn repair_tick(&mut self) {
        let core = self.core.clone();
        let presence = &core.presence;
        presence.tick();
        presence.expire();
        let options = presence.options;
        let now = tokio::time::Instant::now();
        let mut requests = Vec::new();
        let mut given_up = Vec::new();
        // Whether a request is due: then the gaps due within half a window
        // are asked for in the same post.
        let ask_now = self.senders.values().any(|state| {
            state
                .sessions
                .iter()
                .any(|t| t.waiting() && t.gap.is_some_and(|gap| now >= gap.ask_at))
        });
        let rng = &mut self.rng;
        for state in self.senders.values_mut() {
            for track in &mut state.sessions {
                if !track.waiting() {
                    track.gap = None;
                    continue;
                }
                let gap = track.gap.get_or_insert_with(|| Gap {
                    since: now,
                    ask_at: now + jitter(rng, options.repair_window),
                });
                if now.duration_since(gap.since) >= options.repair_timeout {
                    let (next, end) = (track.next, track.end);
                    let n = track.give_up_all();
                    given_up.push((state.instance.clone(), track.session, next, end, n));
                } else if now + options.repair_window / 2 >= gap.ask_at && ask_now {
                    gap.ask_at = now + options.repair_window + jitter(rng, options.repair_window);
                    for (first, end) in track.missing(repair::RANGES_PER_ASK) {
                        requests.push((state.instance.to_string(), track.session, first, end));
                    }
                }
            }
        }
        self.probes.retain(|probe| {
            if now < probe.ask_at {
                return true;
            }
            requests.push((
                probe.instance.to_string(),
                probe.session,
                probe.first,
                repair::TO_THE_END,
            ));
            false
        });
        let serve = std::mem::take(&mut self.to_serve);
        let naks = std::mem::take(&mut self.to_nak);
        if !serve.is_empty() || !naks.is_empty() {
            core.push_control(|q| {
                for range in serve {
                    if q.serve.len() < crate::repair::MAX_QUEUED && !q.serve.contains(&range) {
                        q.serve.push(range);
                    }
                }
                for range in naks {
                    if q.unrepairable.len() < crate::repair::MAX_QUEUED {
                        q.unrepairable.push(range);
                    }
                }
            });
        }
        if !requests.is_empty() {
            Counters::add_owned(&core.counters.repair_requests, requests.len() as u64);
            trace!(node = %core.name, ?requests, "asking for repair");
            core.push_control(|q| {
                for request in requests {
                    if q.requests.len() < crate::repair::MAX_QUEUED {
                        q.requests.push(request);
                    }
                }
            });
        }
        for (instance, session, next, end, n) in given_up {
            if n > 0 {
                self.lose(&instance, session, next, end, n, "not repaired in time");
            }
            self.release(&instance, session).await;
        }
        let held = self
            .senders
            .values()
            .flat_map(|state| &state.sessions)
            .map(|track| track.held_count)
            .sum();
        core.held.store(held, std::sync::atomic::Ordering::Relaxed);
    }
}
