//! The builder's options: each one's default ([`Node::builder`]) and
//! setter, and the check of the codec with `python_peers`.

use std::sync::Arc;
use std::time::Duration;

use super::NodeBuilder;
use crate::error::{Error, Result};
use crate::node::Node;
use crate::presence;
use crate::receive::ReassemblyLimits;
use crate::transport::Transport;
use crate::wire::{self, BodyLimits, Codec};

/// The highest [`NodeBuilder::max_depth`]: serde_json's own limit.
pub(super) const MAX_DEPTH: usize = 128;

impl Node {
    /// Starts building the node of instance `name` (such as `"Henders/EC2"`).
    /// The name travels with every envelope; give each instance its own.
    pub fn builder(name: impl Into<String>) -> NodeBuilder {
        NodeBuilder {
            name: name.into(),
            transport: None,
            trust: Vec::new(),
            codec: None,
            python_peers: false,
            seed: None,
            outgoing_capacity: 10_000,
            inbound_capacity: 1_024,
            max_envelope_bytes: 256 << 10,
            body_limits: BodyLimits::default(),
            reassembly: ReassemblyLimits::default(),
            make_default: true,
            secrets: Vec::new(),
            unsigned: false,
            max_skew: Duration::from_secs(300),
            presence: presence::Options::default(),
            shared: Default::default(),
            failover: None,
            state: Default::default(),
            shutdown_timeout: Duration::from_secs(30),
            read_only: false,
            observer: None,
            meta: None,
        }
    }
}

impl NodeBuilder {
    /// The chat room to use: [`LocalChat::join`](crate::LocalChat::join), or
    /// any other [`Transport`].
    pub fn transport(mut self, transport: impl Transport) -> Self {
        self.transport = Some(Box::new(transport));
        self
    }

    /// Trusts envelopes posted by chat accounts matching `pattern` (`*`
    /// matches any run of characters, `?` one character). Call it once per
    /// pattern. Without any call, a node trusts only its transport's own
    /// account; once called, only the accounts given (add the own account
    /// if it should stay trusted). Everything else in the room is dropped
    /// unread and counted in [`Stats::untrusted`](crate::Stats::untrusted).
    pub fn trust(mut self, pattern: impl Into<String>) -> Self {
        self.trust.push(pattern.into());
        self
    }

