//! Presence, questions and rolling upgrades across processes on a real IRC
//! daemon (ngIRCd): three `examples/failover` processes and a node in this
//! test, each on its own connection.
//!
//! - Peer events: each instance's `Joined` once, a meta change and a role
//!   change once each, a SIGKILLed instance's `Left` within the peer
//!   timeout, its restart's `Joined`.
//! - `ask(..).within(10 s)` returns with three answers long before the
//!   deadline; with one instance killed it returns at the deadline naming
//!   the silent one.
//! - An old build (the processes) and a new build (this test) of two
//!   message types: the added field reads both ways, the changed type is
//!   counted per kind and sender on both sides, a kind only the new build
//!   knows is counted at the old, and no node stops.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::irc_server::IrcServer;
use common::processes::{describe_all, spawn_failover, Process, HEARTBEAT, LEASE, NAMES};
use socketscience::peers::{PeerChange, PeerEvent, PeerEvents};
use socketscience::{data, message, Context, Envelope, Failover, IrcChat, Node, Role};

/// What the instances say about themselves (as `examples/failover.rs`).
#[data]
#[derive(Debug, PartialEq)]
pub struct Build {
    pub version: String,
}

/// The question the fleet answers (as `examples/failover.rs`).
#[message("fleet_status", reply = Status)]
pub struct StatusPlease;

#[message("fleet_status_reply")]
#[derive(Debug)]
pub struct Status {
    pub instance: String,
    pub version: String,
}

/// The new build's note: a field added, with a default.
#[message("upgrade_note")]
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub text: String,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// The new build's tally: `n` was a `u64`, it is a string now.
#[message("upgrade_tally")]
#[derive(Debug, Clone, PartialEq)]
pub struct Tally {
    pub n: String,
}

/// A kind only the new build has.
#[message("upgrade_shiny")]
pub struct Shiny(pub u8);

/// The test's own node: "observer/new", trusted by the fleet's pattern.
async fn observer(server: &str, channel: &str, peer_timeout: Duration) -> Node {
    Node::builder("observer/new")
        .transport(IrcChat::new(server, "smokey-observer", channel))
        .trust("smokey-*")
        .heartbeat(HEARTBEAT)
        .peer_timeout(peer_timeout)
        // Takes part in the election only to hear the roles.
        .failover(Failover::new().eligible(false).lease(LEASE))
        .meta(Build {
            version: "2.0.0".into(),
        })
        .default_node(false)
        .start()
        .await
        .expect("the observer starts")
}

/// Polls `done` every 50 ms; panics with the fleet's output after `limit`.
async fn until(what: &str, limit: Duration, fleet: &[&Process], mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {limit:?}\n{}",
            describe_all(fleet)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The peer events a node gives, each with when it arrived, gathered by a
/// task.
type Log = Arc<Mutex<Vec<(Instant, PeerEvent)>>>;

fn gather(mut events: PeerEvents) -> Log {
    let log: Log = Default::default();
    let into = log.clone();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            into.lock().unwrap().push((Instant::now(), event));
        }
    });
    log
}

/// How many events of `log` `matches` accepts.
fn count(log: &Log, matches: impl Fn(&PeerEvent) -> bool) -> usize {
    log.lock()
        .unwrap()
        .iter()
        .filter(|(_, e)| matches(e))
        .count()
}

fn joined(instance: &str) -> impl Fn(&PeerEvent) -> bool + '_ {
    move |e| matches!(e, PeerEvent::Joined(p) if p.instance() == instance)
}

fn left(instance: &str) -> impl Fn(&PeerEvent) -> bool + '_ {
    move |e| matches!(e, PeerEvent::Left(p) if p.instance() == instance)
}

fn changed(instance: &str, what: PeerChange) -> impl Fn(&PeerEvent) -> bool + '_ {
    move |e| matches!(e, PeerEvent::Changed { peer, change } if peer.instance() == instance && *change == what)
}

