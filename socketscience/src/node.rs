//! [`Node`]: one instance in the room. It frames, trusts, decodes,
//! deduplicates, dispatches and counts, once, for every transport.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{error, info};

use crate::default;
use crate::error::{Error, Result};
use crate::handler::{self, Handler, Registered, Registry};
use crate::message::{self, Message};
use crate::presence::{self, Peer, Presence};
use crate::receive::Dispatcher;
use crate::receive::ReassemblyLimits;
use crate::security::{Keys, Trust};
use crate::send::envelope::{BodyWriter, Origin, Payload};
use crate::send::outbox::{Outbox, Refused};
use crate::send::Poster;
use crate::stats::{Counters, Stats};
use crate::sync::lock;
use crate::transport::{Transport, TransportIo};
use crate::wire::{self, BodyLimits, Codec, RawValueRef};

/// The highest [`NodeBuilder::max_depth`]: serde_json's own limit.
const MAX_DEPTH: usize = 128;

/// Builds a [`Node`]: its transport and options. From [`Node::builder`].
#[must_use = "a builder does nothing until `.start().await`"]
pub struct NodeBuilder {
    name: String,
    transport: Option<Box<dyn Transport>>,
    trust: Vec<String>,
    codec: Option<Codec>,
    python_peers: bool,
    seed: Option<u64>,
    outgoing_capacity: usize,
    inbound_capacity: usize,
    max_envelope_bytes: usize,
    body_limits: BodyLimits,
    reassembly: ReassemblyLimits,
    make_default: bool,
    secrets: Vec<Vec<u8>>,
    /// Set by [`NodeBuilder::unsigned`]: no secret, whatever the environment.
    unsigned: bool,
    max_skew: Duration,
    presence: presence::Options,
    /// Failover (see `failover`).
    failover: Option<crate::failover::Failover>,
}

