//! [`IrcChat`]: the instances of a bot meet in a channel of a real IRC
//! server.
//!
//! The protocol subset a bot needs (registration, `CAP`, `JOIN`, names,
//! `PRIVMSG`, `PING`) is small, so the transport owns it: a parser for
//! RFC 1459/2812 lines with IRCv3 tags, a token bucket, and a connection
//! loop that reconnects, rejoins and resends. See [`IrcChat`] for what it
//! promises.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout, Instant};
use tracing::{debug, error, info, warn};

use crate::error::{Error, Result};
use crate::transport::{BoxFuture, ChatMessage, Transport, TransportIo};
use crate::wire::Lines;

/// The longest IRC line, CR LF included (RFC 2812 2.3).
const LINE_LIMIT: usize = 512;
/// The longest line read from the server: 512 bytes plus IRCv3 tags.
const MAX_INCOMING_LINE: usize = 8_191 + LINE_LIMIT;
/// Nick suffixes (`_`, `__`, `___`) tried when the nick is taken; the
/// length budget of a line leaves room for them.
const MAX_ALTERNATE_NICKS: usize = 3;
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
/// The slowest a flood response may make the send rate, in lines per second.
const MIN_RATE: f64 = 0.05;
/// Prefix of the tokens of our `PING`s.
const PING_TOKEN: &str = "socketscience-";
/// How often to look whether the node shut down while a post waits.
const CLOSE_CHECK: Duration = Duration::from_millis(200);

/// A connection to a channel on an IRC server: a [`Transport`].
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> socketscience::Result<()> {
/// use socketscience::{IrcChat, Node};
///
/// let chat = IrcChat::new("127.0.0.1:6667", "smokey-henders", "#smokey");
/// let status = chat.status(); // membership and connection counters
/// let node = Node::builder("Henders/EC2")
///     .transport(chat)
///     .trust("smokey-*") // every instance has its own nick
///     .start()
///     .await?;
/// node.shutdown().await?;
/// # Ok(()) }
/// ```
///
/// # Identity and trust
///
/// Every instance needs a nick of its own (IRC has no shared accounts), so
/// give the fleet a pattern, `smokey-henders`, `smokey-teward`, ..., and
/// trust the pattern on every node with
/// [`NodeBuilder::trust("smokey-*")`](crate::NodeBuilder::trust). The
/// account of a chat message is the nick of its sender. If the nick is
/// taken when connecting, the transport tries it with one to three `_`
/// appended (a pattern ending in `*` still matches).
///
/// # Echoes
///
/// Most servers do not send a client its own `PRIVMSG`s; the node runs its
/// own handlers at send time, so nothing is missed. When the server offers
/// the IRCv3 `echo-message` capability the transport asks for it (turn that
/// off with [`echo_message(false)`](IrcChat::echo_message)); the node then
/// recognises its own envelopes by instance name and session and drops
/// them (counted in [`Stats::own_echoes`](crate::Stats::own_echoes)):
/// either way each handler runs once.
///
/// # Line length
///
/// A server relays a `PRIVMSG` as `:nick!user@host PRIVMSG #channel
/// :text\r\n`, at most 512 bytes. [`max_message_len`](Transport::max_message_len)
/// is what is left for the text with the nick (plus room for three `_`), the
/// user name (plus a `~`), the channel and a host of up to
/// [`max_host_len`](IrcChat::max_host_len) bytes (63 by default, the
/// longest host name most servers show). Longer frames go out in chunks.
/// Frames are written in the single-line form (starting at `\x02`; Python
/// SocketScience, which lives on Stack Exchange chat, does not read it).
///
/// # Flood control
///
/// Posts leave through a token bucket: by default a burst of 5 lines, then
/// one line per second, which stock servers take without throttling or
/// kicking (see [`send_rate`](IrcChat::send_rate)). The queue waits in the
/// node meanwhile, bounded by its `outgoing_capacity`. When the server says
/// the client flooded (an `ERROR`, `KILL` or `KICK` whose reason mentions
/// flooding or an overflowing queue), the rate is halved for the rest of
/// the process, and the transport reconnects or rejoins and goes on.
///
/// # Disconnects
///
/// When the connection drops, the transport reconnects with capped
/// exponential backoff (1 s doubling to 60 s, with jitter; see
/// [`reconnect_backoff`](IrcChat::reconnect_backoff)), registers, rejoins,
/// and then waits up to [`peer_wait`](IrcChat::peer_wait) (30 s) for the
/// nicks that were in the channel before the outage to be back, so that
/// they do not miss what it posts next. Then it posts, in order:
///
/// 1. the lines whose delivery it cannot know: every line not yet
///    confirmed by the server (a `PONG` to a `PING` sent after it) or
///    confirmed less than [`settle_time`](IrcChat::settle_time) (3 s) before
///    the outage. Receivers drop the copies they already had (by sender
///    instance, session and sequence number), so every handler still runs
///    once;
/// 2. what the node queued during the outage.
///
/// Nothing accepted by `send` is lost while the process lives: it waits in
/// the node's queue or in the transport's (at most
/// [`resend_window`](IrcChat::resend_window) lines in flight, 256 by
/// default; past it the transport waits for confirmations before it posts
/// more).
///
/// # Shutdown
///
/// [`Node::shutdown`](crate::Node::shutdown) makes the transport post
/// everything still queued (at the send rate, reconnecting if it must),
/// wait until the server confirmed the last line and the settle time
/// passed, then `QUIT`. It gives up after
/// [`shutdown_timeout`](IrcChat::shutdown_timeout) (60 s): the lines not
/// posted by then are dropped, logged with their count, and `shutdown`
/// returns [`Error::Transport`] saying how many. The queue does not
/// outlive the process.
///
/// # Not covered
///
/// Plain TCP only (run a TLS tunnel, or a server on the same host, for
/// encryption); no SASL (a server password is supported). A node that is
/// cut off while the others stay connected (its own network, a kick) misses
/// what they post meanwhile: the server keeps no history.
pub struct IrcChat {
    server: String,
    nick: String,
    channel: String,
    channel_key: Option<String>,
    password: Option<String>,
    username: String,
    realname: String,
    rate: f64,
    burst: u32,
    backoff_initial: Duration,
    backoff_max: Duration,
    peer_wait: Duration,
    settle: Duration,
    resend_window: usize,
    shutdown_timeout: Duration,
    connect_timeout: Duration,
    echo_message: bool,
    max_host_len: usize,
    status: IrcStatus,
}

impl fmt::Debug for IrcChat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IrcChat")
            .field("server", &self.server)
            .field("nick", &self.nick)
            .field("channel", &self.channel)
            .field("has_password", &self.password.is_some())
            .field("rate", &self.rate)
            .field("burst", &self.burst)
            .finish_non_exhaustive()
    }
}

