//! The connection loop of [`IrcChat`]: connect, register, join, post
//! through the token bucket, confirm with `PING`s, and reconnect with
//! backoff when the connection drops. What each line from the server does
//! is in [`events`].

mod events;

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout, Instant};
use tracing::{debug, error, info, warn};

use super::proto::{push_line, LineBuffer};
use super::tls::{Tls, TlsFailure};
use super::{IrcChat, IrcStatus};
use crate::error::{Error, Result};
use crate::rate::TokenBucket;
use crate::transport::backoff::Backoff;
use crate::transport::{Transport, TransportIo};

/// How long the server may take to welcome us, and to confirm a join.
const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(30);
/// After this long without a byte from the server, ask it for a `PONG`.
const KEEPALIVE: Duration = Duration::from_secs(60);
/// A `PING` unanswered for this long means the connection is dead.
const PONG_TIMEOUT: Duration = Duration::from_secs(60);
/// Confirmation `PING`s (see [`IrcChat::settle_time`]) are sent at most this often.
const CONFIRM_INTERVAL: Duration = Duration::from_secs(1);
/// Bytes handed to the socket ahead of what it has taken.
const WRITE_AHEAD: usize = 1_024;
/// How long to wait for the server to close after our `QUIT`.
const QUIT_TIMEOUT: Duration = Duration::from_secs(3);
/// A connection that stayed joined this long resets the reconnect backoff.
const STABLE_AFTER: Duration = Duration::from_secs(30);
/// Prefix of the tokens of our `PING`s.
const PING_TOKEN: &str = "socketscience-";
/// How often to look whether the node shut down while a post waits.
const CLOSE_CHECK: Duration = Duration::from_millis(200);

/// A line posted whose delivery is not yet known.
#[derive(Debug)]
struct InFlight {
    line: String,
    /// What to confirm to the node once it is delivered (see
    /// `TransportIo::post_through`).
    through: u64,
    /// The id of the first `PING` sent after the line.
    cover: u64,
    /// When the server answered that `PING`.
    confirmed: Option<Instant>,
}

/// Why a connection ended.
#[derive(Debug)]
enum End {
    /// The node shut down and everything was posted.
    Done,
    /// The shutdown timeout passed with lines still unposted.
    GaveUp,
    /// The connection was lost or refused; reconnect.
    Lost(String),
    /// The server cannot be used as configured, and trying again will not
    /// change that (a certificate that does not verify, a SASL login
    /// refused): fails `start`; later, logged as an error before
    /// reconnecting.
    Refused(String),
}

/// A connection to the server: TCP, or TLS over it.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Where one connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the welcome (`001`).
    Registering { deadline: Instant },
    /// `JOIN` sent, waiting for the end of the names list.
    Joining { deadline: Instant },
    /// Kicked or refused: `JOIN` again at `at`.
    Rejoining { at: Instant },
    /// In the channel, waiting for the peers of before the outage.
    WaitingForPeers { deadline: Instant },
    /// Posting.
    Ready,
    /// `QUIT` sent.
    Quitting { deadline: Instant },
}

/// State of one connection.
struct Conn {
    phase: Phase,
    nick: String,
    alternate: usize,
    cap_ls: String,
    /// Other members, by lowercased nick.
    members: BTreeMap<String, String>,
    joined: bool,
    last_rx: Instant,
    /// Our outstanding `PING`: its id and when it left.
    ping: Option<(u64, Instant)>,
    last_confirm_ping: Option<Instant>,
    ready_since: Option<Instant>,
    /// Delays between tries to rejoin the channel.
    rejoin: Backoff,
    close_reason: Option<String>,
    /// The SASL login succeeded (`903`, or `907`: already logged in).
    pub(super) logged_in: bool,
}

/// One [`IrcChat`] at work: what lives across its connections.
pub(super) struct Driver {
    cfg: IrcChat,
    io: TransportIo,
    bucket: TokenBucket,
    /// Delays between connections.
    backoff: Backoff,
    /// Posts taken from the node, not yet written: one at most, but all
    /// that is left once the node shuts down.
    /// (Each line with what to confirm to the node once it is delivered.)
    held: VecDeque<(String, u64)>,
    /// Lines to post again, oldest first, before `held`.
    resend: VecDeque<(String, u64)>,
    /// Lines written whose delivery is not known yet, oldest first.
    in_flight: VecDeque<InFlight>,
    /// The id of our next `PING`.
    next_ping: u64,
    /// Set when the node shut down: by when everything must be posted.
    shutdown_by: Option<Instant>,
    /// Who was in the channel when we last left it.
    peers_before: BTreeMap<String, String>,
    status: IrcStatus,
    /// TLS, if [`IrcChat::tls`]: made when the transport starts.
    tls: Option<Tls>,
    /// Whether `start` was told how the first connection went.
    reported: bool,
}