/// How many lines a process printed that are exactly `line`.
fn printed_count(p: &Process, line: &str) -> usize {
    p.stdout().iter().filter(|l| *l == line).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_events_and_questions_across_processes() {
    let server = IrcServer::start();
    let addr = server.addr();
    // The observer keeps silent peers listed for 10 s, so that a question
    // asked right after a kill still waits for the killed one.
    let peer_timeout = Duration::from_secs(10);
    let node = observer(&addr, "#coord", peer_timeout).await;
    let started = Instant::now();
    let log = gather(node.peer_events());
    let mut fleet: Vec<Process> = (0..3)
        .map(|i| spawn_failover(&addr, "#coord", i, &["--version", "1.0.0"]))
        .collect();

    // Everyone joins once, with its meta; the elected one's role arrives.
    until(
        "the fleet heard, with an active one",
        Duration::from_secs(60),
        &fleet.iter().collect::<Vec<_>>(),
        || {
            let peers = node.peers();
            peers.len() == 3
                && peers
                    .iter()
                    .all(|p| p.meta::<Build>().is_some() && p.kinds_known())
                && peers.iter().any(|p| p.role() == Some(Role::Active))
        },
    )
    .await;
    for name in NAMES {
        assert_eq!(count(&log, joined(name)), 1, "{name} joined once");
        let peer = node
            .peers()
            .into_iter()
            .find(|p| p.instance() == name)
            .unwrap();
        assert_eq!(
            peer.meta(),
            Some(Build {
                version: "1.0.0".into()
            })
        );
        assert!(peer.handles("fleet_status"), "{:?}", peer.kinds());
        assert!(!peer.handles("upgrade_shiny"));
    }

    // The elected one's role change, once (if it was first heard as a
    // standby: it listens a lease before it claims); none for the others.
    let first_role = |name: &str| {
        log.lock()
            .unwrap()
            .iter()
            .find_map(|(_, e)| match e {
                PeerEvent::Joined(p) if p.instance() == name => Some(p.role()),
                _ => None,
            })
            .unwrap()
    };
    let active = node
        .peers()
        .into_iter()
        .find(|p| p.role() == Some(Role::Active))
        .unwrap();
    assert_eq!(active.instance(), NAMES[0]);
    let expected = usize::from(first_role(NAMES[0]) == Some(Role::Standby));
    assert_eq!(count(&log, changed(NAMES[0], PeerChange::Role)), expected);
    for name in [NAMES[1], NAMES[2]] {
        assert_eq!(count(&log, changed(name, PeerChange::Role)), 0, "{name}");
    }
    assert!(
        fleet[1].printed(|l| l == "EVENT changed-role Henders/EC2"),
        "{}",
        fleet[1].describe()
    );

    // A meta change: one event at the observer, one line at each other
    // process.
    fleet[2].command("version 1.1.0");
    until(
        "the meta change",
        Duration::from_secs(20),
        &[&fleet[2]],
        || count(&log, changed(NAMES[2], PeerChange::Meta)) == 1,
    )
    .await;
    let refs: Vec<&Process> = fleet.iter().collect();
    until(
        "the processes hearing the meta change",
        Duration::from_secs(20),
        &refs,
        || (0..2).all(|i| printed_count(&fleet[i], "EVENT changed-meta Undo/laptop 1.1.0") == 1),
    )
    .await;
    let undo = node
        .peers()
        .into_iter()
        .find(|p| p.instance() == NAMES[2])
        .unwrap();
    assert_eq!(undo.meta::<Build>().unwrap().version, "1.1.0");

    // Every instance answers: the question ends long before its deadline.
    // (A node younger than its peer timeout may not have heard every live
    // instance yet, so its questions wait their deadline: `Node::ask`.)
    tokio::time::sleep_until((started + peer_timeout).into()).await;
    let asked = Instant::now();
    let mut answers = node
        .ask(StatusPlease)
        .within(Duration::from_secs(10))
        .stream()
        .await
        .unwrap();
    let mut who = Vec::new();
    while let Some(answer) = answers.next().await {
        who.push(answer.reply.instance.clone());
    }
    let took = asked.elapsed();
    who.sort();
    let mut names = NAMES.map(String::from).to_vec();
    names.sort();
    assert_eq!(who, names);
    assert!(answers.silent().is_empty(), "{:?}", answers.silent());
    eprintln!("three answers in {took:?} (deadline 10 s)");
    assert!(
        took < Duration::from_secs(10),
        "the question waited for its deadline although all answered"
    );

    // teward/vps (a standby) is killed: a question now waits its deadline
    // and names it.
    fleet[1].sigkill();
    let killed = Instant::now();
    let asked = Instant::now();
    let mut answers = node
        .ask(StatusPlease)
        .within(Duration::from_secs(4))
        .stream()
        .await
        .unwrap();
    let mut who = Vec::new();
    while let Some(answer) = answers.next().await {
        who.push(answer.reply.instance.clone());
    }
    let took = asked.elapsed();
    who.sort();
    assert_eq!(who, [NAMES[0], NAMES[2]]);
    assert_eq!(answers.silent(), [NAMES[1]]);
    assert!(
        took >= Duration::from_secs(4),
        "ended before its deadline: {took:?}"
    );

    // Its Left arrives within the observer's peer timeout (and a tick).
    let refs: Vec<&Process> = fleet.iter().collect();
    until("the killed one's Left", peer_timeout * 2, &refs, || {
        count(&log, left(NAMES[1])) == 1
    })
    .await;
    let left_at = log
        .lock()
        .unwrap()
        .iter()
        .find(|(_, e)| left(NAMES[1])(e))
        .map(|(t, _)| *t)
        .unwrap();
    eprintln!(
        "Left {:?} after the SIGKILL (peer timeout {peer_timeout:?})",
        left_at - killed
    );
    assert!(
        left_at - killed <= peer_timeout + Duration::from_secs(2),
        "Left {:?} after the kill",
        left_at - killed
    );

    // Started again: one Joined of its new session.
    fleet[1] = spawn_failover(&addr, "#coord", 1, &["--version", "1.0.0"]);
    let refs: Vec<&Process> = fleet.iter().collect();
    until(
        "the restart's Joined",
        Duration::from_secs(30),
        &refs,
        || count(&log, joined(NAMES[1])) == 2,
    )
    .await;
    tokio::time::sleep(HEARTBEAT * 3).await;
    assert_eq!(count(&log, left(NAMES[1])), 1);
    assert_eq!(count(&log, joined(NAMES[1])), 2);
    for name in [NAMES[0], NAMES[2]] {
        assert_eq!(count(&log, joined(name)), 1, "{name}");
        assert_eq!(count(&log, left(name)), 0, "{name}");
    }
    // The processes saw the same: teward/vps left once, joined twice.
    for p in [&fleet[0], &fleet[2]] {
        assert_eq!(
            printed_count(p, "EVENT left teward/vps"),
            1,
            "{}",
            p.describe()
        );
        assert_eq!(
            p.stdout()
                .iter()
                .filter(|l| l.starts_with("EVENT joined teward/vps"))
                .count(),
            2,
            "{}",
            p.describe()
        );
    }
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_and_a_new_build_share_a_room() {
    let server = IrcServer::start();
    let addr = server.addr();
    let node = observer(&addr, "#upgrade", Duration::from_secs(10)).await;
    let notes: Arc<Mutex<Vec<(String, Note)>>> = Default::default();
    let tallies: Arc<Mutex<Vec<Tally>>> = Default::default();
    node.register({
        let notes = notes.clone();
        move |note: Note, cx: Context| {
            let from = cx.sender().instance().unwrap_or("?").to_owned();
            notes.lock().unwrap().push((from, note));
        }
    });
    node.register({
        let tallies = tallies.clone();
        move |tally: Tally| tallies.lock().unwrap().push(tally)
    });
    node.register(|_: Shiny| {});
    let mut old = spawn_failover(&addr, "#upgrade", 0, &["--version", "1.0.0"]);
    until(
        "the two builds hearing each other",
        Duration::from_secs(60),
        &[&old],
        || {
            node.peers().iter().any(|p| p.kinds_known())
                // Its version: with the heartbeat it joined by, or (when the
                // first heard was a regular one, which carries no meta) with
                // the answer to the newcomer right after.
                && old.printed(|l| {
                    l.starts_with("EVENT joined observer/new 2.0.0")
                        || l.starts_with("EVENT changed-meta observer/new 2.0.0")
                })
        },
    )
    .await;
    // What a sender sees of the old build: its version, and that it does
    // not know the new kind.
    let peer = node.peers().remove(0);
    assert_eq!(peer.meta::<Build>().unwrap().version, "1.0.0");
    assert!(peer.handles("upgrade_note") && peer.handles("upgrade_tally"));
    assert!(!peer.handles("upgrade_shiny"), "{:?}", peer.kinds());

    // New to old: the note reads (the added field ignored), the changed
    // tally and the unknown kind are counted there.
    node.send(
        Envelope::new()
            .with(Note {
                text: "from new".into(),
                tags: vec!["x".into()],
            })
            .unwrap()
            .with(Tally { n: "three".into() })
            .unwrap()
            .with(Shiny(1))
            .unwrap(),
    )
    .await
    .unwrap();
    // Old to new: the note reads (the field gets its default), the tally
    // does not.
    old.command("note from old");
    old.command("tally 3");
    until(
        "the notes crossing",
        Duration::from_secs(30),
        &[&old],
        || {
            old.printed(|l| l == "NOTE observer/new from new")
                && notes.lock().unwrap().iter().any(|(f, _)| f == NAMES[0])
        },
    )
    .await;
    until(
        "the old build's tally arriving",
        Duration::from_secs(30),
        &[&old],
        || node.stats().bad_values == 1,
    )
    .await;
    assert_eq!(
        notes
            .lock()
            .unwrap()
            .iter()
            .filter(|(f, _)| f == NAMES[0])
            .map(|(_, n)| n.clone())
            .collect::<Vec<_>>(),
        [Note {
            text: "from old".into(),
            tags: vec![]
        }]
    );
    // Only its own tally ran here.
    assert_eq!(*tallies.lock().unwrap(), [Tally { n: "three".into() }]);
    let here: Vec<_> = node
        .mismatches()
        .into_iter()
        .map(|m| (m.kind, m.sender, m.bad_values, m.unknown))
        .collect();
    assert_eq!(here, [("upgrade_tally".into(), NAMES[0].into(), 1, 0)]);
    old.command("mismatches");
    until(
        "the old build's mismatches",
        Duration::from_secs(10),
        &[&old],
        || old.printed(|l| l == "MISMATCHES END"),
    )
    .await;
    let lines = old.stdout();
    let mut there: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("MISMATCH "))
        .map(String::as_str)
        .collect();
    there.sort();
    assert_eq!(
        there,
        [
            "MISMATCH upgrade_shiny observer/new bad=0 unknown=1",
            "MISMATCH upgrade_tally observer/new bad=1 unknown=0",
        ],
        "{}",
        old.describe()
    );
    assert!(!old.printed(|l| l.starts_with("TALLY observer/new")));
    // The changed type was logged once (it came once).
    let warned = old
        .stderr
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("does not fit its message type"))
        .count();
    assert_eq!(warned, 1, "{}", old.describe());

    // Neither stopped: both go on exchanging.
    old.command("note still here");
    until(
        "a note after the mismatches",
        Duration::from_secs(30),
        &[&old],
        || {
            notes
                .lock()
                .unwrap()
                .iter()
                .any(|(f, n)| f == NAMES[0] && n.text == "still here")
        },
    )
    .await;
    assert!(
        old.child.try_wait().unwrap().is_none(),
        "the old build exited"
    );
    node.shutdown().await.unwrap();
}
