//! [`IrcChat`]: the instances of a bot meet in a channel of a real IRC
//! server.
//!
//! The protocol subset a bot needs (registration, `CAP`, `JOIN`, names,
//! `PRIVMSG`, `PING`) is small, so the transport owns it: a parser for
//! RFC 1459/2812 lines with IRCv3 tags, a token bucket, and a connection
//! loop that reconnects, rejoins and resends. See [`IrcChat`] for what it
//! promises.
//!
//! The files: this one holds the settings (the builder's options); `check`
//! the `Transport` implementation, with the settings' checks; `status` the
//! handle on the connection's state; `proto` the protocol (parsing and
//! writing lines, case mapping, with `crate::rate`'s token bucket); `tls`
//! the TLS client; `driver` the connection loop, with one connection in
//! `driver/connection`, its posts and timers in `driver/posting`, and what
//! each line from the server does in `driver/events`.

mod check;
mod driver;
mod proto;
mod status;
mod tls;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use status::IrcStatus;

/// The longest IRC line, CR LF included (RFC 2812 2.3).
const LINE_LIMIT: usize = 512;
/// Nick suffixes (`_`, `__`, `___`) tried when the nick is taken; the
/// length budget of a line leaves room for them.
const MAX_ALTERNATE_NICKS: usize = 3;

/// A connection to a channel on an IRC server: a [`Transport`](crate::Transport).
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
/// appended (a pattern ending in `*` still matches). Anyone can take a
/// free nick: with [`sasl`](IrcChat::sasl), the account of a message is
/// instead the services account the server vouches for (IRCv3
/// `account-tag`), and messages from no account are never trusted.
///
/// # TLS and SASL
///
/// [`tls`](IrcChat::tls) verifies the server's certificate (no way to skip
/// it); [`sasl`](IrcChat::sasl) and [`sasl_external`](IrcChat::sasl_external)
/// log in. [`NodeBuilder::start`](crate::NodeBuilder::start) waits for the
/// first connection's registration, and fails on what reconnecting cannot
/// mend: a certificate that does not verify, a login refused, a server
/// without SASL or `account-tag`. If the server cannot be reached at all,
/// `start` returns and the transport keeps trying.
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
/// :text\r\n`, at most 512 bytes. [`max_message_len`](crate::Transport::max_message_len)
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
/// passed, then `QUIT`. It gives up after the node's
/// [`shutdown_timeout`](crate::NodeBuilder::shutdown_timeout) (30 s): the
/// lines not posted by then are dropped, logged with their count, and
/// `shutdown` returns [`Error::Unposted`](crate::Error::Unposted) saying how many envelopes were
/// not posted. The queue does not outlive the process.
///
/// # Not covered
///
/// SASL mechanisms other than `PLAIN` and `EXTERNAL`. A node that is
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
    shutdown_timeout: Option<Duration>,
    connect_timeout: Duration,
    echo_message: bool,
    max_host_len: usize,
    tls: bool,
    tls_ca_file: Option<PathBuf>,
    sasl: Option<Sasl>,
    status: IrcStatus,
}

/// How to log in with SASL.
enum Sasl {
    /// `PLAIN`: an account and its password.
    Plain { account: String, password: String },
    /// `EXTERNAL`: the client certificate of the TLS connection (PEM).
    External { cert_pem: Vec<u8>, key_pem: Vec<u8> },
}

impl Sasl {
    fn mechanism(&self) -> &'static str {
        match self {
            Sasl::Plain { .. } => "PLAIN",
            Sasl::External { .. } => "EXTERNAL",
        }
    }
}

impl fmt::Debug for IrcChat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IrcChat")
            .field("server", &self.server)
            .field("nick", &self.nick)
            .field("channel", &self.channel)
            .field("has_password", &self.password.is_some())
            .field("tls", &self.tls)
            .field("tls_ca_file", &self.tls_ca_file)
            .field(
                "sasl",
                &self.sasl.as_ref().map(|sasl| match sasl {
                    Sasl::Plain { account, .. } => format!("PLAIN {account} (password redacted)"),
                    Sasl::External { .. } => "EXTERNAL (client certificate)".to_owned(),
                }),
            )
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
    /// fails with [`Error::InvalidOption`](crate::Error::InvalidOption), naming the method whose value
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
            shutdown_timeout: None,
            connect_timeout: Duration::from_secs(20),
            echo_message: true,
            max_host_len: 63,
            tls: false,
            tls_ca_file: None,
            sasl: None,
            status: IrcStatus::default(),
        }
    }

    /// The server password (`PASS`), if the server wants one.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Connects with TLS, verifying the server's certificate against the
    /// usual roots (Mozilla's, from `webpki-roots`) and its name against
    /// the host of the server address. A certificate that does not verify
    /// fails [`start`](crate::NodeBuilder::start) with an error that names
    /// the host and why; there is no setting that skips the check.
    /// Reconnects use TLS too. Networks listen for TLS on port 6697.
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Also trusts the certificate authorities in the PEM file at `path`
    /// (a private network's CA, a test CA), besides the usual roots. Turns
    /// on [`tls`](IrcChat::tls). The file is read when the node starts; an
    /// unreadable one fails `start`.
    pub fn tls_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls = true;
        self.tls_ca_file = Some(path.into());
        self
    }

    /// Logs in to the services account `account` with SASL `PLAIN`, and
    /// trusts accounts, not nicks: a chat message's account is then the
    /// account the server vouches for (its IRCv3 `account` tag), so trust
    /// patterns ([`NodeBuilder::trust`](crate::NodeBuilder::trust)) match
    /// account names, a message from someone not logged in is never
    /// trusted (counted in [`Stats::untrusted`](crate::Stats::untrusted)),
    /// and the node trusts its own account by default: every instance
    /// logged into it, whatever its nick.
    ///
    /// [`start`](crate::NodeBuilder::start) fails with the server's reason
    /// if the login is refused, and saying so if the server offers no SASL
    /// or no `account-tag`; it never connects without logging in. The
    /// password is sent inside SASL only, never logged, and redacted from
    /// `Debug`. Use it with [`tls`](IrcChat::tls): without TLS the password
    /// crosses the network readable.
    pub fn sasl(mut self, account: impl Into<String>, password: impl Into<String>) -> Self {
        self.sasl = Some(Sasl::Plain {
            account: account.into(),
            password: password.into(),
        });
        self
    }

    /// Logs in with SASL `EXTERNAL`: the server knows the account by the
    /// TLS client certificate (CertFP; register its fingerprint with the
    /// network's services first, `/msg NickServ CERT ADD` on Atheme).
    /// `cert_pem` and `key_pem` are the certificate chain and private key,
    /// in PEM. Needs [`tls`](IrcChat::tls). Trust works as with
    /// [`sasl`](IrcChat::sasl), except that the account is known only once
    /// the server names it: give it to
    /// [`NodeBuilder::trust`](crate::NodeBuilder::trust) (the node trusts
    /// no account by default).
    pub fn sasl_external(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.sasl = Some(Sasl::External {
            cert_pem: cert_pem.into(),
            key_pem: key_pem.into(),
        });
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
    /// what is queued: the same bound as
    /// [`NodeBuilder::shutdown_timeout`](crate::NodeBuilder::shutdown_timeout)
    /// (default 30 s), which every transport honours; set here, it can
    /// only shorten it for this transport. Prefer the node's.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = Some(timeout);
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