impl IrcChat {
    /// Joins `channel` (`"#smokey"`) on the server at `server`
    /// (`"irc.example.net:6667"`, or an IP address and port) as `nick`.
    ///
    /// Nothing connects until the node starts. The settings are checked
    /// when it starts: [`NodeBuilder::start`](crate::NodeBuilder::start)
    /// fails with [`Error::InvalidOption`], naming the method whose value
    /// cannot work, before anything connects.
    pub fn new(
        server: impl Into<String>,
        nick: impl Into<String>,
        channel: impl Into<String>,
    ) -> IrcChat {
        IrcChat {
            server: server.into(),
            nick: nick.into(),
            channel: channel.into(),
            channel_key: None,
            password: None,
            username: "socketsci".into(),
            realname: "socketscience".into(),
            rate: 1.0,
            burst: 5,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            peer_wait: Duration::from_secs(30),
            settle: Duration::from_secs(3),
            resend_window: 256,
            shutdown_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(20),
            echo_message: true,
            max_host_len: 63,
            status: IrcStatus::default(),
        }
    }

    /// The server password (`PASS`), if the server wants one.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// The channel key (`JOIN #channel key`), if the channel has one.
    pub fn channel_key(mut self, key: impl Into<String>) -> Self {
        self.channel_key = Some(key.into());
        self
    }

    /// The user name sent at registration (default `socketsci`). Servers
    /// show it in the sender's prefix, so it counts against the line length.
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = username.into();
        self
    }

    /// The "real name" sent at registration (default `socketscience`).
    pub fn realname(mut self, realname: impl Into<String>) -> Self {
        self.realname = realname.into();
        self
    }

    /// The send rate: after a burst of `burst` lines, `lines_per_second`
    /// (default 5 lines, then 1 per second).
    ///
    /// The default is the common ground of stock servers: classic
    /// RFC 1459 flood control lets a client 5 lines ahead and then one per
    /// 2 s before it lags it, charybdis/solanum and ergo start lagging at
    /// 1 and 2 lines per second after a burst of about 5, and ngIRCd (the
    /// server the tests run) processes at most 3 commands or 256 bytes a
    /// second before it pauses reading: one 500-byte line a second is what
    /// it passes on without delay. Faster rates are accepted by many
    /// servers (ngIRCd throttles but never kicks), but the lines then wait
    /// in the server's buffers, where a crash loses them, instead of in
    /// the node's queue.
    pub fn send_rate(mut self, lines_per_second: f64, burst: u32) -> Self {
        self.rate = lines_per_second;
        self.burst = burst;
        self
    }

    /// The delay before the first reconnect attempt, doubled after each
    /// failed one up to `max` (default 1 s and 60 s). Each delay is drawn
    /// between half and all of its value, so a fleet does not reconnect in
    /// lockstep.
    pub fn reconnect_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff_initial = initial;
        self.backoff_max = max;
        self
    }

    /// How long, after rejoining, to wait for the nicks that were in the
    /// channel before the connection dropped (default 30 s). Posting starts
    /// as soon as they are all back, or when this has passed.
    pub fn peer_wait(mut self, wait: Duration) -> Self {
        self.peer_wait = wait;
        self
    }

    /// How long after the server confirmed a line (it answered a `PING`
    /// sent after it) the line is still posted again if the connection
    /// drops (default 3 s): the server may have taken it but not yet passed
    /// it on to the others.
    pub fn settle_time(mut self, settle: Duration) -> Self {
        self.settle = settle;
        self
    }

    /// Most lines kept for posting again after a disconnect (default 256).
    /// When that many are unconfirmed, the transport waits for the server
    /// before it posts more.
    pub fn resend_window(mut self, lines: usize) -> Self {
        self.resend_window = lines;
        self
    }

    /// How long [`Node::shutdown`](crate::Node::shutdown) may take to post
    /// what is queued (default 60 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// How long one connection attempt may take (default 20 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Whether to ask for the IRCv3 `echo-message` capability when the
    /// server offers it (default `true`). Either way each handler runs once.
    pub fn echo_message(mut self, request: bool) -> Self {
        self.echo_message = request;
        self
    }

    /// The longest host the server may show in our prefix (default 63).
    /// The transport measures the real prefix when it joins and logs a
    /// warning if it is longer than allowed for.
    pub fn max_host_len(mut self, bytes: usize) -> Self {
        self.max_host_len = bytes;
        self
    }

    /// A handle on the connection's state: whether it is in the channel,
    /// who else is, and counters. Take it before giving the transport to
    /// the node.
    pub fn status(&self) -> IrcStatus {
        self.status.clone()
    }

    /// What a server adds around the text of a `PRIVMSG` it relays, at most.
    fn overhead(&self) -> usize {
        // ":" nick "!" ["~"] user "@" host " PRIVMSG " channel " :" text "\r\n"
        1 + self.nick.len()
            + MAX_ALTERNATE_NICKS
            + 1
            + 1
            + self.username.len()
            + 1
            + self.max_host_len
            + " PRIVMSG ".len()
            + self.channel.len()
            + " :".len()
            + "\r\n".len()
    }
}

