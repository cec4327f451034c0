//! A fleet with failover and no data, measured against its presence
//! budget (`tests/presence_budget.rs` on a `LocalChat`,
//! `tests/sechat_presence.rs` on the Stack Exchange stand-in): how many
//! posts a minute it makes, whether a live peer ever leaves a list, how
//! soon a killed standby is unlisted and a killed active replaced.

use std::time::Duration;

use socketscience::{Node, Role};
use tokio::time::Instant;

/// The default heartbeat interval (and so a lease of 90 s).
pub const HEARTBEAT: Duration = Duration::from_secs(30);
pub const LEASE: Duration = Duration::from_secs(90);
/// The slowest tick of a node's clocks (the presence task's).
pub const TICK: Duration = Duration::from_secs(1);

/// The standbys' mean interval the docs give for `n` instances and a
/// budget of `budget` posts a minute: `max(h, (n - 1) × 60 s / (B' - 60 s
/// / h))`, `B' = 0.9 B` (at least half of `B'` left to the standbys).
pub fn documented_interval(n: usize, budget: f64) -> Duration {
    let active = 60.0 / HEARTBEAT.as_secs_f64();
    let aim = budget * 0.9;
    let secs = (n - 1) as f64 * 60.0 / (aim - active).max(aim / 2.0);
    Duration::from_secs_f64(secs).max(HEARTBEAT)
}

/// The peer timeout the docs give: `3 h × T / h`.
pub fn documented_timeout(n: usize, budget: f64) -> Duration {
    (HEARTBEAT * 3).mul_f64(documented_interval(n, budget).as_secs_f64() / HEARTBEAT.as_secs_f64())
}

/// The names of the active nodes.
pub fn actives(nodes: &[Node]) -> Vec<String> {
    nodes
        .iter()
        .filter(|n| n.role() == Role::Active)
        .map(|n| n.name().to_owned())
        .collect()
}

/// What [`measure`] saw.
pub struct Measured {
    /// Posts the whole fleet made while it started and settled.
    pub start_posts: usize,
    pub start_minutes: f64,
    /// Posts a minute over the 40 minutes counted.
    pub per_minute: f64,
    pub peer_timeout: Duration,
    /// From the standby's kill until no node listed it.
    pub standby_noticed: Duration,
    /// From the active's kill until another node was active.
    pub replaced: Duration,
}

/// Measures `nodes` (named so that the first ranks first and is elected,
/// the last ranks last), started at `started`, with a presence budget of
/// `budget`; `posts` counts what the room saw posted so far.
///
/// Lets the fleet settle (two of the longest intervals and a lease), and
/// checks that every node hears every other and the first is active;
/// counts 40 minutes and checks the posts a minute against the budget,
/// that no live peer left a list and that `peer_timeout()` is the
/// documented one; kills (shuts down, no goodbye) the last node and checks
/// every other unlists it within the peer timeout and a tick; kills the
/// active and checks the second takes over within the lease, a tick and
/// `chat_delay`. Shuts the rest down.
pub async fn measure(
    mut nodes: Vec<Node>,
    started: Instant,
    budget: f64,
    chat_delay: Duration,
    mut posts: impl FnMut() -> usize,
) -> Measured {
    let n = nodes.len();
    let settle = documented_interval(n, budget) * 2 + LEASE;
    tokio::time::sleep(settle).await;
    for node in &nodes {
        assert_eq!(node.peers().len(), n - 1, "{} hears the fleet", node.name());
    }
    assert_eq!(actives(&nodes), [nodes[0].name()]);
    let start_posts = posts();
    let start_minutes = started.elapsed().as_secs_f64() / 60.0;

    // Presence alone, counted over 40 minutes.
    let window = Duration::from_secs(40 * 60);
    let counting = Instant::now();
    let mut lowest_peers = n - 1;
    while counting.elapsed() < window {
        tokio::time::sleep(Duration::from_secs(10)).await;
        for node in &nodes {
            lowest_peers = lowest_peers.min(node.peers().len());
        }
    }
    let counted = posts() - start_posts;
    let per_minute = counted as f64 / (window.as_secs_f64() / 60.0);
    assert!(
        per_minute <= budget,
        "{n} instances posted {per_minute:.2} a minute, over the budget of {budget}"
    );
    assert_eq!(
        lowest_peers,
        n - 1,
        "no live peer left a peer list while the fleet was stretched"
    );
    let peer_timeout = nodes[0].peer_timeout();
    let bound = documented_timeout(n, budget);
    assert!(
        peer_timeout.abs_diff(bound) <= Duration::from_millis(5),
        "peer_timeout() {peer_timeout:?}, documented {bound:?}"
    );

    // A standby killed: every other instance stops listing it within the
    // peer timeout (plus a tick).
    let standby = nodes.pop().expect("a standby");
    let gone = standby.name().to_owned();
    assert_eq!(standby.role(), Role::Standby);
    let killed = Instant::now();
    standby.shutdown().await.expect("shutdown");
    while nodes
        .iter()
        .any(|node| node.peers().iter().any(|p| p.instance() == gone))
    {
        assert!(
            killed.elapsed() <= peer_timeout + TICK,
            "{gone} still listed {:?} after it died (peer timeout {peer_timeout:?})",
            killed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let standby_noticed = killed.elapsed();

    // The active killed: the best-ranked standby takes over within the
    // lease, plus a tick of the failover task and the chat's delay.
    let active = nodes.remove(0);
    assert_eq!(active.role(), Role::Active);
    let killed = Instant::now();
    active.shutdown().await.expect("shutdown");
    while actives(&nodes).is_empty() {
        assert!(
            killed.elapsed() <= LEASE + TICK + chat_delay,
            "no active {:?} after the active died",
            killed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let replaced = killed.elapsed();
    assert_eq!(actives(&nodes), [nodes[0].name()]);
    for node in &nodes {
        assert_eq!(
            node.stats().posts_given_up,
            0,
            "{}: no post given up",
            node.name()
        );
    }
    for node in nodes {
        node.shutdown().await.expect("shutdown");
    }
    Measured {
        start_posts,
        start_minutes,
        per_minute,
        peer_timeout,
        standby_noticed,
        replaced,
    }
}