    /// The codec this node writes: [`Codec::Json`] (default) between Rust
    /// instances, [`Codec::MessagePack`] (what Python SocketScience writes).
    /// Every node reads both. When Python instances share the room,
    /// MessagePack alone is not enough: use
    /// [`python_peers`](NodeBuilder::python_peers), which sets it.
    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = Some(codec);
        self
    }

    /// Makes this node safe in a room shared with SmokeDetector's Python
    /// SocketScience instances: nothing it posts can make one of them raise
    /// (which stops that instance from reading the room) or skip what was
    /// meant for it. The node then
    ///
    /// - writes [`Codec::MessagePack`] (setting [`Codec::Json`] too fails at
    ///   `start`);
    /// - posts each envelope alone, whole, exactly as `send` was given it:
    ///   never merged with another, never a batch, never in chunks;
    /// - refuses at send, with [`Error::NotForPython`], an envelope that
    ///   does not fit one chat message, one that Python's `msgpack.loads`
    ///   refuses (a map key that is not a string, values nested more than
    ///   1 024 deep), and one that makes SmokeDetector's
    ///   `SocketScience.handle` raise: a `ping`, or a `metasmoke_state` of
    ///   `"down"` or `"up"`, without a `location` kind.
    ///
    /// It needs a chat of multi-line messages (Python reads only frames
    /// starting with `".\n\x02"`). Without it (the default), a node writes
    /// JSON unless told otherwise and shares posts between queued envelopes,
    /// which is faster between Rust nodes; such a node logs a warning when
    /// it reads a Python instance's envelope. See docs/wire-format.md,
    /// "Rooms shared with Python instances".
    pub fn python_peers(mut self) -> Self {
        self.python_peers = true;
        self
    }

    /// Seeds the node's randomness (its session id, the frame digits, chunk
    /// ids) so that its output is reproducible: for tests and golden
    /// vectors only. Two processes with one seed share a session id and
    /// drop each other's envelopes as duplicates.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// How many envelopes may wait to be posted (default 10 000). Past it,
    /// `broadcast()` fails with [`Error::QueueFull`] and `send().await` waits.
    pub fn outgoing_capacity(mut self, envelopes: usize) -> Self {
        self.outgoing_capacity = envelopes;
        self
    }

    /// How many received chat messages may wait for dispatch (default 1 024).
    /// Past it, the transport waits.
    pub fn inbound_capacity(mut self, messages: usize) -> Self {
        self.inbound_capacity = messages;
        self
    }

    /// The largest envelope, encoded, this node sends or accepts (default
    /// 256 KiB). Larger ones are refused when sent, dropped when received.
    pub fn max_envelope_bytes(mut self, bytes: usize) -> Self {
        self.max_envelope_bytes = bytes;
        self
    }

    /// Most kinds one received envelope may carry (default 64).
    pub fn max_kinds(mut self, kinds: usize) -> Self {
        self.body_limits.max_kinds = kinds;
        self
    }

    /// Deepest nesting of maps and lists a received value may have, each
    /// map or list one level, in either codec (default 32, at most 128).
    pub fn max_depth(mut self, depth: usize) -> Self {
        self.body_limits.max_depth = depth;
        self
    }

    /// Bounds on chunked envelopes held while their pieces arrive.
    pub fn reassembly_limits(mut self, limits: ReassemblyLimits) -> Self {
        self.reassembly = limits;
        self
    }

    /// Whether this node may become the process's default node, the one
    /// `broadcast()` uses (default `true`: the first node started becomes
    /// it, while no other is).
    pub fn default_node(mut self, allowed: bool) -> Self {
        self.make_default = allowed;
        self
    }

    /// Signs every envelope this node sends with HMAC-SHA256 under
    /// `secret`, and rejects what the room posts unsigned, forged, stale or
    /// replayed (each counted under its own reason). Call it again to accept
    /// a second secret during a rotation: the first one given signs, every
    /// one given verifies. Without any call the node reads the secret from
    /// the environment variable `SOCKETSCIENCE_SECRET` (and a second one
    /// from `SOCKETSCIENCE_SECRET_PREVIOUS`), and runs unsigned if neither
    /// is set (or if [`unsigned`](NodeBuilder::unsigned) says so). Secrets
    /// are never logged.
    ///
    /// Every node of a fleet needs the secret; Python SocketScience
    /// receivers still read signed envelopes (the signature rides in the
    /// reserved `_sig` key), but cannot send to signing nodes.
    pub fn secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.secrets.push(secret.as_ref().to_vec());
        self
    }

    /// Runs this node unsigned on purpose, whatever the environment holds:
    /// it ignores `SOCKETSCIENCE_SECRET` and `SOCKETSCIENCE_SECRET_PREVIOUS`,
    /// signs nothing it posts and accepts envelopes without a signature
    /// (signed ones too, unchecked), as a node does when no secret is set
    /// anywhere. For a tool or a test that shares a process, or a machine,
    /// with a signing fleet but must not sign. Together with
    /// [`secret`](NodeBuilder::secret), `start` fails with
    /// [`Error::InvalidOption`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> socketscience::Result<()> {
    /// use socketscience::{LocalChat, Node};
    ///
    /// let chat = LocalChat::new();
    /// let node = Node::builder("scratch")
    ///     .transport(chat.join("smokey"))
    ///     .unsigned()
    ///     .start()
    ///     .await?;
    /// node.shutdown().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn unsigned(mut self) -> Self {
        self.unsigned = true;
        self
    }

    /// How far a signed envelope's timestamp may be from this node's clock
    /// before it is rejected as stale (default 5 minutes).
    pub fn max_clock_skew(mut self, skew: Duration) -> Self {
        self.max_skew = skew;
        self
    }

    /// How often the node says it is alive when it posts nothing else
    /// (default 30 s; zero: never). A heartbeat is a small post of reserved
    /// keys naming the instance, its session and how many envelopes it
    /// posted: peers list the node ([`Node::peers`]) and receivers notice
    /// what they missed. Every post counts as one, so a busy node adds no
    /// posts for it. Each wait is drawn between three quarters and five
    /// quarters of the interval (the mean is the interval), so that
    /// instances started together drift apart; the active instance of a
    /// failover heartbeats at exactly the interval.
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.presence.heartbeat = interval;
        self
    }

    /// How long a peer stays in [`Node::peers`] without being heard
    /// (default: three heartbeat intervals), while the presence budget
    /// does not stretch the interval; stretched, it grows as the interval
    /// does ([`Node::peer_timeout`]).
    pub fn peer_timeout(mut self, timeout: Duration) -> Self {
        self.presence.peer_timeout = Some(timeout);
        self
    }

    /// What the whole fleet's presence may post per minute, all instances
    /// together, however many there are. Each instance derives its
    /// heartbeat interval from the live peers it hears (no post
    /// coordinates it), as RTCP does (RFC 3550 section 6.2). The intervals
    /// aim at nine tenths of the budget, `B' = 0.9 × budget` (drawn at
    /// random, some minutes take a little more): with `n` instances and a
    /// heartbeat interval `h`, an instance heartbeats every
    /// `max(h, n × 60 s / B')` on average (drawn between half and one and
    /// a half times that, never below `h`, once stretched; between three
    /// quarters and five quarters of `h` before); with failover the active
    /// instance keeps `h` (its lease needs it) and the `n - 1` standbys
    /// share what is left, `max(h, (n - 1) × 60 s / (B' - 60 s / h))`.
    /// The peer timeout stretches as the interval does
    /// ([`Node::peer_timeout`]). Heartbeats are posted only by an instance
    /// that posted nothing else meanwhile (the active one of a failover
    /// excepted): a busy instance spends nothing of the budget. A
    /// stretched fleet answers a newcomer within its interval, each
    /// instance at a moment drawn at random, instead of at once.
    ///
    /// Default: an eighth of what the transport says its room takes from
    /// the account ([`Transport::posts_per_minute`]: `LocalChat::throttle`,
    /// 60 a minute on Stack Exchange, so 7.5); no bound when the transport
    /// does not say (IRC, Matrix, an unthrottled `LocalChat`). With the
    /// default heartbeat (30 s), a fleet of three on Stack Exchange is not
    /// stretched (it heartbeats as without a budget). Fails at start unless
    /// above zero and finite.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> socketscience::Result<()> {
    /// use std::time::Duration;
    /// use socketscience::{LocalChat, Node};
    ///
    /// let chat = LocalChat::new();
    /// // Alone, it heartbeats every 30 s: a peer unheard for 90 s leaves.
    /// let node = Node::builder("Henders/EC2").transport(chat.join("smokey"))
    ///     .presence_budget(6.0).start().await?;
    /// assert_eq!(node.peer_timeout(), Duration::from_secs(90));
    /// # node.shutdown().await
    /// # }
    /// ```
    pub fn presence_budget(mut self, posts_per_minute: f64) -> Self {
        self.presence.budget = Some(posts_per_minute);
        self
    }

    /// Bounds the jobs of shared handlers (`#[handler(shared)]`,
    /// [`Node::register_shared`]) this node holds for takeover, until the
    /// instance chosen to run each confirms it: at most `max_jobs` (default
    /// 16 384), each at most `max_age` (default four peer timeouts). A job
    /// that falls out of the bound is logged and counted in
    /// [`Stats::shared_dropped`](crate::Stats::shared_dropped): should its
    /// instance be gone without having run it, nobody runs it.
    pub fn shared_held(mut self, max_jobs: usize, max_age: Duration) -> Self {
        self.shared = crate::shared::Options {
            max_held: max_jobs,
            max_age: Some(max_age),
        };
        self
    }

    /// How many of its latest envelopes the node keeps to post again when
    /// a receiver missed them (default 16 384, within 4 MiB of bytes: a
    /// minute of a fast stream; zero: none).
    pub fn repair_history(mut self, envelopes: usize) -> Self {
        self.presence.history = envelopes;
        self
    }

    /// How long the node keeps an envelope to post again (default 10
    /// minutes).
    pub fn repair_history_age(mut self, age: Duration) -> Self {
        self.presence.history_age = age;
        self
    }

    /// The repair round (default 5 s): an envelope is posted again at most
    /// once per window however many ask, and a receiver waits up to half
    /// of it (at random) before asking, and a window before asking again.
    pub fn repair_window(mut self, window: Duration) -> Self {
        self.presence.repair_window = window;
        self
    }

    /// How long a receiver waits for missing envelopes before it gives them
    /// up, counts them in [`Stats::lost`](crate::Stats::lost) and runs what came after them
    /// (default 60 s).
    pub fn repair_timeout(mut self, timeout: Duration) -> Self {
        self.presence.repair_timeout = timeout;
        self
    }

    /// Gives the node's handlers a value of their own, any
    /// `Send + Sync + 'static` type: they reach it with
    /// [`cx.state::<T>()`](crate::Context::state) (and code holding the
    /// node with [`Node::state`]), without statics or closures. Call it
    /// once per type (several types are fine); a second value of one type
    /// replaces the first. Wrap what handlers change in a `Mutex` or an
    /// atomic.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> socketscience::Result<()> {
    /// use std::sync::atomic::AtomicU64;
    /// use socketscience::{LocalChat, Node};
    ///
    /// struct Config { greeting: String }
    /// let chat = LocalChat::new();
    /// let node = Node::builder("Henders/EC2")
    ///     .transport(chat.join("smokey"))
    ///     .state(Config { greeting: "hi".into() })
    ///     .state(AtomicU64::new(0)) // a second type
    ///     .start()
    ///     .await?;
    /// assert_eq!(node.state::<Config>().unwrap().greeting, "hi");
    /// node.shutdown().await
    /// # }
    /// ```
    pub fn state<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.state.insert(value);
        self
    }

    /// What this instance says about itself to the others: any serde
    /// value (its version, commit, host), at most
    /// [`MAX_META_BYTES`](crate::peers::MAX_META_BYTES) as JSON. It travels in
    /// heartbeats, when it changes (and to newcomers); the others read it
    /// with [`Peer::meta`](crate::peers::Peer::meta). Change it later with
    /// [`Node::set_meta`]. A value that does not serialise or is too large
    /// fails `start()` with [`Error::InvalidOption`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> socketscience::Result<()> {
    /// use socketscience::{data, LocalChat, Node};
    ///
    /// #[data]
    /// pub struct Build { pub version: String, pub commit: String }
    ///
    /// let chat = LocalChat::new();
    /// let node = Node::builder("Henders/EC2")
    ///     .transport(chat.join("smokey"))
    ///     .meta(Build { version: "1.4.2".into(), commit: "9f3c2e1".into() })
    ///     .start()
    ///     .await?;
    /// # node.shutdown().await
    /// # }
    /// ```
    pub fn meta<T: serde::Serialize>(mut self, value: T) -> Self {
        self.meta = Some(crate::presence::canonical_meta(&value));
        self
    }

    /// Takes part in electing one active instance among the live ones
    /// (see [`Failover`](crate::Failover), [`Node::role`]). Needs heartbeats
    /// ([`heartbeat`](NodeBuilder::heartbeat) not zero); the node then
    /// heartbeats every interval even when it posts other things.
    pub fn failover(mut self, failover: crate::failover::Failover) -> Self {
        self.failover = Some(failover);
        self
    }

    /// The bound on [`Node::shutdown`] (default 30 s, within the 90 s a
    /// service manager such as systemd waits before it kills a service).
    /// Every transport honours it, a [`Transport`] of your own too: what
    /// the chat has not taken by then (a server down, a room in timeout) is
    /// dropped, logged with its count, counted in
    /// [`Stats::unposted`](crate::Stats::unposted), and `shutdown` returns
    /// [`Error::Unposted`] saying how many envelopes were not posted. Then
    /// the node's handlers still running are given up on too.
    /// (`IrcChat::shutdown_timeout` is this same bound, set for IRC only.)
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Makes the node read-only: it joins the room, reads, checks and
    /// dispatches as any node does, and posts nothing, ever: no envelope
    /// (`send` fails with [`Error::InvalidOption`]), no heartbeat, no
    /// repair request, no election vote. The fleet never hears it, so it
    /// never counts as a peer or takes part in an election. It still
    /// follows the fleet's elections from their heartbeats
    /// ([`Peer::role`](crate::peers::Peer::role), [`Peer::term`](crate::peers::Peer::term));
    /// give it the fleet's [`heartbeat`](NodeBuilder::heartbeat) interval
    /// so that it drops a peer after the same timeout as the fleet. What
    /// `socketscience watch` (the CLI) runs; not with
    /// [`failover`](NodeBuilder::failover).
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// Calls `observer` with every envelope the node accepts from the room
    /// (trusted, signed if it has a secret, not seen before, in its
    /// sender's order), before its handlers run: who sent it, its sequence
    /// number, whether it came through repair, its messages of every
    /// kind. It runs on the node's dispatcher: keep it short.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> socketscience::Result<()> {
    /// use socketscience::{LocalChat, Node};
    ///
    /// let chat = LocalChat::new();
    /// let watcher = Node::builder("watch")
    ///     .transport(chat.join("smokey"))
    ///     .read_only()
    ///     .observe(|e| {
    ///         for (kind, _) in e.messages() {
    ///             println!("{:?} #{:?}: {kind}", e.sender().instance(), e.seq());
    ///         }
    ///     })
    ///     .start()
    ///     .await?;
    /// # watcher.shutdown().await
    /// # }
    /// ```
    pub fn observe(
        mut self,
        observer: impl Fn(&crate::node::Observed<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }
}

