//! [`NodeBuilder::start`]: the options checked together (and the presence
//! budget resolved from the transport), the node's parts built
//! ([`NodeBuilder::build`]) and its tasks spawned.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn, Instrument as _};

use super::options::{codec_and_room, MAX_DEPTH};
use super::{NodeBuilder, Parts};
use crate::core::envelope::Origin;
use crate::core::outbox::Outbox;
use crate::core::Core;
use crate::error::{Error, Result};
use crate::message;
use crate::node::default;
use crate::node::dispatch::Handlers;
use crate::node::handler::Registry;
use crate::node::{Node, NodeShared, Tasks};
use crate::presence::{self, Presence};
use crate::receive::{Checks, Receiver};
use crate::security::{Keys, Trust};
use crate::send::Poster;
use crate::stats::Counters;
use crate::sync::lock;
use crate::transport::{Transport, TransportIo};
use crate::wire;

impl NodeBuilder {
    /// Starts the node's tasks on the current tokio runtime.
    ///
    /// Fails if there is no transport, if an option or a transport setting
    /// ([`Transport::check`]) is out of range, if two message types in
    /// the program claim one kind, or if the transport's first connection
    /// fails in a way trying again cannot mend, for a transport that
    /// [`connects_before_start`](Transport::connects_before_start) (an
    /// `IrcChat` whose server's certificate does not
    /// verify, or whose SASL login is refused).
    pub async fn start(self) -> Result<Node> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::InvalidOption {
            option: "start",
            reason: "call it inside a tokio runtime".into(),
        })?;
        let make_default = self.make_default;
        let Parts {
            node,
            transport,
            mut io,
            receiver,
        } = self.build()?;
        let connected = if transport.connects_before_start() {
            let (tx, rx) = oneshot::channel();
            io.connected = Some(tx);
            Some(rx)
        } else {
            None
        };
        let span = |task: &'static str| task_span(&node, task);
        let mut transport_task = runtime.spawn(
            {
                let name = node.core().name.clone();
                async move {
                    let result = transport.run(io).await;
                    if let Err(e) = &result {
                        error!(node = %name, error = %e, "the chat transport stopped");
                    }
                    result
                }
            }
            .instrument(span("transport")),
        );
        if let Some(connected) = connected {
            // The first connection, before anything else starts: what it
            // cannot do (a certificate, a login) fails `start`.
            let outcome = tokio::select! {
                biased;
                outcome = connected => outcome.unwrap_or_else(|_| {
                    Err(Error::transport("the chat transport stopped before its first connection"))
                }),
                // `run` ended before it reported: its error says why.
                ended = &mut transport_task => match ended {
                    Ok(Err(e)) => Err(e),
                    _ => Err(Error::transport(
                        "the chat transport stopped before its first connection",
                    )),
                },
            };
            if let Err(e) = outcome {
                transport_task.abort();
                return Err(e);
            }
        }
        let dispatch_task = runtime.spawn(receiver.run().instrument(span("dispatcher")));
        let presence_task = runtime.spawn(
            crate::node::presence::run(node.shared.core.clone()).instrument(span("presence")),
        );
        if node.core().election.is_some() && !node.core().read_only {
            // Failover: ends by itself when the node shuts down.
            runtime.spawn(
                crate::node::failover::run(node.shared.core.clone()).instrument(span("failover")),
            );
        }
        #[cfg(feature = "metrics")]
        runtime.spawn(crate::node::metrics::run(node.clone()).instrument(span("metrics")));
        *lock(&node.shared.tasks) = Some(Tasks {
            transport: transport_task,
            dispatcher: dispatch_task,
            presence: presence_task,
        });
        if make_default {
            default::offer(&node);
        }
        let core = node.core();
        info!(
            node = %core.name,
            account = %core.account,
            session = format_args!("{:016x}", core.session),
            codec = %core.codec,
            python_peers = core.python_peers.is_some(),
            signed = !core.keys.is_empty(),
            handlers = node.shared.read_registry().handler_count(),
            "socketscience node started"
        );
        Ok(node)
    }

    /// Checks the options and builds the node's parts, without starting
    /// anything.
    pub(crate) fn build(self) -> Result<Parts> {
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
            shared,
            failover,
            state,
            shutdown_timeout,
            read_only,
            observer,
            meta,
        } = self;
        let transport = transport.ok_or_else(|| Error::NoTransport { name: name.clone() })?;
        let meta = meta.transpose().map_err(|reason| Error::InvalidOption {
            option: "meta",
            reason: format!("the meta of node `{name}` cannot be sent: {reason}"),
        })?;
        transport.check()?;
        message::check_kinds()?;
        let presence = resolve_budget(&name, presence, failover.is_some(), &*transport)?;
        let max_len = transport.max_message_len();
        let lines = transport.lines();
        let (codec, python_peers) = codec_and_room(python_peers, codec, lines, max_len)?;
        // (Bound and signed: the longest header a node writes.)
        let sign = |_: &[u8]| [0; wire::CHUNK_TAG_LEN];
        let binding = wire::Binding {
            session: 0,
            signer: Some(&sign),
        };
        if wire::split_into_bound_chunks(lines, 0, binding, "AAAAAAAA", max_len).is_none() {
            return Err(Error::InvalidOption {
                option: "Transport::max_message_len",
                reason: format!(
                    "{max_len} bytes cannot carry a chunk; a transport must allow at least {}",
                    wire::chunk_overhead(lines, 2) + wire::binding_len(true) + 4
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
            Some(_) if read_only => {
                return Err(Error::InvalidOption {
                    option: "read_only",
                    reason: "a read-only node posts nothing, so it cannot take part in an \
                             election: remove `.failover(..)` or `.read_only()`"
                        .into(),
                })
            }
            // It follows the fleet's elections, never claiming (it never
            // ticks or announces).
            None if read_only => Some(Arc::new(crate::failover::Election::new(
                name.as_str().into(),
                crate::failover::Failover::new().eligible(false),
                presence.heartbeat.max(Duration::from_millis(1)),
            ))),
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
        if trust.is_empty() && transport.account_per_instance() {
            warn!(
                node = %name,
                account = %account,
                "this transport's chat account usually differs from instance to instance (an \
                 IRC nick, a Matrix user), and no `.trust(..)` was given: this node trusts only \
                 `{account}` and ignores every other instance of the fleet (each would elect \
                 itself and serve alone); add `.trust(\"pattern\")` matching every instance's \
                 account to every node's builder (`*` matches any run of characters), unless \
                 all instances post as `{account}`"
            );
        }
        let trust = Trust::new(trust, &account);
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
        if election.is_none() {
            if let Some(h) = registry.needing_failover() {
                return Err(crate::node::no_election(
                    &name,
                    &h.name,
                    &format!("`#[handler({})]`", h.mode.keyword()),
                ));
            }
        }
        if presence.heartbeat.is_zero() || read_only {
            if let Some(h) = registry.shared_handler() {
                return Err(crate::node::no_heartbeats(
                    &name,
                    &h.name,
                    "`#[handler(shared)]`",
                ));
            }
        }
        let core = Arc::new(Core {
            name: name.as_str().into(),
            account: account.clone(),
            session,
            origin: Origin::new(&name, session),
            codec,
            keys,
            max_envelope_bytes,
            python_peers,
            counters: Counters::default(),
            outbox: Outbox::new(outgoing_capacity),
            presence: Presence::new(presence),
            shared: crate::shared::Shared::new(shared),
            election,
            untrusted: Default::default(),
            confirmed_end: Default::default(),
            held: Default::default(),
            answer_due: Default::default(),
            shutdown_timeout,
            read_only,
        });
        core.presence.set_meta(meta);
        core.presence
            .set_kinds(registry.kinds_sorted(), registry.shared_kinds_sorted());
        let node = Node {
            shared: Arc::new(NodeShared {
                core: core.clone(),
                registry: Arc::new(ArcSwap::from_pointee(registry)),
                tasks: Mutex::new(None),
                asks: Default::default(),
                state,
                mismatches: Default::default(),
            }),
        };
        let io = TransportIo {
            inbound: in_tx,
            core: core.clone(),
            connected: None,
            poster: Poster::new(
                max_len,
                lines,
                rng.fork(),
                crate::repair::History::new(
                    presence.history,
                    presence.history_age.as_millis() as u64,
                ),
                core.session,
                core.keys.clone(),
            ),
        };
        let checks = Checks {
            trust,
            max_skew,
            body_limits,
            reassembly,
        };
        let receiver = Receiver::new(core, checks, Handlers::new(node.clone(), observer), in_rx);
        Ok(Parts {
            node,
            transport,
            io,
            receiver,
        })
    }
}

/// The span of one of a node's tasks, at INFO: `node{node, task}`. The
/// spans of its handler runs (`handler{..}`, `dispatch.rs`) are inside the
/// dispatcher's.
fn task_span(node: &Node, task: &'static str) -> tracing::Span {
    tracing::info_span!("node", node = %node.core().name, task)
}

/// The presence options with the budget resolved: the one given (checked),
/// or a share of what the transport says its room takes
/// ([`presence::DEFAULT_BUDGET_SHARE`]).
fn resolve_budget(
    name: &str,
    mut presence: presence::Options,
    failover: bool,
    transport: &dyn Transport,
) -> Result<presence::Options> {
    presence.failover = failover;
    match presence.budget {
        Some(budget) if !(budget.is_finite() && budget > 0.0) => {
            return Err(Error::InvalidOption {
                option: "presence_budget",
                reason: format!("{budget} posts a minute: it must be above zero and finite"),
            });
        }
        Some(_) => {}
        None => {
            presence.budget = transport
                .posts_per_minute()
                .filter(|r| r.is_finite() && *r > 0.0)
                .map(|r| r * presence::DEFAULT_BUDGET_SHARE);
        }
    }
    if let (true, Some(budget), false) = (failover, presence.budget, presence.heartbeat.is_zero()) {
        let active = 60.0 / presence.heartbeat.as_secs_f64();
        if budget < active * 2.0 {
            warn!(
                node = %name,
                budget,
                active,
                "the presence budget ({budget:.1} posts a minute) leaves the standbys less than \
                 the active instance's heartbeats take ({active:.1} a minute): they get half the \
                 budget, and the fleet posts more than it; give a larger budget or a longer \
                 heartbeat interval"
            );
        }
    }
    Ok(presence)
}