fn valid_nick(nick: &str) -> bool {
    let special = |b: u8| b"[]\\`_^{|}".contains(&b);
    let mut bytes = nick.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || special(b))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'-' || special(b))
}

fn valid_channel(channel: &str) -> bool {
    channel.len() > 1
        && channel.starts_with(['#', '&'])
        && !channel.contains([' ', ',', '\x07', '\r', '\n', '\0'])
}

impl Transport for IrcChat {
    fn account(&self) -> &str {
        &self.nick
    }

    fn max_message_len(&self) -> usize {
        LINE_LIMIT.saturating_sub(self.overhead())
    }

    fn lines(&self) -> Lines {
        Lines::Single
    }

    /// Every setting, before the node starts: `start` fails with
    /// [`Error::InvalidOption`] naming the `IrcChat` method to change.
    fn check(&self) -> Result<()> {
        let invalid =
            |option: &'static str, reason: String| Err(Error::InvalidOption { option, reason });
        let bad_char = |s: &str| s.contains(['\r', '\n', '\0']);
        if self.server.is_empty() || bad_char(&self.server) {
            return invalid(
                "IrcChat::new",
                format!(
                    "the server address {:?} is not a host and port: give one such as \
                     \"irc.example.net:6667\"",
                    self.server
                ),
            );
        }
        if !valid_nick(&self.nick) {
            return invalid(
                "IrcChat::new",
                format!(
                    "the nick {:?} is not a valid IRC nick: give one that starts with a \
                     letter or one of `[]\\`_^{{|}}`, then letters, digits, `-` or those",
                    self.nick
                ),
            );
        }
        if !valid_channel(&self.channel) {
            return invalid(
                "IrcChat::new",
                format!(
                    "the channel {:?} is not a channel name: give one that starts with \
                     `#` or `&` and has no space, comma or control character",
                    self.channel
                ),
            );
        }
        if self.username.is_empty()
            || !self
                .username
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'@')
        {
            return invalid(
                "IrcChat::username",
                format!(
                    "the user name {:?} must be printable ASCII without a space or `@`",
                    self.username
                ),
            );
        }
        for (option, what, value) in [
            ("IrcChat::password", "password", self.password.as_deref()),
            (
                "IrcChat::channel_key",
                "channel key",
                self.channel_key.as_deref(),
            ),
            (
                "IrcChat::realname",
                "real name",
                Some(self.realname.as_str()),
            ),
        ] {
            if value.is_some_and(|v| bad_char(v) || (what != "real name" && v.contains(' '))) {
                let allowed = if what == "real name" {
                    "a line break"
                } else {
                    "a space or a line break"
                };
                return invalid(option, format!("the {what} must not hold {allowed}"));
            }
        }
        if !(self.rate.is_finite() && self.rate > 0.0) || self.burst == 0 {
            return invalid(
                "IrcChat::send_rate",
                format!(
                    "send_rate({}, {}): the rate must be above 0 and the burst at least 1",
                    self.rate, self.burst
                ),
            );
        }
        if self.resend_window == 0 {
            return invalid("IrcChat::resend_window", "it must be at least 1".into());
        }
        if self.backoff_initial.is_zero() || self.backoff_max < self.backoff_initial {
            return invalid(
                "IrcChat::reconnect_backoff",
                format!(
                    "reconnect_backoff({:?}, {:?}): initial must be above 0 and max at \
                     least initial",
                    self.backoff_initial, self.backoff_max
                ),
            );
        }
        Ok(())
    }

    fn run(self: Box<Self>, io: TransportIo) -> BoxFuture<Result<()>> {
        Box::pin(async move { Driver::new(*self, io).run().await })
    }
}

/// What an [`IrcChat`] is doing, for health checks, logs and tests. Cheap
/// to clone; every clone sees the same connection.
#[derive(Clone, Default)]
pub struct IrcStatus {
    inner: Arc<Mutex<StatusInner>>,
}

#[derive(Debug, Default)]
struct StatusInner {
    nick: Option<String>,
    joined: bool,
    /// Other members of the channel, by lowercased nick.
    members: BTreeMap<String, String>,
    connections: u64,
    posted: u64,
    resent: u64,
    flood_slowdowns: u64,
    last_disconnect: Option<String>,
}

impl fmt::Debug for IrcStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.lock().fmt(f)
    }
}

impl IrcStatus {
    fn lock(&self) -> std::sync::MutexGuard<'_, StatusInner> {
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

// ---------------------------------------------------------------------------
// The protocol: lines, parsing, case mapping.
// ---------------------------------------------------------------------------

/// One line from the server, split as RFC 2812 2.3.1 (with IRCv3 tags).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Message<'a> {
    tags: Option<&'a str>,
    prefix: Option<&'a str>,
    command: &'a str,
    params: Vec<&'a str>,
}

impl<'a> Message<'a> {
    /// Parses one line (without its line ending). `None` if it has no
    /// command; never panics.
    fn parse(line: &'a str) -> Option<Message<'a>> {
        let mut rest = line.trim_end_matches(['\r', '\n']).trim_start_matches(' ');
        let mut tags = None;
        if let Some(after) = rest.strip_prefix('@') {
            let (t, after) = after.split_once(' ')?;
            tags = Some(t);
            rest = after.trim_start_matches(' ');
        }
        let mut prefix = None;
        if let Some(after) = rest.strip_prefix(':') {
            let (p, after) = after.split_once(' ')?;
            prefix = Some(p);
            rest = after.trim_start_matches(' ');
        }
        let (command, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
        if command.is_empty() || !command.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        let mut params = Vec::new();
        loop {
            rest = rest.trim_start_matches(' ');
            if rest.is_empty() {
                break;
            }
            if let Some(trailing) = rest.strip_prefix(':') {
                params.push(trailing);
                break;
            }
            match rest.split_once(' ') {
                Some((param, after)) => {
                    params.push(param);
                    rest = after;
                }
                None => {
                    params.push(rest);
                    break;
                }
            }
        }
        Some(Message {
            tags,
            prefix,
            command,
            params,
        })
    }

    /// The nick of the prefix (`nick!user@host`), if the prefix is a user's.
    fn nick(&self) -> Option<&'a str> {
        let prefix = self.prefix?;
        let nick = prefix.split(['!', '@']).next().unwrap_or(prefix);
        (!nick.is_empty()).then_some(nick)
    }

    fn param(&self, i: usize) -> &'a str {
        self.params.get(i).copied().unwrap_or("")
    }

