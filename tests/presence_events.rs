//! Presence that says who and what, on an in-process room with tokio's
//! clock paused: `NodeBuilder::meta` and the kinds an instance handles
//! reach the others (`Peer::meta`, `Peer::kinds`), and `Node::peer_events`
//! gives each join, meta change, role change, leave and restart once.

use std::collections::BTreeMap;
use std::time::Duration;

use socketscience::peers::{PeerChange, PeerEvent, PeerEvents};
use socketscience::{data, handler, message, Failover, LocalChat, Node, Role};
use tokio::time::Instant;

const HEARTBEAT: Duration = Duration::from_secs(1);
/// The default peer timeout: three heartbeat intervals.
const PEER_TIMEOUT: Duration = Duration::from_secs(3);

#[data]
#[derive(Debug, Clone, PartialEq)]
pub struct Build {
    pub version: String,
    pub host: String,
}

fn build(version: &str) -> Build {
    Build {
        version: version.into(),
        host: "EC2".into(),
    }
}

#[message("presence_probe")]
pub struct Probe;

#[handler]
fn probe(_: Probe) {}

async fn start(chat: &LocalChat, name: &str, priority: i64, meta: Option<Build>) -> Node {
    let mut builder = Node::builder(name)
        .transport(chat.join("smokey"))
        .heartbeat(HEARTBEAT)
        .failover(Failover::new().priority(priority))
        .default_node(false);
    if let Some(meta) = meta {
        builder = builder.meta(meta);
    }
    builder.start().await.expect("the node starts")
}

/// The next event, failing the test after a minute of virtual time.
async fn next(events: &mut PeerEvents) -> PeerEvent {
    tokio::time::timeout(Duration::from_secs(60), events.recv())
        .await
        .expect("an event within a minute")
        .expect("the node runs")
}

/// Takes events until one satisfies `want`; gives it and those before.
async fn until(
    events: &mut PeerEvents,
    seen: &mut Vec<PeerEvent>,
    want: impl Fn(&PeerEvent) -> bool,
) -> PeerEvent {
    loop {
        let e = next(events).await;
        seen.push(e.clone());
        if want(&e) {
            return e;
        }
    }
}

fn key(e: &PeerEvent) -> (String, String, u64, Option<PeerChange>) {
    let (what, change) = match e {
        PeerEvent::Joined(_) => ("joined", None),
        PeerEvent::Left(_) => ("left", None),
        PeerEvent::Changed { change, .. } => ("changed", Some(*change)),
        _ => ("other", None),
    };
    (
        what.into(),
        e.peer().instance().into(),
        e.peer().session(),
        change,
    )
}