impl fmt::Debug for NodeBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeBuilder")
            .field("name", &self.name)
            .field("has_transport", &self.transport.is_some())
            .field("trust", &self.trust)
            .field("codec", &self.codec)
            .field("secrets", &self.secrets.len())
            .field("unsigned", &self.unsigned)
            .finish_non_exhaustive()
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
    /// unread and counted in [`Stats::untrusted`].
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
    /// posts for it.
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.presence.heartbeat = interval;
        self
    }

    /// How long a peer stays in [`Node::peers`] without being heard
    /// (default: three heartbeat intervals).
    pub fn peer_timeout(mut self, timeout: Duration) -> Self {
        self.presence.peer_timeout = Some(timeout);
        self
    }

    /// How many of its latest envelopes the node keeps to post again when
    /// a receiver missed them (default 1 024; zero: none).
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
    /// up, counts them in [`Stats::lost`] and runs what came after them
    /// (default 60 s).
    pub fn repair_timeout(mut self, timeout: Duration) -> Self {
        self.presence.repair_timeout = timeout;
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

    /// Starts the node's tasks on the current tokio runtime.
    ///
    /// Fails if there is no transport, if an option or a transport setting
    /// ([`Transport::check`]) is out of range, or if two message types in
    /// the program claim one kind.
    pub async fn start(self) -> Result<Node> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::InvalidOption {
            option: "start",
            reason: "call it inside a tokio runtime".into(),
        })?;
        let make_default = self.make_default;
        let (node, transport, io, dispatcher) = self.build()?;
        let transport_task = runtime.spawn({
            let name = node.shared.name.clone();
            async move {
                let result = transport.run(io).await;
                if let Err(e) = &result {
                    error!(node = %name, error = %e, "the chat transport stopped");
                }
                result
            }
        });
        let dispatch_task = runtime.spawn(dispatcher.run());
        let presence_task = runtime.spawn(presence::run(node.shared.clone()));
        if node.shared.election.is_some() {
            // Failover: ends by itself when the node shuts down.
            runtime.spawn(crate::failover::run(node.shared.clone()));
        }
        *lock(&node.shared.tasks) = Some(Tasks {
            transport: transport_task,
            dispatcher: dispatch_task,
            presence: presence_task,
        });
        if make_default {
            default::offer(&node);
        }
        let shared = &node.shared;
        info!(
            node = %shared.name,
            account = %shared.account,
            session = format_args!("{:016x}", shared.session),
            codec = %shared.codec,
            python_peers = shared.config.python_peers.is_some(),
            signed = !shared.config.keys.is_empty(),
            handlers = shared.read_registry().handler_count(),
            "socketscience node started"
        );
        Ok(node)
    }

    /// Checks the options and builds the node's parts, without starting
    /// anything.
    pub(crate) fn build(self) -> Result<(Node, Box<dyn Transport>, TransportIo, Dispatcher)> {
        let NodeBuilder {
            name,
            transport,
            trust,
            codec,
            python_peers,
            seed,
            outgoing_capacity,
            inbound_capacity,
            max_envelope_bytes,
            body_limits,
            reassembly,
            make_default: _,
            secrets,
            unsigned,
            max_skew,
            presence,
            failover,
        } = self;
        let transport = transport.ok_or_else(|| Error::NoTransport { name: name.clone() })?;
        transport.check()?;
        message::check_kinds()?;
        let max_len = transport.max_message_len();
        let lines = transport.lines();
        let (codec, python_peers) = codec_and_room(python_peers, codec, lines, max_len)?;
        if wire::split_into_chunks(lines, 0, "AAAAAAAA", max_len).is_none() {
            return Err(Error::InvalidOption {
                option: "Transport::max_message_len",
                reason: format!(
                    "{max_len} bytes cannot carry a chunk; a transport must allow at least {}",
                    wire::chunk_overhead(lines, 2) + 4
                ),
            });
        }
        for (option, value) in [
            ("outgoing_capacity", outgoing_capacity),
            ("inbound_capacity", inbound_capacity),
            ("max_envelope_bytes", max_envelope_bytes),
            ("max_kinds", body_limits.max_kinds),
            ("max_depth", body_limits.max_depth),
            ("repair_window", presence.repair_window.as_millis() as usize),
            (
                "repair_timeout",
                presence.repair_timeout.as_millis() as usize,
            ),
        ] {
            if value == 0 {
                return Err(Error::InvalidOption {
                    option,
                    reason: "it must be at least 1".into(),
                });
            }
        }
        if body_limits.max_depth > MAX_DEPTH {
            return Err(Error::InvalidOption {
                option: "max_depth",
                reason: format!(
                    "{} is more than {MAX_DEPTH}: serde_json reads no deeper, and \
                     values are walked recursively",
                    body_limits.max_depth
                ),
            });
        }
        let election = match failover {
            None => None,
            Some(_) if presence.heartbeat.is_zero() => {
                return Err(Error::InvalidOption {
                    option: "failover",
                    reason: "the election travels in heartbeats: set a heartbeat \
                             interval (NodeBuilder::heartbeat) above zero"
                        .into(),
                })
            }
            Some(config) => {
                let e = crate::failover::Election::new(
                    name.as_str().into(),
                    config,
                    presence.heartbeat,
                );
                if e.lease() <= presence.heartbeat {
                    return Err(Error::InvalidOption {
                        option: "Failover::lease",
                        reason: format!(
                            "a lease of {:?} is not longer than the heartbeat interval ({:?}): \
                             standbys would claim while the active lives; make it at least \
                             two intervals",
                            e.lease(),
                            presence.heartbeat
                        ),
                    });
                }
                Some(Arc::new(e))
            }
        };
        let mut rng = seed.map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed);
        let session = rng.u64(..);
        let account: Arc<str> = transport.account().into();
        let trust = Trust::new(if trust.is_empty() {
            vec![account.to_string()]
        } else {
            trust
        });
        let keys = if unsigned {
            if !secrets.is_empty() {
                return Err(Error::InvalidOption {
                    option: "unsigned",
                    reason: "the builder was also given a secret: call either \
                             `secret` (to sign) or `unsigned` (not to), not both"
                        .into(),
                });
            }
            Keys::default()
        } else if secrets.is_empty() {
            Keys::from_env()
        } else {
            Keys::new(secrets)
        };
        let (in_tx, in_rx) = mpsc::channel(inbound_capacity);
        let registry = Registry::from_inventory();
        let shared = Arc::new(NodeShared {
            name: name.as_str().into(),
            account: account.clone(),
            session,
            origin: Origin::new(&name, session),
            codec,
            outgoing_capacity,
            config: Config {
                trust,
                keys,
                max_skew,
                max_envelope_bytes,
                body_limits,
                reassembly,
                python_peers,
            },
            counters: Counters::default(),
            outbox: Outbox::new(outgoing_capacity),
            registry: RwLock::new(Arc::new(registry)),
            registry_version: AtomicU64::new(0),
            tasks: Mutex::new(None),
            presence: Presence::new(presence),
            election,
            asks: Default::default(),
        });
        let node = Node { shared };
        let io = TransportIo {
            inbound: in_tx,
            shared: node.shared.clone(),
            poster: Poster::new(
                max_len,
                lines,
                rng.fork(),
                crate::repair::History::new(
                    presence.history,
                    presence.history_age.as_millis() as u64,
                ),
            ),
        };
        let dispatcher = Dispatcher::new(node.clone(), in_rx);
        Ok((node, transport, io, dispatcher))
    }
}

