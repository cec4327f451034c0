//! The posts and timers of a connection: taking posts from the node (one
//! at a time, everything once it shuts down), writing them through the
//! token bucket within the resend window, asking the server to confirm
//! them with `PING`s and forgetting them once settled, the deadlines of
//! each phase, and when the loop next needs to wake.

use tokio::time::Instant;
use tracing::{debug, error, warn};

use super::{
    far_future_from, Conn, Driver, End, InFlight, Phase, CLOSE_CHECK, CONFIRM_INTERVAL, KEEPALIVE,
    PING_TOKEN, PONG_TIMEOUT, QUIT_TIMEOUT, WRITE_AHEAD,
};
use crate::transport::irc::proto::push_line;

impl Driver {
    /// Takes what `next_post` gave.
    pub(super) fn accept_post(&mut self, post: Option<String>) {
        match post {
            Some(line) => self.held.push_back((line, self.io.post_through())),
            None => {
                if self.shutdown_by.is_none() {
                    debug!(node = %self.io.node_name(), "node shutting down: flushing the IRC queue");
                    self.shutdown_by = Some(Instant::now() + self.shutdown_timeout());
                }
            }
        }
    }

    fn send_ping(&mut self, conn: &mut Conn, out: &mut Vec<u8>, now: Instant) {
        let id = self.next_ping;
        self.next_ping += 1;
        push_line(out, &format!("PING :{PING_TOKEN}{id}"));
        conn.ping = Some((id, now));
    }

    /// Whether `next_post` may be called: not after it said the node shut
    /// down; one post at a time, except once the node has closed its queue
    /// (then everything is taken, and the end of it tells the shutdown).
    pub(super) fn may_take(&self) -> bool {
        self.shutdown_by.is_none() && (self.held.is_empty() || self.node_closing())
    }

    /// Whether the node has stopped taking sends: it is shutting down.
    pub(super) fn node_closing(&self) -> bool {
        self.io.is_closing()
    }

    /// Whether a post may be taken from the node now: to write it at once
    /// when posting, or to hold one (and so notice a shutdown) otherwise.
    pub(super) fn may_pull(&mut self, conn: &Conn, out: &[u8], now: Instant) -> bool {
        if conn.phase != Phase::Ready {
            return true;
        }
        self.resend.is_empty()
            && out.len() < WRITE_AHEAD
            && self.in_flight.len() < self.cfg.resend_window
            && self.bucket.ready(now)
    }

