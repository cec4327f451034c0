//! The receive side of gap repair: holding envelopes that come early,
//! releasing them in order, presence and repair traffic (heartbeats,
//! requests, unrepairable ranges, envelopes posted again), the repair
//! timers, and what is given up. The dispatcher's rare paths: the usual
//! one stays in `mod.rs`.

use super::senders::{followed, sender_state, Followed, SESSIONS_PER_SENDER};
use super::*;

impl<D: Deliver> Dispatcher<D> {
    /// A session of `from` heard for the first time, first at `seq`. A
    /// node is owed everything a session posts after the node started: a
    /// session that replaces one heard before (a restart) is followed
    /// from its first envelope; one already running when this node started
    /// from the first heard. What the replaced sessions still miss can no
    /// longer be repaired.
    #[cold]
    #[inline(never)]
    pub(super) fn new_session(&mut self, from: &str, session: u64, seq: u64) {
        let now = tokio::time::Instant::now();
        let window = self.bus.presence.options.repair_window;
        let state = sender_state(&mut self.senders, from, self.heard);
        let restarted = !state.sessions.is_empty();
        let mut lost = Vec::new();
        for (i, old) in state.sessions.iter_mut().enumerate() {
            let (next, end) = (old.next, old.end);
            let n = old.give_up_all();
            if n > 0 {
                lost.push((old.session, next, end, n));
                self.to_release.push((state.instance.clone(), old.session));
            }
            if i == 0 {
                self.probes.push(Probe {
                    instance: state.instance.clone(),
                    session: old.session,
                    first: old.end,
                    ask_at: now + jitter(&mut self.rng, window),
                });
            }
        }
        state
            .sessions
            .insert(0, Track::new(session, if restarted { 0 } else { seq }));
        state.sessions.truncate(SESSIONS_PER_SENDER);
        state.published = u64::MAX;
        let instance = state.instance.clone();
        for (old, first, end, n) in lost {
            self.lose(&instance, old, first, end, n, "the sender restarted");
        }
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
        match accepted {
            Accept::Now { release } => {
                self.deliver.room(messages, meta.count).await;
                if release {
                    self.release_after(meta);
                }
            }
            Accept::Hold => self.hold(meta, account, body),
            Accept::Skip | Accept::Reject => {}
        }
        if accepted != Accept::Reject {
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
        Counters::add_owned(&self.bus.counters.lost, n);
        warn!(
            node = %self.bus.name,
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
        let max_held = self.bus.presence.options.max_held as u64;
        let Some(Followed {
            instance, track, ..
        }) = followed(&mut self.senders, from, session)
        else {
            return;
        };
        let instance = instance.clone();
        track.hold(seq, end, body);
        trace!(node = %self.bus.name, from, seq, next = track.next, "holding an envelope that came early");
        if track.held_count > max_held || track.held_bytes > repair::MAX_HELD_BYTES {
            let (next, end) = (track.next, track.end);
            let n = track.give_up_all();
            self.to_release.push((instance.clone(), session));
            self.lose(&instance, session, next, end, n, "too many envelopes held");
        }
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
                        Counters::add_owned(&self.bus.counters.repaired, n);
                    }
                    self.deliver.room(&messages, (n > 1).then_some(n)).await;
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
        let bus = self.bus.clone();
        let presence = &bus.presence;
        let options = presence.options;
        let now = tokio::time::Instant::now();
        let ms = presence.coarse_ms();
        self.heard += 1;
        let heard = self.heard;
        // The sender's track: a heartbeat says how far it got.
        let state = sender_state(&mut self.senders, from, heard);
        if !state.sessions.iter().any(|t| t.session == session) {
            self.new_session(from, session, control.heartbeat.unwrap_or(0));
        }
        let state = sender_state(&mut self.senders, from, heard);
        let instance = state.instance.clone();
        let signed = !bus.keys.is_empty();
        // A signed post older than the last taken from this session is a
        // replay (`accept` lets through what is within the clock skew):
        // it says nothing of whether the sender lives, nor how far it got.
        let live = match state.sessions.iter_mut().find(|t| t.session == session) {
            Some(track) => {
                let fresh = match meta.timestamp {
                    Some(ts) if signed => track.fresh_presence(ts),
                    _ => true,
                };
                if fresh {
                    if let Some(posted) = control.heartbeat {
                        track.learn_end(posted);
                    }
                }
                fresh
            }
            None => true,
        };
        if live {
            state.last_heard = heard;
            state.published = ms;
            presence.heard(&instance, account, session, ms);
            // Failover: the sender's election state.
            if let Some(raw) = control.election {
                bus.election_heard(&instance, session, codec, raw);
            }
        } else {
            Counters::add_owned(&bus.counters.replayed, 1);
            debug!(node = %bus.name, from, session, "a replayed presence post: not taken as a sign of life");
        }
        let mut serve = Vec::new();
        let mut unrepairable = Vec::new();
        let mut refused = 0;
        if let Some(raw) = control.requests {
            let quiet_until = now + options.repair_window;
            refused += self.requests(raw, codec, from, quiet_until, &mut serve, &mut unrepairable);
        }
        if let Some(raw) = control.unrepairable {
            refused += self.unrepairable(raw, codec, from);
        }
        if let Some(raw) = control.repairs {
            self.repairs(raw, codec, &instance, session, account).await;
        }
        if refused > 0 {
            Counters::add_owned(&bus.counters.repairs_refused, refused);
            self.drops.note(&self.bus);
        }
        for range in serve {
            if self.to_serve.len() < crate::repair::MAX_QUEUED && !self.to_serve.contains(&range) {
                self.to_serve.push(range);
            }
        }
        if !unrepairable.is_empty() {
            bus.push_control(|q| {
                for range in unrepairable {
                    if q.unrepairable.len() < crate::repair::MAX_QUEUED {
                        q.unrepairable.push(range);
                    }
                }
            });
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
        for (asked, asked_session, first, end) in ranges {
            if *asked == *self.bus.name && asked_session == self.bus.session {
                let posted = self
                    .bus
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
                    warn!(node = %self.bus.name, from, range = format_args!("{first}..{end}"), posted, "refused an absurd repair request");
                } else if first < end {
                    serve.push((first, end));
                }
                continue;
            }
            // Another receiver asked: this one waits for the repair.
            let Some(Followed {
                track, replaced, ..
            }) = self.heard_about(&asked, asked_session)
            else {
                continue;
            };
            if let Some(gap) = &mut track.gap {
                gap.ask_at = gap.ask_at.max(quiet_until);
            }
            // A restarted sender cannot answer for its old session: who
            // heard further says how far.
            if end == repair::TO_THE_END && replaced && track.end > first {
                unrepairable.push((asked, asked_session, first, track.end));
            }
        }
        refused
    }

    /// Ranges `from` says cannot be repaired: given up here too (counted as
    /// lost, and what was held behind them released). Gives how many were
    /// refused.
    fn unrepairable(&mut self, raw: &[u8], codec: Codec, from: &str) -> u64 {
        let Some(ranges) = self.ranges(raw, codec, from, "a list of unrepairable ranges") else {
            return 1;
        };
        let mut refused = 0;
        for (gone, gone_session, first, end) in ranges {
            if first > end || end - first > repair::MAX_GIVE_UP {
                refused += 1;
                continue;
            }
            let Some(Followed {
                instance, track, ..
            }) = self.heard_about(&gone, gone_session)
            else {
                continue;
            };
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
                trace!(node = %self.bus.name, from, error = %e, "refused {what}");
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
        let bus = self.bus.clone();
        let limits = self.checks.body_limits;
        let window = bus.presence.options.repair_window;
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
                            Counters::add_owned(&bus.counters.repaired, 1);
                            self.deliver.room(&messages, None).await;
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
                    self.hold_body(instance, session, seq, seq + 1, body);
                }
                Admit::Duplicate | Admit::Partial => {}
            }
        }
    }

    /// The repair timers: asks for what is missing (after a random delay,
    /// unless another node asked first), gives up what waited too long,
    /// asks the room about replaced sessions; drops peers not heard.
    pub(super) async fn repair_tick(&mut self) {
        let bus = self.bus.clone();
        let presence = &bus.presence;
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
        if !serve.is_empty() {
            bus.push_control(|q| {
                for range in serve {
                    if q.serve.len() < crate::repair::MAX_QUEUED && !q.serve.contains(&range) {
                        q.serve.push(range);
                    }
                }
            });
        }
        if !requests.is_empty() {
            Counters::add_owned(&bus.counters.repair_requests, requests.len() as u64);
            trace!(node = %bus.name, ?requests, "asking for repair");
            bus.push_control(|q| {
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
    }
}