/// One instance of the bot in the chat room.
///
/// Cheap to clone: every clone is the same node. Dropping the handles does
/// not stop it; [`shutdown`](Node::shutdown) does, after flushing.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> socketscience::Result<()> {
/// use socketscience::{message, Context, LocalChat, Node};
///
/// #[message("ping")]
/// #[derive(Debug)]
/// pub struct Ping { pub location: String, pub timestamp: f64 }
///
/// let chat = LocalChat::new();
/// let node = Node::builder("Henders/EC2").transport(chat.join("smokey")).start().await?;
/// node.register(|ping: Ping, cx: Context| {
///     println!("{} is alive (seen by {})", ping.location, cx.node().name());
/// });
/// node.send(Ping { location: "Henders/EC2".into(), timestamp: 1.0 }).await?;
/// node.shutdown().await?; // flushes, runs what is queued, then stops
/// assert_eq!(node.stats().dispatched, 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Node {
    pub(crate) shared: Arc<NodeShared>,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.shared.name)
            .field("account", &self.shared.account)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Node {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}
impl Eq for Node {}

pub(crate) struct NodeShared {
    pub(crate) name: Arc<str>,
    pub(crate) account: Arc<str>,
    pub(crate) session: u64,
    origin: Origin,
    pub(crate) codec: Codec,
    outgoing_capacity: usize,
    pub(crate) config: Config,
    pub(crate) counters: Counters,
    pub(crate) outbox: Outbox,
    registry: RwLock<Arc<Registry>>,
    pub(crate) registry_version: AtomicU64,
    tasks: Mutex<Option<Tasks>>,
    pub(crate) presence: Presence,
    /// Failover: the node's election, when it takes part in one.
    pub(crate) election: Option<Arc<crate::failover::Election>>,
    /// Questions: this node's questions in flight.
    pub(crate) asks: crate::ask::Waiters,
}

/// What the receive path checks against; fixed at start.
pub(crate) struct Config {
    pub(crate) trust: Trust,
    pub(crate) keys: Keys,
    pub(crate) max_skew: Duration,
    pub(crate) max_envelope_bytes: usize,
    pub(crate) body_limits: BodyLimits,
    pub(crate) reassembly: ReassemblyLimits,
    /// With [`NodeBuilder::python_peers`]: the most body bytes one post
    /// carries (each envelope goes alone, whole, in one post).
    pub(crate) python_peers: Option<usize>,
}