#[tokio::test(start_paused = true)]
async fn peer_events_give_joins_meta_and_role_changes_leaves_and_restarts_once_each() {
    let chat = LocalChat::new();
    let a = start(&chat, "a", 1, None).await;
    let mut events = a.peer_events();
    let mut seen = Vec::new();
    let b = start(&chat, "b", 10, Some(build("1.0"))).await;
    let c = start(&chat, "c", 5, Some(build("1.0"))).await;

    // Joined, with what the first heartbeat said: meta, kinds, role.
    for name in ["b", "c"] {
        let e = until(
            &mut events,
            &mut seen,
            |e| matches!(e, PeerEvent::Joined(p) if p.instance() == name),
        )
        .await;
        let p = e.peer();
        assert_eq!(p.meta::<Build>(), Some(build("1.0")), "{p:?}");
        assert_eq!(p.meta_json(), Some(r#"{"host":"EC2","version":"1.0"}"#));
        assert!(p.kinds_known());
        assert!(p.handles("presence_probe"), "{:?}", p.kinds());
        assert_eq!(p.role(), Some(Role::Standby));
    }
    assert!(a.peers().iter().all(|p| p.meta::<Build>().is_some()));

    // A meta change: one Changed, with the new meta.
    b.set_meta(build("1.1")).unwrap();
    let e = until(&mut events, &mut seen, |e| {
        matches!(
            e,
            PeerEvent::Changed {
                change: PeerChange::Meta,
                ..
            }
        )
    })
    .await;
    assert_eq!(e.peer().instance(), "b");
    assert_eq!(e.peer().meta::<Build>(), Some(build("1.1")));
    // Setting the same value again says nothing.
    b.set_meta(build("1.1")).unwrap();

    // The election: b (priority 10) becomes active, which a hears as a
    // role change of b.
    let e = until(&mut events, &mut seen, |e| {
        matches!(e, PeerEvent::Changed { change: PeerChange::Role, peer } if peer.role() == Some(Role::Active))
    })
    .await;
    assert_eq!(e.peer().instance(), "b");

    // c stops: it leaves within the peer timeout (and a tick).
    let c_session = c.session();
    c.shutdown().await.unwrap();
    let stopped = Instant::now();
    let e = until(&mut events, &mut seen, |e| matches!(e, PeerEvent::Left(_))).await;
    assert_eq!(e.peer().instance(), "c");
    assert_eq!(e.peer().session(), c_session);
    assert!(
        stopped.elapsed() <= PEER_TIMEOUT + HEARTBEAT * 2,
        "left after {:?}",
        stopped.elapsed()
    );
    // Its restart joins again, with a new session.
    let c2 = start(&chat, "c", 5, Some(build("1.1"))).await;
    let e = until(&mut events, &mut seen, |e| {
        matches!(e, PeerEvent::Joined(_))
    })
    .await;
    assert_eq!(e.peer().instance(), "c");
    assert_eq!(e.peer().session(), c2.session());

    // b restarts before the timeout: a Left of its old session, then a
    // Joined of its new one, one after the other.
    let b_session = b.session();
    b.shutdown().await.unwrap();
    let b2 = start(&chat, "b", 10, Some(build("1.2"))).await;
    let e = until(&mut events, &mut seen, |e| matches!(e, PeerEvent::Left(_))).await;
    assert_eq!((e.peer().instance(), e.peer().session()), ("b", b_session));
    let e = next(&mut events).await;
    seen.push(e.clone());
    assert!(
        matches!(&e, PeerEvent::Joined(p) if p.instance() == "b" && p.session() == b2.session()),
        "{e:?}"
    );
    assert_eq!(e.peer().meta::<Build>(), Some(build("1.2")));

    // Let the fleet settle, then: each event once.
    tokio::time::sleep(PEER_TIMEOUT * 2).await;
    while let Some(e) = events.try_recv() {
        seen.push(e);
    }
    let mut counts: BTreeMap<_, usize> = BTreeMap::new();
    for e in &seen {
        *counts.entry(key(e)).or_default() += 1;
    }
    for (k, n) in &counts {
        if k.3 != Some(PeerChange::Role) {
            assert_eq!(*n, 1, "{k:?} came {n} times: {seen:#?}");
        }
    }
    let meta_changes = seen
        .iter()
        .filter(|e| {
            matches!(
                e,
                PeerEvent::Changed {
                    change: PeerChange::Meta,
                    ..
                }
            )
        })
        .count();
    assert_eq!(meta_changes, 1, "{seen:#?}");
    // The list agrees: b and c, their new sessions.
    let mut peers: Vec<(String, u64)> = a
        .peers()
        .iter()
        .map(|p| (p.instance().to_owned(), p.session()))
        .collect();
    peers.sort();
    assert_eq!(
        peers,
        [
            ("b".to_owned(), b2.session()),
            ("c".to_owned(), c2.session())
        ]
    );
    for n in [a, b2, c2] {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_meta_too_large_fails_at_start_and_set_meta_keeps_the_old_one() {
    let chat = LocalChat::new();
    let huge = "x".repeat(socketscience::peers::MAX_META_BYTES);
    let err = Node::builder("big")
        .transport(chat.join("smokey"))
        .meta(&huge)
        .start()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("meta"), "{err}");
    let node = start(&chat, "small", 1, Some(build("1.0"))).await;
    assert!(node.set_meta(&huge).is_err());
    node.shutdown().await.unwrap();
}