impl Driver {
    pub(super) fn new(cfg: IrcChat, mut io: TransportIo) -> Driver {
        let now = Instant::now();
        // Posts are taken ahead of writing them (all that is left at
        // shutdown): one is posted when the server confirmed it.
        io.confirm_explicitly();
        Driver {
            bucket: TokenBucket::new(cfg.rate, cfg.burst, now),
            backoff: Backoff::new(cfg.backoff_initial, cfg.backoff_max)
                .jitter(fastrand::Rng::new()),
            held: VecDeque::new(),
            resend: VecDeque::new(),
            in_flight: VecDeque::new(),
            next_ping: 1,
            shutdown_by: None,
            peers_before: BTreeMap::new(),
            status: cfg.status.clone(),
            tls: None,
            reported: false,
            io,
            cfg,
        }
    }

    pub(super) async fn run(mut self) -> Result<()> {
        info!(
            node = %self.io.node_name(),
            server = %self.cfg.server,
            nick = %self.cfg.nick,
            channel = %self.cfg.channel,
            max_text = self.cfg.max_message_len(),
            tls = self.cfg.tls,
            sasl = self.cfg.sasl.as_ref().map(|s| s.mechanism()),
            "IRC transport starting"
        );
        if self.cfg.tls {
            let client = match &self.cfg.sasl {
                Some(super::Sasl::External { cert_pem, key_pem }) => {
                    Some((cert_pem.as_slice(), key_pem.as_slice()))
                }
                _ => None,
            };
            match Tls::new(&self.cfg.server, self.cfg.tls_ca_file.as_deref(), client) {
                Ok(tls) => self.tls = Some(tls),
                Err(why) => return Err(self.refuse_start(why)),
            }
        }
        loop {
            let end = self.connection().await;
            {
                let mut status = self.status.lock();
                status.joined = false;
                status.members.clear();
                if let End::Lost(reason) | End::Refused(reason) = &end {
                    status.last_disconnect = Some(reason.clone());
                }
            }
            let refused = matches!(end, End::Refused(_));
            match end {
                End::Done => {
                    info!(node = %self.io.node_name(), "IRC transport stopped: everything posted");
                    return Ok(());
                }
                // The node names what was not posted (`Error::Unposted`).
                End::GaveUp => return self.give_up(),
                End::Refused(reason) if !self.reported => {
                    return Err(self.refuse_start(reason));
                }
                End::Lost(reason) | End::Refused(reason) => {
                    if !self.reported {
                        // Unreachable for now: `start` returns, and the
                        // transport keeps trying.
                        self.report(Ok(()));
                    } else if refused {
                        // A refusal after a good start (a certificate
                        // replaced, services down): said loudly, tried again.
                        error!(node = %self.io.node_name(), server = %self.cfg.server, reason = %reason, "IRC: the server refused the connection");
                    }
                    self.requeue(Instant::now());
                    if self.finished() {
                        return Ok(());
                    }
                    let delay = self.backoff.next_delay();
                    warn!(
                        node = %self.io.node_name(),
                        server = %self.cfg.server,
                        reason = %reason,
                        retry_in = ?delay,
                        to_resend = self.resend.len(),
                        "IRC connection lost; reconnecting"
                    );
                    if !self.pause(delay).await {
                        return self.give_up();
                    }
                    if self.finished() {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Tells `start` how the first connection went (once).
    pub(super) fn report(&mut self, outcome: Result<()>) {
        if !self.reported {
            self.reported = true;
            self.io.connected(outcome);
        }
    }

    /// The first connection showed the settings cannot work: `start`
    /// fails with `why`, and so does the transport.
    fn refuse_start(&mut self, why: String) -> Error {
        error!(node = %self.io.node_name(), server = %self.cfg.server, reason = %why, "IRC: cannot connect as configured");
        self.report(Err(Error::transport(why.clone())));
        Error::transport(why)
    }

    /// Whether the node shut down and nothing is left to post.
    fn finished(&self) -> bool {
        self.shutdown_by.is_some()
            && self.held.is_empty()
            && self.resend.is_empty()
            && self.in_flight.is_empty()
    }

    fn unposted(&self) -> usize {
        self.held.len() + self.resend.len() + self.in_flight.len()
    }

    /// Stops at the shutdown timeout with lines unposted: logged here; the
    /// node counts the envelopes and `shutdown` names them.
    fn give_up(&self) -> Result<()> {
        let lines = self.unposted();
        error!(
            node = %self.io.node_name(),
            lines,
            timeout = ?self.shutdown_timeout(),
            "IRC transport shut down with lines it could not post (or not confirm)"
        );
        Ok(())
    }

    /// The node's bound on shutdown, or the shorter one set for IRC.
    fn shutdown_timeout(&self) -> Duration {
        let node = self.io.shutdown_timeout();
        self.cfg.shutdown_timeout.map_or(node, |irc| irc.min(node))
    }

    /// Takes what `next_post` gave.
    fn accept_post(&mut self, post: Option<String>) {
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

    /// Waits `delay` between connections, still noticing a shutdown.
    /// `false` if the shutdown timeout passed.
    async fn pause(&mut self, delay: Duration) -> bool {
        let until = Instant::now() + delay;
        loop {
            if self.finished() {
                return true;
            }
            let give_up = self.shutdown_by.unwrap_or(until + Duration::from_secs(1));
            if give_up <= Instant::now() {
                return false;
            }
            let pull = self.may_take();
            let check = Instant::now() + CLOSE_CHECK;
            tokio::select! {
                post = self.io.next_post(), if pull => self.accept_post(post),
                _ = sleep_until(until.min(give_up).min(check)) => {
                    if Instant::now() >= until {
                        return true;
                    }
                }
            }
        }
    }

    /// Moves the lines of uncertain delivery to the front of the resend queue.
    fn requeue(&mut self, now: Instant) {
        let settle = self.cfg.settle;
        let mut again: VecDeque<(String, u64)> = VecDeque::new();
        for f in self.in_flight.drain(..) {
            let settled = f
                .confirmed
                .is_some_and(|at| now.saturating_duration_since(at) >= settle);
            if settled {
                self.io.confirm_through(f.through);
            } else {
                again.push_back((f.line, f.through));
            }
        }
        again.append(&mut self.resend);
        self.resend = again;
    }

    /// One connection, from connecting to its end.
    async fn connection(&mut self) -> End {
        let server = self.cfg.server.clone();
        let connect = timeout(
            self.cfg.connect_timeout,
            open(server.clone(), self.tls.clone()),
        );
        tokio::pin!(connect);
        let stream = loop {
            let pull = self.may_take();
            let give_up = self.shutdown_by.unwrap_or_else(far_future);
            let check = Instant::now() + CLOSE_CHECK;
            tokio::select! {
                result = &mut connect => match result {
                    Ok(Ok(stream)) => break stream,
                    Ok(Err(end)) => return end,
                    Err(_) => return End::Lost(format!("connecting to {server} timed out")),
                },
                post = self.io.next_post(), if pull => self.accept_post(post),
                _ = sleep_until(give_up) => return End::GaveUp,
                _ = sleep_until(check), if !pull => {}
            }
        };
        let (mut reader, mut writer) = tokio::io::split(stream);
        let now = Instant::now();
        let mut conn = Conn {
            phase: Phase::Registering {
                deadline: now + REGISTRATION_TIMEOUT,
            },
            nick: self.cfg.nick.clone(),
            alternate: 0,
            cap_ls: String::new(),
            members: BTreeMap::new(),
            joined: false,
            last_rx: now,
            ping: None,
            last_confirm_ping: None,
            ready_since: None,
            rejoin: Backoff::new(self.cfg.backoff_initial, self.cfg.backoff_max),
            close_reason: None,
            logged_in: false,
        };
        // TLS holds what was written until it is flushed.
        let mut unflushed = false;
        let mut out: Vec<u8> = Vec::with_capacity(2 * WRITE_AHEAD);
        self.register(&conn, &mut out);
        let mut lines = LineBuffer::default();
        let end = loop {
            let now = Instant::now();
            if let Some(end) = self.tick(&mut conn, &mut out, now) {
                break end;
            }
            let wake = self.next_wake(&mut conn, now);
            let pull = self.may_take() && (self.node_closing() || self.may_pull(&conn, &out, now));
            tokio::select! {
                read = reader.read_buf(&mut lines.buf) => match read {
                    Ok(0) => break self.closed(&conn, "the server closed the connection".into()),
                    Ok(_) => {
                        let mut ended = None;
                        while let Some(line) = lines.next_line() {
                            if let Some(end) = self.handle(&mut conn, &mut out, &line).await {
                                ended = Some(end);
                                break;
                            }
                        }
                        if let Some(end) = ended {
                            break end;
                        }
                    }
                    Err(e) => break self.closed(&conn, format!("read error: {e}")),
                },
                written = write_or_flush(&mut writer, &out), if !out.is_empty() || unflushed => {
                    match written {
                        Ok(Some(0)) => {
                            break self.closed(&conn, "the server stopped taking data".into());
                        }
                        Ok(Some(n)) => {
                            out.drain(..n);
                            unflushed = true;
                        }
                        Ok(None) => unflushed = false,
                        Err(e) => break self.closed(&conn, format!("write error: {e}")),
                    }
                }
                post = self.io.next_post(), if pull => self.accept_post(post),
                _ = sleep_until(wake) => {}
            }
        };
        if matches!(end, End::Done) {
            let _ = writer.shutdown().await;
        }
        if conn.joined {
            self.peers_before = conn.members.clone();
        }
        if conn
            .ready_since
            .is_some_and(|at| at.elapsed() >= STABLE_AFTER)
        {
            self.backoff.reset();
        }
        end
    }

    /// The connection closed: done if we were quitting, else lost.
    fn closed(&self, conn: &Conn, what: String) -> End {
        if matches!(conn.phase, Phase::Quitting { .. }) {
            return End::Done;
        }
        End::Lost(match &conn.close_reason {
            Some(reason) => format!("{what}: {reason}"),
            None => what,
        })
    }

    fn register(&self, conn: &Conn, out: &mut Vec<u8>) {
        if self.cfg.echo_message || self.cfg.sasl.is_some() {
            // Servers without CAP answer 421 and register us anyway.
            push_line(out, "CAP LS 302");
        }
        if let Some(password) = &self.cfg.password {
            push_line(out, &format!("PASS {password}"));
        }
        push_line(out, &format!("NICK {}", conn.nick));
        push_line(
            out,
            &format!("USER {} 0 * :{}", self.cfg.username, self.cfg.realname),
        );
    }

    fn join(&self, conn: &mut Conn, out: &mut Vec<u8>, now: Instant) {
        match &self.cfg.channel_key {
            Some(key) => push_line(out, &format!("JOIN {} {key}", self.cfg.channel)),
            None => push_line(out, &format!("JOIN {}", self.cfg.channel)),
        }
        conn.phase = Phase::Joining {
            deadline: now + REGISTRATION_TIMEOUT,
        };
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
    fn may_take(&self) -> bool {
        self.shutdown_by.is_none() && (self.held.is_empty() || self.node_closing())
    }

    /// Whether the node has stopped taking sends: it is shutting down.
    fn node_closing(&self) -> bool {
        self.io.is_closing()
    }

    /// Whether a post may be taken from the node now: to write it at once
    /// when posting, or to hold one (and so notice a shutdown) otherwise.
    fn may_pull(&mut self, conn: &Conn, out: &[u8], now: Instant) -> bool {
        if conn.phase != Phase::Ready {
            return true;
        }
        self.resend.is_empty()
            && out.len() < WRITE_AHEAD
            && self.in_flight.len() < self.cfg.resend_window
            && self.bucket.ready(now)
    }

    /// Timers, and writing what may be written. `Some` ends the connection.
    fn tick(&mut self, conn: &mut Conn, out: &mut Vec<u8>, now: Instant) -> Option<End> {
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
    fn next_wake(&mut self, conn: &mut Conn, now: Instant) -> Instant {
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

    fn ready(&mut self, conn: &mut Conn, now: Instant) {
        conn.phase = Phase::Ready;
        conn.ready_since.get_or_insert(now);
        conn.rejoin.reset();
        self.status.lock().joined = true;
        info!(
            node = %self.io.node_name(),
            nick = %conn.nick,
            channel = %self.cfg.channel,
            members = conn.members.len(),
            to_resend = self.resend.len(),
            "in the IRC channel"
        );
    }
}

/// Writes some of `out`, or, once it is all written, flushes (TLS holds
/// the last bytes until then): `None` when flushed.
async fn write_or_flush<W: AsyncWrite + Unpin>(
    writer: &mut W,
    out: &[u8],
) -> std::io::Result<Option<usize>> {
    if out.is_empty() {
        writer.flush().await.map(|()| None)
    } else {
        writer.write(out).await.map(Some)
    }
}

/// Connects to `server`, with TLS if given. A certificate that does not
/// verify is [`End::Refused`]; everything else [`End::Lost`].
async fn open(server: String, tls: Option<Tls>) -> std::result::Result<Box<dyn Stream>, End> {
    let tcp = TcpStream::connect(server.as_str())
        .await
        .map_err(|e| End::Lost(format!("cannot connect to {server}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    match tls {
        None => Ok(Box::new(tcp)),
        Some(tls) => match tls.connect(tcp).await {
            Ok(stream) => Ok(Box::new(stream)),
            Err(TlsFailure::Certificate(why)) => Err(End::Refused(why)),
            Err(TlsFailure::Io(why)) => Err(End::Lost(why)),
        },
    }
}

fn far_future() -> Instant {
    far_future_from(Instant::now())
}

fn far_future_from(now: Instant) -> Instant {
    now + Duration::from_secs(86_400)
}