/// The codec a node writes, and, with `python_peers`, the most body bytes
/// one post carries; fails on options `python_peers` cannot keep.
fn codec_and_room(
    python_peers: bool,
    codec: Option<Codec>,
    lines: wire::Lines,
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
    if lines == wire::Lines::Single {
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

impl NodeShared {
    /// The metadata of this node's envelopes.
    pub(crate) fn origin(&self) -> &Origin {
        &self.origin
    }

    pub(crate) fn read_registry(&self) -> Arc<Registry> {
        crate::sync::read(&self.registry).clone()
    }
}

struct Tasks {
    transport: JoinHandle<Result<()>>,
    dispatcher: JoinHandle<()>,
    presence: JoinHandle<()>,
}

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
            failover: None,
        }
    }

    /// This instance's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The chat account this node posts as.
    pub fn account(&self) -> &str {
        &self.shared.account
    }

    /// This process's session id: random per start, sent with every envelope.
    pub fn session(&self) -> u64 {
        self.shared.session
    }

    /// The codec this node writes.
    pub fn codec(&self) -> Codec {
        self.shared.codec
    }

    /// The other instances heard within the peer timeout
    /// ([`NodeBuilder::peer_timeout`]): a post of any kind, heartbeats
    /// included, counts. Not this node itself.
    pub fn peers(&self) -> Vec<Peer> {
        self.with_roles(self.shared.presence.peers())
    }

    /// The peer list, as a [`tokio::sync::watch::Receiver`] that is told
    /// when a peer joins, leaves (not heard within the timeout), restarts
    /// (a new session replaces its entry) or, with failover, changes role: `changed().await` waits for
    /// that. Read the list with [`peers`](Node::peers) (the watched value
    /// also holds peers that are about to leave).
    pub fn watch_peers(&self) -> tokio::sync::watch::Receiver<Vec<Peer>> {
        self.shared.presence.watch()
    }

    /// A snapshot of the node's counters.
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    /// Sends a message, or an [`Envelope`](crate::Envelope) of several, to
    /// every node in the room, this one included. Waits while the outgoing
    /// queue is full; returns once the envelope is queued (it is posted,
    /// and this node's own handlers run, in order, soon after).
    pub async fn send(&self, payload: impl Payload) -> Result<()> {
        let writer = self.encode(&payload)?;
        let shared = &self.shared;
        match shared.outbox.push(writer, &shared.counters.sent).await {
            Ok(()) => Ok(()),
            Err(_) => Err(self.stopped()),
        }
    }

    /// Like [`send`](Node::send) but never waits: fails with
    /// [`Error::QueueFull`] when the outgoing queue is full. This is what
    /// `broadcast()` uses; it works from sync code.
    pub fn try_send(&self, payload: impl Payload) -> Result<()> {
        let writer = self.encode(&payload)?;
        let shared = &self.shared;
        match shared.outbox.try_push(writer, &shared.counters.sent) {
            Ok(()) => Ok(()),
            Err(Refused::Full(..)) => Err(Error::QueueFull {
                name: shared.name.to_string(),
                capacity: shared.outgoing_capacity,
            }),
            Err(Refused::Closed) => Err(self.stopped()),
        }
    }

    fn stopped(&self) -> Error {
        Error::NodeStopped {
            name: self.shared.name.to_string(),
        }
    }

    /// Encodes the messages (the metadata follows when the outbox numbers
    /// the envelope).
    fn encode(&self, payload: &impl Payload) -> Result<BodyWriter> {
        let shared = &self.shared;
        let mut writer = BodyWriter::new(shared.codec);
        payload.write_messages(&mut writer)?;
        let size = writer.len() + crate::send::envelope::overhead(shared.origin());
        if size > shared.config.max_envelope_bytes {
            return Err(Error::TooLarge {
                size,
                max: shared.config.max_envelope_bytes,
            });
        }
        if let Some(room) = shared.config.python_peers {
            let signed = !shared.config.keys.is_empty();
            if let Err(reason) = writer.check_for_python(shared.origin(), signed, room) {
                return Err(Error::NotForPython {
                    name: shared.name.to_string(),
                    reason,
                });
            }
        }
        Ok(writer)
    }

    /// Registers a handler at run time, like SocketScience's
    /// `register(kind, callback)`: a closure or function taking the message
    /// and optionally a [`Context`], sync or async, returning `()` or
    /// `Result<(), E: Display>`. It runs for messages this node reads from
    /// now on.
    pub fn register<M, Args, H>(&self, handler: H)
    where
        M: Message,
        Args: 'static,
        H: Handler<M, Args>,
    {
        let name = std::any::type_name::<H>();
        let call = Arc::new(move |raw: RawValueRef<'_>, cx: &Context| {
            handler::call::<M, Args, H>(&handler, raw, cx)
        });
        self.register_erased(M::KIND, name, call);
    }

    /// Adds an erased handler of `kind` to the registry (`register`, and
    /// `answer` of questions).
    pub(crate) fn register_erased(
        &self,
        kind: &'static str,
        name: &'static str,
        call: Arc<handler::ErasedFn>,
    ) {
        let mut registry = crate::sync::write(&self.shared.registry);
        let mut updated = Registry::clone(&registry);
        updated.add(
            kind,
            Registered {
                name: name.into(),
                call,
            },
        );
        *registry = Arc::new(updated);
        self.shared.registry_version.fetch_add(1, Ordering::Release);
    }

    /// Runs `future` with this node as the default node of `broadcast()`
    /// calls made inside it (on this task), whatever the process's default
    /// is. Tests that run in parallel in one process use it so their
    /// broadcasts do not cross.
    pub async fn scope<F: std::future::Future>(&self, future: F) -> F::Output {
        default::scope(self.clone(), future).await
    }

    /// Makes this node the process's default node.
    pub fn make_default(&self) {
        default::replace(self);
    }

    /// Stops the node: refuses new sends, posts everything already queued,
    /// runs this node's handlers for everything already received, then
    /// returns. If this node was the process's default node, there is none
    /// afterwards (until another node starts). Calling it again does
    /// nothing. Returns the transport's error if it failed.
    pub async fn shutdown(&self) -> Result<()> {
        self.shared.outbox.close();
        default::withdraw(self);
        let tasks = lock(&self.shared.tasks).take();
        let Some(tasks) = tasks else {
            return Ok(());
        };
        let transport = tasks.transport.await;
        tasks.presence.abort();
        if let Err(e) = tasks.dispatcher.await {
            error!(node = %self.shared.name, error = %e, "the dispatcher task failed");
        }
        info!(node = %self.shared.name, "socketscience node stopped");
        match transport {
            Ok(result) => result,
            Err(e) => Err(Error::transport(e)),
        }
    }

    /// Kinds this node has handlers for, sorted.
    pub fn handled_kinds(&self) -> Vec<&'static str> {
        let mut kinds = self.shared.read_registry().kinds();
        kinds.sort_unstable();
        kinds
    }
}