    fn last(&self) -> &'a str {
        self.params.last().copied().unwrap_or("")
    }
}

/// Lowercases as RFC 1459 case mapping does (`[]\~` are the uppercase of
/// `{}|^`), which is what servers use for nicks and channels by default.
fn irc_lower(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '[' => '{',
            ']' => '}',
            '\\' => '|',
            '~' => '^',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

fn same_name(a: &str, b: &str) -> bool {
    a.len() == b.len() && irc_lower(a) == irc_lower(b)
}

/// Whether a server's reason for a kick, kill or disconnect says we flooded.
fn is_flood_reason(reason: &str) -> bool {
    let reason = reason.to_ascii_lowercase();
    [
        "flood",
        "excess",
        "sendq",
        "recvq",
        "receive buffer",
        "throttl",
    ]
    .iter()
    .any(|w| reason.contains(w))
}

/// Splits the bytes read from the server into lines, bounded: a line
/// longer than [`MAX_INCOMING_LINE`] is dropped, not buffered.
#[derive(Debug, Default)]
struct LineBuffer {
    buf: Vec<u8>,
    /// Scanned so far without finding a line end.
    scanned: usize,
    /// Inside an overlong line: drop everything up to the next line end.
    discarding: bool,
}

impl LineBuffer {
    /// The next complete line, without its line ending.
    fn next_line(&mut self) -> Option<String> {
        loop {
            match self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
                Some(at) => {
                    let end = self.scanned + at;
                    let line: Vec<u8> = self.buf.drain(..=end).collect();
                    self.scanned = 0;
                    if std::mem::take(&mut self.discarding) || line.len() > MAX_INCOMING_LINE + 2 {
                        debug!(
                            bytes = line.len(),
                            "dropped an overlong line from the IRC server"
                        );
                        continue;
                    }
                    let text = String::from_utf8_lossy(&line);
                    return Some(text.trim_end_matches(['\r', '\n']).to_owned());
                }
                None => {
                    if self.buf.len() > MAX_INCOMING_LINE + 2 {
                        self.buf.clear();
                        self.discarding = true;
                    }
                    self.scanned = self.buf.len();
                    return None;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Rates: token bucket and backoff.
// ---------------------------------------------------------------------------

/// Lines may leave at `rate` per second after a burst of `burst`.
#[derive(Debug, Clone)]
struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: f64, burst: u32, now: Instant) -> TokenBucket {
        TokenBucket {
            rate,
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    /// Whether a line may leave now.
    fn ready(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= 1.0
    }

    /// Takes a token, if there is one.
    fn take(&mut self, now: Instant) -> bool {
        let ready = self.ready(now);
        if ready {
            self.tokens -= 1.0;
        }
        ready
    }

    /// When the next token is there.
    fn next_token(&mut self, now: Instant) -> Instant {
        self.refill(now);
        if self.tokens >= 1.0 {
            return now;
        }
        let wait = (1.0 - self.tokens) / self.rate;
        now + Duration::from_secs_f64(wait.min(3_600.0)) + Duration::from_millis(1)
    }

    /// The server said we flooded: half the rate, and start from empty.
    fn slow_down(&mut self, now: Instant) -> f64 {
        self.refill(now);
        self.rate = (self.rate / 2.0).max(MIN_RATE.min(self.rate));
        self.tokens = 0.0;
        self.rate
    }
}

/// Capped exponential backoff with jitter.
#[derive(Debug, Clone)]
struct Backoff {
    initial: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    /// The delay before the next attempt: between half and all of
    /// `initial * 2^failures`, capped at `max`.
    fn next_delay(&mut self, rng: &mut fastrand::Rng) -> Duration {
        let factor = 2u32.saturating_pow(self.failures.min(30));
        let full = self.initial.saturating_mul(factor).min(self.max);
        self.failures = self.failures.saturating_add(1);
        full / 2 + full.mul_f64(rng.f64() / 2.0)
    }

    fn reset(&mut self) {
        self.failures = 0;
    }
}

// ---------------------------------------------------------------------------
// The connection loop.
// ---------------------------------------------------------------------------

/// A line posted whose delivery is not yet known.
#[derive(Debug)]
struct InFlight {
    line: String,
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
}

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
    rejoin_failures: u32,
    close_reason: Option<String>,
}

struct Driver {
    cfg: IrcChat,
    io: TransportIo,
    bucket: TokenBucket,
    backoff: Backoff,
    rng: fastrand::Rng,
    /// Posts taken from the node, not yet written: one at most, but all
    /// that is left once the node shuts down.
    held: VecDeque<String>,
    /// Lines to post again, oldest first, before `held`.
    resend: VecDeque<String>,
    /// Lines written whose delivery is not known yet, oldest first.
    in_flight: VecDeque<InFlight>,
    /// The id of our next `PING`.
    next_ping: u64,
    /// Set when the node shut down: by when everything must be posted.
    shutdown_by: Option<Instant>,
    /// Who was in the channel when we last left it.
    peers_before: BTreeMap<String, String>,
    status: IrcStatus,
}

impl Driver {
    fn new(cfg: IrcChat, io: TransportIo) -> Driver {
        let now = Instant::now();
        Driver {
            bucket: TokenBucket::new(cfg.rate, cfg.burst, now),
            backoff: Backoff {
                initial: cfg.backoff_initial,
                max: cfg.backoff_max,
                failures: 0,
            },
            rng: fastrand::Rng::new(),
            held: VecDeque::new(),
            resend: VecDeque::new(),
            in_flight: VecDeque::new(),
            next_ping: 1,
            shutdown_by: None,
            peers_before: BTreeMap::new(),
            status: cfg.status.clone(),
            io,
            cfg,
        }
    }

    async fn run(mut self) -> Result<()> {
        info!(
            node = %self.io.node_name(),
            server = %self.cfg.server,
            nick = %self.cfg.nick,
            channel = %self.cfg.channel,
            max_text = self.cfg.max_message_len(),
            "IRC transport starting"
        );
        loop {
            let end = self.connection().await;
            {
                let mut status = self.status.lock();
                status.joined = false;
                status.members.clear();
                if let End::Lost(reason) = &end {
                    status.last_disconnect = Some(reason.clone());
                }
            }
            match end {
                End::Done => {
                    info!(node = %self.io.node_name(), "IRC transport stopped: everything posted");
                    return Ok(());
                }
                End::GaveUp => return Err(self.give_up()),
                End::Lost(reason) => {
                    self.requeue(Instant::now());
                    if self.finished() {
                        return Ok(());
                    }
                    let delay = self.backoff.next_delay(&mut self.rng);
                    warn!(
                        node = %self.io.node_name(),
                        server = %self.cfg.server,
                        reason = %reason,
                        retry_in = ?delay,
                        to_resend = self.resend.len(),
                        "IRC connection lost; reconnecting"
                    );
                    if !self.pause(delay).await {
                        return Err(self.give_up());
                    }
                    if self.finished() {
                        return Ok(());
                    }
                }
            }
        }
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

    fn give_up(&self) -> Error {
        let lines = self.unposted();
        error!(
            node = %self.io.node_name(),
            lines,
            timeout = ?self.cfg.shutdown_timeout,
            "IRC transport shut down with lines it could not post (or not confirm)"
        );
        Error::transport(format!(
            "the IRC transport shut down with {lines} chat line(s) it could not post or confirm \
             within the shutdown timeout of {:?}",
            self.cfg.shutdown_timeout
        ))
    }

    /// Takes what `next_post` gave.
    fn accept_post(&mut self, post: Option<String>) {
        match post {
            Some(line) => self.held.push_back(line),
            None => {
                if self.shutdown_by.is_none() {
                    debug!(node = %self.io.node_name(), "node shutting down: flushing the IRC queue");
                    self.shutdown_by = Some(Instant::now() + self.cfg.shutdown_timeout);
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
        let mut again: VecDeque<String> = self
            .in_flight
            .drain(..)
            .filter(|f| {
                f.confirmed
                    .is_none_or(|at| now.saturating_duration_since(at) < settle)
            })
            .map(|f| f.line)
            .collect();
        again.append(&mut self.resend);
        self.resend = again;
    }

    /// One connection, from connecting to its end.
    async fn connection(&mut self) -> End {
        let server = self.cfg.server.clone();
        let connect = timeout(
            self.cfg.connect_timeout,
            TcpStream::connect(server.as_str()),
        );
        tokio::pin!(connect);
        let stream = loop {
            let pull = self.may_take();
            let give_up = self.shutdown_by.unwrap_or_else(far_future);
            let check = Instant::now() + CLOSE_CHECK;
            tokio::select! {
                result = &mut connect => match result {
                    Ok(Ok(stream)) => break stream,
                    Ok(Err(e)) => return End::Lost(format!("cannot connect to {server}: {e}")),
                    Err(_) => return End::Lost(format!("connecting to {server} timed out")),
                },
                post = self.io.next_post(), if pull => self.accept_post(post),
                _ = sleep_until(give_up) => return End::GaveUp,
                _ = sleep_until(check), if !pull => {}
            }
        };
        let _ = stream.set_nodelay(true);
        let (mut reader, mut writer) = stream.into_split();
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
            rejoin_failures: 0,
            close_reason: None,
        };
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
                written = writer.write(&out), if !out.is_empty() => match written {
                    Ok(0) => break self.closed(&conn, "the server stopped taking data".into()),
                    Ok(n) => { out.drain(..n); }
                    Err(e) => break self.closed(&conn, format!("write error: {e}")),
                },
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
        if self.cfg.echo_message {
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
            self.in_flight.pop_front();
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
            let line = match self.resend.pop_front() {
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
        conn.rejoin_failures = 0;
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

    /// Left the channel without disconnecting (kicked, or refused a post):
    /// what was in flight goes again after rejoining.
    fn left_channel(&mut self, conn: &mut Conn, now: Instant, why: &str) {
        if conn.joined {
            self.peers_before = conn.members.clone();
        }
        conn.joined = false;
        conn.members.clear();
        {
            let mut status = self.status.lock();
            status.joined = false;
            status.members.clear();
        }
        self.requeue(now);
        let full = self
            .cfg
            .backoff_initial
            .saturating_mul(2u32.saturating_pow(conn.rejoin_failures.min(30)));
        let delay = full.min(self.cfg.backoff_max);
        conn.rejoin_failures = conn.rejoin_failures.saturating_add(1);
        warn!(node = %self.io.node_name(), channel = %self.cfg.channel, why, rejoin_in = ?delay, "not in the IRC channel");
        conn.phase = Phase::Rejoining { at: now + delay };
    }

    fn flood(&mut self, reason: &str) {
        if is_flood_reason(reason) {
            let rate = self.bucket.slow_down(Instant::now());
            self.status.lock().flood_slowdowns += 1;
            warn!(node = %self.io.node_name(), reason, lines_per_second = rate, "the IRC server says we flooded: slowing down");
        }
    }

    fn peers_back(&self, conn: &Conn) -> bool {
        self.peers_before
            .keys()
            .all(|k| conn.members.contains_key(k))
    }

    fn publish_members(&self, conn: &Conn) {
        self.status.lock().members = conn.members.clone();
    }

    /// Handles one line from the server. `Some` ends the connection.
    async fn handle(&mut self, conn: &mut Conn, out: &mut Vec<u8>, line: &str) -> Option<End> {
        let now = Instant::now();
        conn.last_rx = now;
        let Some(msg) = Message::parse(line) else {
            if !line.trim().is_empty() {
                debug!(line, "unreadable line from the IRC server");
            }
            return None;
        };
        let channel = self.cfg.channel.clone();
        let channel = channel.as_str();
        let me = conn.nick.clone();
        let is_me = |nick: &str| same_name(nick, &me);
        match msg.command.to_ascii_uppercase().as_str() {
            "PING" => push_line(out, &format!("PONG :{}", msg.last())),
            "PONG" => {
                let token = msg.last();
                if let Some(id) = token
                    .strip_prefix(PING_TOKEN)
                    .and_then(|id| id.parse::<u64>().ok())
                {
                    if conn.ping.is_some_and(|(out_id, _)| id >= out_id) {
                        conn.ping = None;
                    }
                    for f in self.in_flight.iter_mut() {
                        if f.cover > id {
                            break;
                        }
                        f.confirmed.get_or_insert(now);
                    }
                }
            }
            "PRIVMSG" if same_name(msg.param(0), channel) => {
                let nick = msg.nick()?;
                let text = msg.param(1);
                if self.io.receive(ChatMessage::new(nick, text)).await.is_err() {
                    debug!("the node stopped taking chat messages");
                }
            }
            "001" => {
                if let Some(nick) = msg.params.first() {
                    conn.nick = (*nick).to_owned();
                }
                {
                    let mut status = self.status.lock();
                    status.connections += 1;
                    status.nick = Some(conn.nick.clone());
                }
                info!(node = %self.io.node_name(), server = %self.cfg.server, nick = %conn.nick, "registered with the IRC server");
                self.join(conn, out, now);
            }
            "CAP" => {
                let sub = msg.param(1).to_ascii_uppercase();
                match sub.as_str() {
                    "LS" => {
                        // `CAP * LS * :caps` continues; `CAP * LS :caps` ends.
                        let more = msg.params.len() >= 4 && msg.param(2) == "*";
                        conn.cap_ls.push_str(msg.last());
                        conn.cap_ls.push(' ');
                        if !more {
                            let offered = conn
                                .cap_ls
                                .split_whitespace()
                                .any(|c| c.split('=').next() == Some("echo-message"));
                            if offered && self.cfg.echo_message {
                                push_line(out, "CAP REQ :echo-message");
                            } else {
                                push_line(out, "CAP END");
                            }
                        }
                    }
                    "ACK" => {
                        if msg.last().split_whitespace().any(|c| c == "echo-message") {
                            debug!("the IRC server echoes our messages (echo-message)");
                        }
                        push_line(out, "CAP END");
                    }
                    "NAK" => push_line(out, "CAP END"),
                    _ => {}
                }
            }
            // Nick in use, or unavailable: try an alternate while registering.
            "433" | "436" | "437" if matches!(conn.phase, Phase::Registering { .. }) => {
                conn.alternate += 1;
                if conn.alternate > MAX_ALTERNATE_NICKS {
                    return Some(End::Lost(format!(
                        "the nick {} and its alternates are taken",
                        self.cfg.nick
                    )));
                }
                conn.nick = format!("{}{}", self.cfg.nick, "_".repeat(conn.alternate));
                warn!(node = %self.io.node_name(), nick = %conn.nick, "nick taken; trying an alternate");
                push_line(out, &format!("NICK {}", conn.nick));
            }
            "432" => {
                error!(node = %self.io.node_name(), nick = %conn.nick, reason = msg.last(), "the IRC server refuses the nick");
                return Some(End::Lost(format!(
                    "the server refuses the nick {}: {}",
                    conn.nick,
                    msg.last()
                )));
            }
            "464" | "465" => {
                error!(node = %self.io.node_name(), reason = msg.last(), "the IRC server refuses us (password or ban)");
                conn.close_reason = Some(msg.last().to_owned());
            }
            "JOIN" => {
                let nick = msg.nick()?;
                if !same_name(msg.param(0), channel) {
                    return None;
                }
                if is_me(nick) {
                    conn.members.clear();
                    conn.joined = true;
                    self.check_prefix(&msg);
                } else {
                    conn.members.insert(irc_lower(nick), nick.to_owned());
                    self.publish_members(conn);
                    if matches!(conn.phase, Phase::WaitingForPeers { .. }) && self.peers_back(conn)
                    {
                        self.ready(conn, now);
                    }
                }
            }
            // `353 me = #channel :@op +voice nick`
            "353"
                if msg.params.len() >= 3 && same_name(msg.param(msg.params.len() - 2), channel) =>
            {
                for name in msg.last().split_whitespace() {
                    let nick = name
                        .split('!')
                        .next()
                        .unwrap_or(name)
                        .trim_start_matches(['@', '+', '%', '&', '~', '!', '.']);
                    if !nick.is_empty() && !is_me(nick) {
                        conn.members.insert(irc_lower(nick), nick.to_owned());
                    }
                }
                self.publish_members(conn);
            }
            "366"
                if same_name(msg.param(1), channel)
                    && matches!(conn.phase, Phase::Joining { .. }) =>
            {
                conn.joined = true;
                self.publish_members(conn);
                if self.peers_back(conn) {
                    self.ready(conn, now);
                } else {
                    info!(
                        node = %self.io.node_name(),
                        waiting_for = ?self.peers_before.values().collect::<Vec<_>>(),
                        "rejoined; waiting for the peers of before the outage"
                    );
                    conn.phase = Phase::WaitingForPeers {
                        deadline: now + self.cfg.peer_wait,
                    };
                }
            }
            "PART" => {
                let nick = msg.nick()?;
                if same_name(msg.param(0), channel) {
                    if is_me(nick) {
                        self.left_channel(conn, now, "parted");
                    } else {
                        conn.members.remove(&irc_lower(nick));
                        self.publish_members(conn);
                    }
                }
            }
            "KICK" => {
                let target = msg.param(1);
                if same_name(msg.param(0), channel) {
                    if is_me(target) {
                        let reason = msg.param(2).to_owned();
                        self.flood(&reason);
                        self.left_channel(conn, now, &format!("kicked: {reason}"));
                    } else {
                        conn.members.remove(&irc_lower(target));
                        self.publish_members(conn);
                    }
                }
            }
            "QUIT" => {
                if let Some(nick) = msg.nick() {
                    conn.members.remove(&irc_lower(nick));
                    self.publish_members(conn);
                }
            }
            "NICK" => {
                let old = msg.nick()?;
                let new = msg.param(0);
                if is_me(old) {
                    conn.nick = new.to_owned();
                    self.status.lock().nick = Some(conn.nick.clone());
                } else if conn.members.remove(&irc_lower(old)).is_some() {
                    conn.members.insert(irc_lower(new), new.to_owned());
                    self.publish_members(conn);
                }
            }
            "KILL" => {
                self.flood(msg.last());
                conn.close_reason = Some(format!("killed: {}", msg.last()));
            }
            "ERROR" => {
                self.flood(msg.last());
                conn.close_reason = Some(msg.last().to_owned());
            }
            // Cannot post to the channel (moderated, banned, not joined).
            "404" | "442" if same_name(msg.param(1), channel) && conn.phase == Phase::Ready => {
                let why = format!("the server refused a post: {}", msg.last());
                self.left_channel(conn, now, &why);
            }
            // Cannot join: full, invite only, banned, bad key, no such channel.
            "403" | "405" | "471" | "473" | "474" | "475" | "476" | "477"
                if matches!(conn.phase, Phase::Joining { .. }) =>
            {
                error!(node = %self.io.node_name(), channel = %self.cfg.channel, reason = msg.last(), "cannot join the IRC channel");
                let why = format!("cannot join: {}", msg.last());
                self.left_channel(conn, now, &why);
            }
            _ => {}
        }
        None
    }

    /// Warns if the prefix the server shows for us is longer than allowed for.
    fn check_prefix(&self, msg: &Message<'_>) {
        let Some(prefix) = msg.prefix else { return };
        let relayed =
            1 + prefix.len() + " PRIVMSG ".len() + self.cfg.channel.len() + " :".len() + 2;
        if relayed + self.cfg.max_message_len() > LINE_LIMIT {
            warn!(
                node = %self.io.node_name(),
                prefix,
                max_host_len = self.cfg.max_host_len,
                "the server's prefix for us is longer than allowed for: long posts may be cut; \
                 raise IrcChat::max_host_len"
            );
        }
    }
}

fn push_line(out: &mut Vec<u8>, line: &str) {
    out.extend_from_slice(line.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn far_future() -> Instant {
    far_future_from(Instant::now())
}

fn far_future_from(now: Instant) -> Instant {
    now + Duration::from_secs(86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_shapes_servers_send() {
        let m = Message::parse(":nick!user@host PRIVMSG #chan :hello there").unwrap();
        assert_eq!(m.prefix, Some("nick!user@host"));
        assert_eq!(m.nick(), Some("nick"));
        assert_eq!(m.command, "PRIVMSG");
        assert_eq!(m.params, ["#chan", "hello there"]);

        let m = Message::parse("PING :irc.example.net").unwrap();
        assert_eq!(
            (m.prefix, m.command, m.params.as_slice()),
            (None, "PING", &["irc.example.net"][..])
        );

        let m =
            Message::parse("@time=2024-01-01T00:00:00Z;msgid=x :s 353 me = #c :@op +v plain\r\n")
                .unwrap();
        assert_eq!(m.tags, Some("time=2024-01-01T00:00:00Z;msgid=x"));
        assert_eq!(m.command, "353");
        assert_eq!(m.params, ["me", "=", "#c", "@op +v plain"]);

        // Extra spaces, a trailing that starts with ':' and is empty.
        let m = Message::parse(":s  001   me  :").unwrap();
        assert_eq!(m.params, ["me", ""]);
        let m = Message::parse(":n!u@h PRIVMSG #c ::colon").unwrap();
        assert_eq!(m.params, ["#c", ":colon"]);
        // No trailing marker: the last middle parameter.
        let m = Message::parse(":n!u@h JOIN #c").unwrap();
        assert_eq!((m.nick(), m.params.as_slice()), (Some("n"), &["#c"][..]));
        // A server prefix has no nick part to speak of, but reads as one.
        let m = Message::parse(":irc.example.net NOTICE * :hi").unwrap();
        assert_eq!(m.nick(), Some("irc.example.net"));
        // Frames keep their control characters.
        let m = Message::parse(":a!b@c PRIVMSG #c :\u{2}1234QUJD\u{3}").unwrap();
        assert_eq!(m.params[1], "\u{2}1234QUJD\u{3}");
    }

    #[test]
    fn refuses_lines_without_a_command_and_never_panics() {
        for line in [
            "",
            " ",
            ":prefix-only",
            "@tags-only",
            "@t :p",
            ":p :x",
            "Ä",
            "PRIV MSG",
            ":x !cmd a",
        ] {
            let parsed = Message::parse(line);
            assert!(parsed.is_none_or(|m| !m.command.is_empty()), "{line:?}");
        }
        assert!(Message::parse(":p !x").is_none());
        // Arbitrary bytes as lossy text.
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..2_000 {
            let len = rng.usize(0..64);
            let bytes: Vec<u8> = (0..len)
                .map(|_| *rng.choice(b" :@!#\r\nAZaz09\x01\x02").unwrap())
                .collect();
            let line = String::from_utf8_lossy(&bytes);
            let _ = Message::parse(&line);
        }
    }

    #[test]
    fn case_mapping_is_rfc1459() {
        assert_eq!(irc_lower("Smokey[A]\\~"), "smokey{a}|^");
        assert!(same_name("#SmOkEy", "#smokey"));
        assert!(!same_name("#smokey", "#smokey2"));
    }

    #[test]
    fn line_buffer_splits_and_bounds_lines() {
        let mut lines = LineBuffer::default();
        lines.buf.extend_from_slice(b"PING :a\r\nPING :b\npartial");
        assert_eq!(lines.next_line().as_deref(), Some("PING :a"));
        assert_eq!(lines.next_line().as_deref(), Some("PING :b"));
        assert_eq!(lines.next_line(), None);
        lines.buf.extend_from_slice(b" line\r\n");
        assert_eq!(lines.next_line().as_deref(), Some("partial line"));

        // An overlong line is dropped, in pieces, and what follows is read.
        lines
            .buf
            .extend(std::iter::repeat_n(b'x', MAX_INCOMING_LINE + 10));
        assert_eq!(lines.next_line(), None);
        assert!(lines.buf.is_empty());
        lines.buf.extend_from_slice(b"xxxx\r\nPING :c\r\n");
        assert_eq!(lines.next_line().as_deref(), Some("PING :c"));
        // Invalid UTF-8 is replaced, not refused.
        lines.buf.extend_from_slice(b"PRIVMSG #c :\xff\r\n");
        assert_eq!(lines.next_line().as_deref(), Some("PRIVMSG #c :\u{fffd}"));
    }

    #[test]
    fn token_bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(2.0, 3, t0);
        assert!(bucket.take(t0) && bucket.take(t0) && bucket.take(t0));
        assert!(!bucket.take(t0));
        let next = bucket.next_token(t0);
        assert!(next > t0 + Duration::from_millis(490) && next < t0 + Duration::from_millis(520));
        assert!(!bucket.take(t0 + Duration::from_millis(400)));
        assert!(bucket.take(t0 + Duration::from_millis(500)));
        // Ten seconds idle refill to the burst, not beyond.
        let later = t0 + Duration::from_secs(10);
        assert_eq!((0..5).filter(|_| bucket.take(later)).count(), 3);
        // A flood complaint halves the rate and empties the bucket.
        assert_eq!(bucket.slow_down(later), 1.0);
        assert!(!bucket.take(later));
        assert!(bucket.take(later + Duration::from_secs(1)));
        for _ in 0..20 {
            bucket.slow_down(later);
        }
        assert_eq!(bucket.rate, MIN_RATE);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let mut rng = fastrand::Rng::with_seed(1);
        let mut backoff = Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(10),
            failures: 0,
        };
        let delays: Vec<Duration> = (0..8).map(|_| backoff.next_delay(&mut rng)).collect();
        for (i, d) in delays.iter().enumerate() {
            let full = Duration::from_secs(1 << i.min(4)).min(Duration::from_secs(10));
            assert!(
                *d >= full / 2 && *d <= full,
                "attempt {i}: {d:?} for {full:?}"
            );
        }
        backoff.reset();
        assert!(backoff.next_delay(&mut rng) <= Duration::from_secs(1));
    }

    #[test]
    fn the_text_budget_leaves_room_for_the_relayed_prefix() {
        let chat = IrcChat::new("127.0.0.1:6667", "smokey-henders", "#smokey");
        let text = chat.max_message_len();
        let nick = format!("smokey-henders{}", "_".repeat(MAX_ALTERNATE_NICKS));
        let relayed = format!(
            ":{nick}!~socketsci@{} PRIVMSG #smokey :{}\r\n",
            "h".repeat(63),
            "x".repeat(text)
        );
        assert_eq!(relayed.len(), LINE_LIMIT);
        assert_eq!(
            IrcChat::new("s:1", "n", "#c")
                .max_host_len(10)
                .max_message_len(),
            LINE_LIMIT - ":n___!~socketsci@ PRIVMSG #c :\r\n".len() - 10
        );
    }

    #[test]
    fn settings_are_checked() {
        let ok = || IrcChat::new("127.0.0.1:6667", "smokey-a", "#smokey");
        assert!(ok().check().is_ok());
        assert!(ok().password("sekrit").channel_key("k").check().is_ok());
        for bad in [
            IrcChat::new("", "smokey", "#c"),
            IrcChat::new("h:1", "", "#c"),
            IrcChat::new("h:1", "1smokey", "#c"),
            IrcChat::new("h:1", "smo key", "#c"),
            IrcChat::new("h:1", "smokey", "smokey"),
            IrcChat::new("h:1", "smokey", "#a,#b"),
            ok().password("two words"),
            ok().send_rate(0.0, 5),
            ok().send_rate(f64::NAN, 5),
            ok().send_rate(1.0, 0),
            ok().resend_window(0),
            ok().username("a@b"),
            ok().reconnect_backoff(Duration::ZERO, Duration::from_secs(1)),
        ] {
            let err = bad.check().expect_err(&format!("{bad:?}"));
            assert!(
                matches!(
                    err,
                    Error::InvalidOption { option, .. } if option.starts_with("IrcChat::")
                ),
                "{err}"
            );
        }
    }

    #[test]
    fn flood_reasons_are_recognised() {
        for reason in [
            "Excess Flood",
            "Max SendQ exceeded",
            "Receive buffer space exhausted",
            "flooding",
        ] {
            assert!(is_flood_reason(reason), "{reason}");
        }
        for reason in [
            "Ping timeout: 120 seconds",
            "Client closed connection",
            "Server going down",
        ] {
            assert!(!is_flood_reason(reason), "{reason}");
        }
    }
}