/// The codec a node writes, and, with `python_peers`, the most body bytes
/// one post carries; fails on options `python_peers` cannot keep.
pub(super) fn codec_and_room(
    python_peers: bool,
    codec: Option<Codec>,
    lines: wire::LineMode,
    max_len: usize,
) -> Result<(Codec, Option<usize>)> {
    if !python_peers {
        return Ok((codec.unwrap_or_default(), None));
    }
    let refuse = |option, reason: &str| {
        Err(Error::InvalidOption {
            option,
            reason: reason.into(),
        })
    };
    if codec == Some(Codec::Json) {
        return refuse(
            "codec",
            "a node with `python_peers()` writes MessagePack, the only codec Python \
             SocketScience reads; remove `.codec(Codec::Json)`",
        );
    }
    if lines == wire::LineMode::Single {
        return refuse(
            "python_peers",
            "this transport's chat messages cannot hold a newline, and Python SocketScience \
             reads only frames starting with \".\\n\\x02\"; use a chat of multi-line \
             messages (Stack Exchange chat, LocalChat)",
        );
    }
    // A frame is its start, four digits and the end around the base64.
    let room = max_len.saturating_sub(wire::FRAME_START.len() + 5) / 4 * 3;
    Ok((Codec::MessagePack, Some(room)))
}