/// What a handler knows about the message it handles.
#[derive(Clone, Debug)]
pub struct Context {
    node: Node,
    sender: Sender,
    /// Questions: the question the handler runs for, if it was asked.
    asked: Option<crate::ask::Asked>,
}

impl Context {
    pub(crate) fn new(node: Node, sender: Sender) -> Context {
        Context {
            node,
            sender,
            asked: None,
        }
    }

    /// This context, for a question with id `id` from the sender.
    pub(crate) fn asking(&self, id: u64) -> Context {
        let asker = self.sender.instance.clone();
        Context {
            node: self.node.clone(),
            sender: self.sender.clone(),
            asked: asker.map(|asker| crate::ask::Asked { asker, id }),
        }
    }

    pub(crate) fn asked(&self) -> Option<&crate::ask::Asked> {
        self.asked.as_ref()
    }

    /// The node running the handler; send through it with `cx.node().send(..)`.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Who sent the message.
    pub fn sender(&self) -> &Sender {
        &self.sender
    }
}

/// The sender of a message: its chat account and, when the envelope names
/// it, its instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sender {
    account: Arc<str>,
    instance: Option<Arc<str>>,
    own: bool,
}

impl Sender {
    pub(crate) fn new(account: Arc<str>, instance: Option<Arc<str>>) -> Sender {
        Sender {
            account,
            instance,
            own: false,
        }
    }

    pub(crate) fn own(account: Arc<str>, instance: Arc<str>) -> Sender {
        Sender {
            account,
            instance: Some(instance),
            own: true,
        }
    }

    /// The chat account that posted the envelope.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The sending instance's name, if the envelope carries one (Python
    /// SocketScience's do not).
    pub fn instance(&self) -> Option<&str> {
        self.instance.as_deref()
    }

    /// Whether this node itself sent the message.
    pub fn is_self(&self) -> bool {
        self.own
    }

    /// Whether this is another node's `account` and `instance` (the same
    /// shared names, as usual, are recognised without comparing text).
    pub(crate) fn is(&self, account: &str, instance: Option<&str>) -> bool {
        let same = |a: &str, b: &str| std::ptr::eq(a, b) || a == b;
        !self.own
            && same(&self.account, account)
            && match (self.instance.as_deref(), instance) {
                (Some(a), Some(b)) => same(a, b),
                (None, None) => true,
                _ => false,
            }
    }
}