    /// Timers, and writing what may be written. `Some` ends the connection.
    pub(super) fn tick(&mut self, conn: &mut Conn, out: &mut Vec<u8>, now: Instant) -> Option<End> {
        if self.shutdown_by.is_some_and(|by| now >= by) {
            return Some(End::GaveUp);
        }
        match conn.phase {
            Phase::Registering { deadline } if now >= deadline => {
                return Some(End::Lost("the server did not welcome us in time".into()));
            }
            Phase::Joining { deadline } if now >= deadline => {
                return Some(End::Lost(format!("joining {} timed out", self.cfg.channel)));
            }
            Phase::Rejoining { at } if now >= at => self.join(conn, out, now),
            Phase::WaitingForPeers { deadline } if now >= deadline => {
                let missing: Vec<&String> = self
                    .peers_before
                    .iter()
                    .filter(|(k, _)| !conn.members.contains_key(*k))
                    .map(|(_, v)| v)
                    .collect();
                warn!(
                    node = %self.io.node_name(),
                    ?missing,
                    "peers not back in the channel after the peer wait; posting anyway"
                );
                self.ready(conn, now);
            }
            Phase::Quitting { deadline } if now >= deadline => return Some(End::Done),
            _ => {}
        }
        match conn.ping {
            Some((_, sent)) if now.saturating_duration_since(sent) >= PONG_TIMEOUT => {
                return Some(End::Lost(format!(
                    "no answer to PING in {}s",
                    PONG_TIMEOUT.as_secs()
                )));
            }
            None if now.saturating_duration_since(conn.last_rx) >= KEEPALIVE
                && !matches!(conn.phase, Phase::Quitting { .. }) =>
            {
                self.send_ping(conn, out, now);
            }
            _ => {}
        }
        // Forget lines the server confirmed long enough ago.
        let settle = self.cfg.settle;
        while self.in_flight.front().is_some_and(|f| {
            f.confirmed
                .is_some_and(|at| now.saturating_duration_since(at) >= settle)
        }) {
            if let Some(done) = self.in_flight.pop_front() {
                self.io.confirm_through(done.through);
            }
        }
        if self.finished() && out.is_empty() && !matches!(conn.phase, Phase::Quitting { .. }) {
            push_line(out, "QUIT :shutting down");
            conn.phase = Phase::Quitting {
                deadline: now + QUIT_TIMEOUT,
            };
            return None;
        }
        if conn.phase != Phase::Ready {
            return None;
        }
        // Post what the bucket allows: resends first, then the held post.
        while out.len() < WRITE_AHEAD && self.in_flight.len() < self.cfg.resend_window {
            let resending = !self.resend.is_empty();
            if !resending && self.held.is_empty() {
                break;
            }
            if !self.bucket.take(now) {
                break;
            }
            let (line, through) = match self.resend.pop_front() {
                Some(line) => line,
                None => match self.held.pop_front() {
                    Some(line) => line,
                    None => break,
                },
            };
            if line.contains(['\r', '\n', '\0']) {
                // The node writes single-line frames; this would be a bug.
                error!(node = %self.io.node_name(), "dropped a post with a line break");
                continue;
            }
            push_line(out, &format!("PRIVMSG {} :{line}", self.cfg.channel));
            self.in_flight.push_back(InFlight {
                line,
                through,
                cover: self.next_ping,
                confirmed: None,
            });
            let mut status = self.status.lock();
            status.posted += 1;
            if resending {
                status.resent += 1;
            }
        }
        // Ask the server to confirm what it got.
        let uncovered = self
            .in_flight
            .back()
            .is_some_and(|f| f.cover == self.next_ping);
        let confirm_due = conn
            .last_confirm_ping
            .is_none_or(|at| now.saturating_duration_since(at) >= CONFIRM_INTERVAL);
        if uncovered && conn.ping.is_none() && (confirm_due || self.shutdown_by.is_some()) {
            self.send_ping(conn, out, now);
            conn.last_confirm_ping = Some(now);
        }
        None
    }

    /// When something next needs doing without input from the server.
    pub(super) fn next_wake(&mut self, conn: &mut Conn, now: Instant) -> Instant {
        let mut wake = far_future_from(now);
        let mut at = |t: Instant| wake = wake.min(t);
        if let Some(by) = self.shutdown_by {
            at(by);
        } else if !self.held.is_empty() {
            // Look again whether the node shut down.
            at(now + CLOSE_CHECK);
        }
        match conn.phase {
            Phase::Registering { deadline }
            | Phase::Joining { deadline }
            | Phase::WaitingForPeers { deadline }
            | Phase::Quitting { deadline } => at(deadline),
            Phase::Rejoining { at: when } => at(when),
            Phase::Ready => {}
        }
        match conn.ping {
            Some((_, sent)) => at(sent + PONG_TIMEOUT),
            None => at(conn.last_rx + KEEPALIVE),
        }
        if conn.phase == Phase::Ready {
            let window_open = self.in_flight.len() < self.cfg.resend_window;
            // Something to post (or to take from the node) once a token is there.
            let wants =
                !self.resend.is_empty() || !self.held.is_empty() || self.shutdown_by.is_none();
            if window_open && wants && !self.bucket.ready(now) {
                at(self.bucket.next_token(now));
            }
            // A line to forget (to open the window, or to finish).
            if !window_open || self.shutdown_by.is_some() {
                if let Some(confirmed) = self.in_flight.front().and_then(|f| f.confirmed) {
                    at(confirmed + self.cfg.settle);
                }
            }
            let uncovered = self
                .in_flight
                .back()
                .is_some_and(|f| f.cover == self.next_ping);
            if uncovered && conn.ping.is_none() {
                at(conn.last_confirm_ping.map_or(now, |t| t + CONFIRM_INTERVAL));
            }
        }
        wake
    }
}
