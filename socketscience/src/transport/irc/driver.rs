//! The connection loop of [`IrcChat`]: what lives across its connections
//! (the posts not yet delivered, the reconnect backoff, the shutdown), and
//! reconnecting with backoff when a connection drops.
//!
//! The rest is in the submodules: `connection` one connection (connect,
//! register, join, read and write); `posting` the posts and timers of a
//! connection (taking posts from the node, writing them through the token
//! bucket, confirming them with `PING`s); `events` what each line from the
//! server does.

mod connection;
mod events;
mod posting;

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{sleep_until, Instant};
use tracing::{error, info, warn};

use super::tls::Tls;
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
}

fn far_future() -> Instant {
    far_future_from(Instant::now())
}

fn far_future_from(now: Instant) -> Instant {
    now + Duration::from_secs(86_400)
}
