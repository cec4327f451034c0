//! Failover on an in-process room, each property of
//! `shared/design/coordination.md` as a test: at most one active after
//! convergence, bounded takeover, no flapping (and preemption only when
//! asked), healing after a partition, overrides, the quorum, and a
//! restarted instance coming back as a standby.
//!
//! Tokio's clock is paused: heartbeats, leases and the chat's delivery
//! delay run in virtual time, so each property is checked exactly and
//! quickly, whatever the machine's load. A "kill" stops a node's traffic
//! both ways at once (nothing more is posted or heard: as SIGKILL) and then
//! shuts it down; a "partition" stops deliveries between two groups.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use socketscience::transport::BoxFuture;
use socketscience::transport::{ChatMessage, Transport, TransportIo};
use socketscience::{Codec, Failover, Node, Role};
use tokio::sync::mpsc;
use tokio::time::Instant;

const HEARTBEAT: Duration = Duration::from_secs(1);
/// The default lease: three heartbeat intervals.
const LEASE: Duration = Duration::from_secs(3);
/// The room's delivery delay.
const DELAY: Duration = Duration::from_millis(100);

/// A room whose members can be killed and split into groups.
#[derive(Clone, Default)]
struct Room {
    inner: Arc<Mutex<RoomState>>,
}

#[derive(Default)]
struct RoomState {
    members: Vec<MemberSlot>,
    /// Deliveries cross groups only while this is false.
    partitioned: bool,
}

struct MemberSlot {
    group: u8,
    dead: bool,
    tx: mpsc::UnboundedSender<(Instant, ChatMessage)>,
}

impl Room {
    fn join(&self, group: u8) -> (Member, usize) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut state = self.inner.lock().unwrap();
        state.members.push(MemberSlot {
            group,
            dead: false,
            tx,
        });
        let id = state.members.len() - 1;
        (
            Member {
                room: self.clone(),
                id,
                rx,
            },
            id,
        )
    }

    fn kill(&self, id: usize) {
        self.inner.lock().unwrap().members[id].dead = true;
    }

    fn partition(&self, on: bool) {
        self.inner.lock().unwrap().partitioned = on;
    }

    fn post(&self, from: usize, text: String) {
        let state = self.inner.lock().unwrap();
        let me = &state.members[from];
        if me.dead {
            return;
        }
        let due = Instant::now() + DELAY;
        for m in &state.members {
            if m.dead || (state.partitioned && m.group != me.group) {
                continue;
            }
            let _ = m.tx.send((due, ChatMessage::new("smokey", text.clone())));
        }
    }
}

struct Member {
    room: Room,
    id: usize,
    rx: mpsc::UnboundedReceiver<(Instant, ChatMessage)>,
}

impl Transport for Member {
    fn account(&self) -> &str {
        "smokey"
    }

    fn max_message_len(&self) -> usize {
        4_096
    }

    fn run(mut self: Box<Self>, mut io: TransportIo) -> BoxFuture<socketscience::Result<()>> {
        Box::pin(async move {
            // Deliveries wait out the room's delay in their own task, in
            // order.
            let (due_tx, mut due_rx) = mpsc::unbounded_channel();
            let mut rx = std::mem::replace(&mut self.rx, mpsc::unbounded_channel().1);
            let room = self.room.clone();
            let id = self.id;
            tokio::spawn(async move {
                while let Some((due, message)) = rx.recv().await {
                    tokio::time::sleep_until(due).await;
                    if room.inner.lock().unwrap().members[id].dead {
                        continue;
                    }
                    if due_tx.send(message).is_err() {
                        return;
                    }
                }
            });
            loop {
                tokio::select! {
                    post = io.next_post() => match post {
                        Some(text) => self.room.post(self.id, text),
                        None => return Ok(()),
                    },
                    Some(message) = due_rx.recv() => io.receive(message).await?,
                }
            }
        })
    }
}

/// A node of the fleet, with the log of its role changes.
struct Instance {
    node: Node,
    id: usize,
    changes: Arc<Mutex<Vec<(Instant, Role)>>>,
}

async fn start(room: &Room, name: &str, group: u8, failover: Failover) -> Instance {
    start_with(room, name, group, failover, Codec::Json).await
}

async fn start_with(
    room: &Room,
    name: &str,
    group: u8,
    failover: Failover,
    codec: Codec,
) -> Instance {
    let (member, id) = room.join(group);
    let node = Node::builder(name)
        .transport(member)
        .heartbeat(HEARTBEAT)
        .codec(codec)
        .failover(failover)
        .default_node(false)
        .start()
        .await
        .expect("the node starts");
    let changes = Arc::new(Mutex::new(Vec::new()));
    let mut roles = node.watch_role();
    let log = changes.clone();
    tokio::spawn(async move {
        while roles.changed().await.is_ok() {
            let role = *roles.borrow_and_update();
            log.lock().unwrap().push((Instant::now(), role));
        }
    });
    Instance { node, id, changes }
}

impl Instance {
    fn role(&self) -> Role {
        self.node.role()
    }

    fn changes(&self) -> Vec<(Instant, Role)> {
        self.changes.lock().unwrap().clone()
    }

    /// Kills it: not another word posted or heard, then stopped.
    async fn kill(&self, room: &Room) {
        room.kill(self.id);
        let _ = self.node.shutdown().await;
    }
}

fn actives(fleet: &[&Instance]) -> Vec<String> {
    fleet
        .iter()
        .filter(|i| i.role() == Role::Active)
        .map(|i| i.node.name().to_owned())
        .collect()
}

async fn run_for(d: Duration) {
    tokio::time::sleep(d).await;
}

/// Waits (virtual time, at most `limit`) until exactly one of `fleet` is
/// active; gives how long it took.
async fn until_one_active(fleet: &[&Instance], limit: Duration) -> Duration {
    let start = Instant::now();
    while start.elapsed() <= limit {
        if actives(fleet).len() == 1 {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "no single active within {limit:?}: actives {:?}",
        actives(fleet)
    );
}

#[tokio::test(start_paused = true)]
async fn instances_started_together_elect_the_best_ranked_one_after_listening_a_lease() {
    let room = Room::default();
    let a = start(&room, "a", 0, Failover::new().priority(1)).await;
    let b = start(&room, "b", 0, Failover::new().priority(5)).await;
    let c = start_with(
        &room,
        "c",
        0,
        Failover::new().priority(3),
        Codec::MessagePack,
    )
    .await;
    let fleet = [&a, &b, &c];
    let t0 = Instant::now();
    // Nobody claims while listening for the first lease.
    run_for(LEASE - Duration::from_millis(200)).await;
    assert!(
        actives(&fleet).is_empty(),
        "{:?} claimed before a lease",
        actives(&fleet)
    );
    until_one_active(&fleet, LEASE * 2).await;
    assert_eq!(actives(&fleet), ["b"], "the highest priority is elected");
    assert!(t0.elapsed() <= LEASE + HEARTBEAT + DELAY * 2);
    // Quiet for many leases: it stays so, and no one else ever was active.
    run_for(LEASE * 10).await;
    assert_eq!(actives(&fleet), ["b"]);
    assert!(
        a.changes().is_empty() && c.changes().is_empty(),
        "a standby was active for a moment"
    );
    assert_eq!(b.changes().len(), 1, "b flapped: {:?}", b.changes());
    // Everyone lists the others with their roles (the MessagePack node too).
    for i in fleet {
        let mut roles: Vec<(String, Option<Role>)> = i
            .node
            .peers()
            .into_iter()
            .map(|p| (p.instance().to_owned(), p.role()))
            .collect();
        roles.sort_by(|x, y| x.0.cmp(&y.0));
        let expected: Vec<(String, Option<Role>)> = [
            ("a", Role::Standby),
            ("b", Role::Active),
            ("c", Role::Standby),
        ]
        .into_iter()
        .filter(|(n, _)| *n != i.node.name())
        .map(|(n, r)| (n.to_owned(), Some(r)))
        .collect();
        assert_eq!(roles, expected, "peers of {}", i.node.name());
    }
}

#[tokio::test(start_paused = true)]
async fn equal_priorities_are_ranked_by_name() {
    let room = Room::default();
    let c = start(&room, "c", 0, Failover::new()).await;
    let a = start(&room, "a", 0, Failover::new()).await;
    let b = start(&room, "b", 0, Failover::new()).await;
    let fleet = [&a, &b, &c];
    until_one_active(&fleet, LEASE * 3).await;
    run_for(LEASE * 3).await;
    assert_eq!(actives(&fleet), ["a"]);
}

#[tokio::test(start_paused = true)]
async fn a_standby_takes_over_within_lease_plus_a_heartbeat_when_the_active_dies() {
    let room = Room::default();
    let a = start(&room, "a", 0, Failover::new().priority(9)).await;
    let b = start(&room, "b", 0, Failover::new().priority(5)).await;
    let c = start(&room, "c", 0, Failover::new().priority(1)).await;
    until_one_active(&[&a, &b, &c], LEASE * 3).await;
    run_for(LEASE * 2).await;
    assert_eq!(a.role(), Role::Active);
    a.kill(&room).await;
    let killed = Instant::now();
    let took = until_one_active(&[&b, &c], LEASE * 4).await;
    assert!(
        took <= LEASE + HEARTBEAT + DELAY,
        "takeover took {took:?}, more than lease + heartbeat + delay"
    );
    assert_eq!(
        actives(&[&b, &c]),
        ["b"],
        "the best-ranked standby takes over"
    );
    run_for(LEASE * 10).await;
    assert_eq!(actives(&[&b, &c]), ["b"]);
    assert!(
        c.changes().is_empty(),
        "c was active at some point: {:?}",
        c.changes()
    );
    let became = b.changes()[0].0;
    assert!(became >= killed);
}

#[tokio::test(start_paused = true)]
async fn a_restarted_active_comes_back_as_a_standby() {
    let room = Room::default();
    let a = start(&room, "a", 0, Failover::new().priority(9)).await;
    let b = start(&room, "b", 0, Failover::new().priority(5)).await;
    until_one_active(&[&a, &b], LEASE * 3).await;
    assert_eq!(a.role(), Role::Active);
    a.kill(&room).await;
    until_one_active(&[&b], LEASE * 3).await;
    let a2 = start(&room, "a", 0, Failover::new().priority(9)).await;
    assert_eq!(a2.role(), Role::Standby);
    run_for(LEASE * 10).await;
    assert_eq!(a2.role(), Role::Standby, "the restarted instance took over");
    assert!(a2.changes().is_empty());
    assert_eq!(b.role(), Role::Active);
    assert_eq!(b.changes().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_higher_priority_instance_that_joins_does_not_preempt_unless_asked() {
    let room = Room::default();
    let a = start(&room, "a", 0, Failover::new().priority(1)).await;
    let b = start(&room, "b", 0, Failover::new().priority(1)).await;
    until_one_active(&[&a, &b], LEASE * 3).await;
    assert_eq!(a.role(), Role::Active);
    let c = start(&room, "c", 0, Failover::new().priority(100)).await;
    run_for(LEASE * 10).await;
    assert_eq!(actives(&[&a, &b, &c]), ["a"], "no preemption by default");
    assert!(c.changes().is_empty() && b.changes().is_empty());
    assert_eq!(a.changes().len(), 1);

    let d = start(&room, "d", 0, Failover::new().priority(200).preempt(true)).await;
    run_for(LEASE * 3).await;
    assert_eq!(
        actives(&[&a, &b, &c, &d]),
        ["d"],
        "preempt(true) takes over"
    );
    run_for(LEASE * 10).await;
    assert_eq!(actives(&[&a, &b, &c, &d]), ["d"]);
    assert_eq!(d.changes().len(), 1, "{:?}", d.changes());
    assert_eq!(a.changes().len(), 2, "{:?}", a.changes());
}

#[tokio::test(start_paused = true)]
async fn two_actives_after_a_partition_resolve_within_a_heartbeat_round() {
    let room = Room::default();
    let a = start(&room, "a", 0, Failover::new().priority(9)).await;
    let b = start(&room, "b", 0, Failover::new().priority(5)).await;
    let c = start(&room, "c", 1, Failover::new().priority(1)).await;
    let fleet = [&a, &b, &c];
    until_one_active(&fleet, LEASE * 3).await;
    assert_eq!(actives(&fleet), ["a"]);
    room.partition(true);
    // c, alone in its group, hears no active and claims.
    run_for(LEASE + HEARTBEAT * 2).await;
    assert_eq!(actives(&fleet), ["a", "c"], "split brain without a quorum");
    // Meanwhile the other side fails over too: a higher term there.
    a.kill(&room).await;
    run_for(LEASE + HEARTBEAT * 2).await;
    assert_eq!(actives(&[&b, &c]), ["b", "c"]);
    room.partition(false);
    let healed = Instant::now();
    let took = until_one_active(&[&b, &c], LEASE * 3).await;
    assert!(took <= HEARTBEAT + DELAY * 2, "healing took {took:?}");
    // b and c claimed the same term (the one after a's): b's higher
    // priority decides, and b claims the next term as it tells c.
    assert_eq!(actives(&[&b, &c]), ["b"]);
    run_for(LEASE * 10).await;
    assert_eq!(actives(&[&b, &c]), ["b"]);
    assert!(healed.elapsed() >= LEASE * 10);
}

#[tokio::test(start_paused = true)]
async fn with_a_quorum_the_minority_side_of_a_partition_stays_standby() {
    let room = Room::default();
    let q = || Failover::new().quorum(2);
    let a = start(&room, "a", 0, q().priority(1)).await;
    let b = start(&room, "b", 0, q().priority(5)).await;
    let c = start(&room, "c", 1, q().priority(9)).await;
    let fleet = [&a, &b, &c];
    until_one_active(&fleet, LEASE * 3).await;
    assert_eq!(actives(&fleet), ["c"]);
    room.partition(true);
    // c loses its quorum and steps down; the majority side elects b.
    run_for(LEASE * 3).await;
    assert_eq!(actives(&fleet), ["b"]);
    run_for(LEASE * 10).await;
    assert_eq!(actives(&fleet), ["b"], "the minority side never claimed");
    assert_eq!(c.changes().len(), 2, "{:?}", c.changes());
    room.partition(false);
    run_for(LEASE * 3).await;
    assert_eq!(actives(&fleet), ["b"], "no preemption after healing");

    // A node alone never becomes active with quorum(2).
    let lonely_room = Room::default();
    let l = start(&lonely_room, "l", 0, q()).await;
    run_for(LEASE * 10).await;
    assert_eq!(l.role(), Role::Standby);
}

#[tokio::test(start_paused = true)]
async fn forced_roles_are_followed_by_the_fleet() {
    let room = Room::default();
    let a = start(&room, "a", 0, Failover::new().priority(9)).await;
    let b = start(&room, "b", 0, Failover::new().priority(5)).await;
    let c = start(&room, "c", 0, Failover::new().priority(1)).await;
    let fleet = [&a, &b, &c];
    until_one_active(&fleet, LEASE * 3).await;
    assert_eq!(actives(&fleet), ["a"]);

    // "!!/failover" on c (or metasmoke naming c): c is active, a follows.
    let mut b_peers = b.node.watch_peers();
    b_peers.borrow_and_update();
    c.node.force_role(Role::Active);
    assert_eq!(c.role(), Role::Active);
    tokio::time::timeout(HEARTBEAT, b_peers.changed())
        .await
        .expect("b's peer watchers are told of c's role change")
        .unwrap();
    assert_eq!(b.node.peers().len(), 2, "nobody left or joined");
    run_for(HEARTBEAT).await;
    assert_eq!(actives(&fleet), ["c"]);
    run_for(LEASE * 10).await;
    assert_eq!(actives(&fleet), ["c"], "the override holds");

    // "!!/standby" on c: the best-ranked standby takes over, without
    // waiting out the lease.
    let asked = Instant::now();
    c.node.force_role(Role::Standby);
    let took = until_one_active(&fleet, LEASE * 3).await;
    assert!(took < LEASE, "took {took:?}");
    assert_eq!(actives(&fleet), ["a"]);
    // c stays standby even when a dies: b takes over.
    a.kill(&room).await;
    run_for(LEASE * 3).await;
    assert_eq!(actives(&[&b, &c]), ["b"]);
    assert!(asked.elapsed() > LEASE);
    // Released, c takes part again, without preempting b.
    c.node.release_role();
    run_for(LEASE * 5).await;
    assert_eq!(actives(&[&b, &c]), ["b"]);
    b.kill(&room).await;
    until_one_active(&[&c], LEASE * 3).await;
}

#[tokio::test(start_paused = true)]
async fn a_node_without_failover_is_active_and_the_options_are_checked() {
    let room = Room::default();
    let (member, _) = room.join(0);
    let plain = Node::builder("plain")
        .transport(member)
        .default_node(false)
        .start()
        .await
        .unwrap();
    assert_eq!(plain.role(), Role::Active);
    assert_eq!(*plain.watch_role().borrow(), Role::Active);

    let (member, _) = room.join(0);
    let err = Node::builder("x")
        .transport(member)
        .heartbeat(Duration::ZERO)
        .failover(Failover::new())
        .start()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("heartbeat"), "{err}");
    let (member, _) = room.join(0);
    let err = Node::builder("y")
        .transport(member)
        .heartbeat(HEARTBEAT)
        .failover(Failover::new().lease(HEARTBEAT))
        .start()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("lease"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn an_ineligible_instance_never_becomes_active() {
    let room = Room::default();
    let a = start(&room, "a", 0, Failover::new().priority(100).eligible(false)).await;
    let b = start(&room, "b", 0, Failover::new().priority(1)).await;
    until_one_active(&[&a, &b], LEASE * 3).await;
    assert_eq!(actives(&[&a, &b]), ["b"]);
    b.kill(&room).await;
    run_for(LEASE * 10).await;
    assert_eq!(a.role(), Role::Standby);
    assert!(a.changes().is_empty());
}

/// A toy service the active instance writes to: it keeps the highest
/// fencing token it has seen and refuses writes with a lower one.
#[derive(Clone, Default)]
struct Fenced {
    inner: Arc<Mutex<FencedState>>,
}

#[derive(Default)]
struct FencedState {
    highest: u64,
    /// Writes taken: when, from whom, with which token.
    taken: Vec<(Instant, String, u64)>,
    refused: Vec<(Instant, String, u64)>,
}

impl Fenced {
    fn write(&self, from: &str, token: u64) -> bool {
        let mut s = self.inner.lock().unwrap();
        let entry = (Instant::now(), from.to_owned(), token);
        if token < s.highest {
            s.refused.push(entry);
            return false;
        }
        s.highest = token;
        s.taken.push(entry);
        true
    }

    /// Writes with the instance's token every 100 ms while it has one.
    fn writer(&self, instance: &Instance) {
        let (node, fenced) = (instance.node.clone(), self.clone());
        tokio::spawn(async move {
            loop {
                if let Some(token) = node.fencing_token() {
                    fenced.write(node.name(), token);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }

    fn taken_since(&self, since: Instant) -> Vec<(String, u64)> {
        let s = self.inner.lock().unwrap();
        s.taken
            .iter()
            .filter(|(at, _, _)| *at >= since)
            .map(|(_, who, token)| (who.clone(), *token))
            .collect()
    }
}

#[tokio::test(start_paused = true)]
async fn after_a_partition_heals_the_old_active_holds_a_lower_fencing_token_and_is_refused() {
    let room = Room::default();
    let a = start(&room, "a", 0, Failover::new().priority(9)).await;
    let b = start(&room, "b", 0, Failover::new().priority(5)).await;
    let c = start(&room, "c", 1, Failover::new().priority(1)).await;
    let fleet = [&a, &b, &c];
    let fenced = Fenced::default();
    for i in fleet {
        fenced.writer(i);
    }
    until_one_active(&fleet, LEASE * 3).await;
    assert_eq!(actives(&fleet), ["a"]);
    let token_a = a.node.fencing_token().expect("the active has a token");
    assert_eq!(b.node.fencing_token(), None, "a standby has none");
    assert_eq!(*a.node.watch_fencing_token().borrow(), Some(token_a));
    // The standbys heard a's claim (the room delays it) before the room
    // splits: each side's next claim is of the term after a's.
    for standby in [&b, &c] {
        while !standby
            .node
            .peers()
            .iter()
            .any(|p| p.instance() == "a" && p.term() == Some(token_a))
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    // c, cut off, claims; the other side fails over to b meanwhile: two
    // actives, each of the term after a's.
    room.partition(true);
    run_for(LEASE + HEARTBEAT * 2).await;
    let token_c = c.node.fencing_token().expect("c claimed");
    assert!(token_c > token_a, "{token_c} after {token_a}");
    a.kill(&room).await;
    run_for(LEASE + HEARTBEAT * 2).await;
    assert_eq!(actives(&[&b, &c]), ["b", "c"]);
    let mut b_tokens = b.node.watch_fencing_token();
    assert!(b_tokens.borrow_and_update().is_some());

    room.partition(false);
    until_one_active(&[&b, &c], LEASE * 3).await;
    assert_eq!(actives(&[&b, &c]), ["b"]);
    // The tenure that stays holds a token above the one that ended (of the
    // same term, it claimed the next one), and says so on its watch.
    let token_b = b.node.fencing_token().unwrap();
    assert!(
        token_b > token_c,
        "b's {token_b} is not above c's {token_c}"
    );
    assert!(b_tokens.has_changed().unwrap());
    assert_eq!(*b_tokens.borrow(), Some(token_b));
    assert_eq!(c.node.fencing_token(), None);
    let healed = Instant::now();

    // From then on, the service takes writes from b only, and refuses c's
    // stale token (a stalled process that writes late).
    run_for(LEASE * 5).await;
    let taken = fenced.taken_since(healed);
    assert!(!taken.is_empty());
    assert!(
        taken.iter().all(|(who, t)| who == "b" && *t == token_b),
        "{taken:?}"
    );
    assert!(!fenced.write("c", token_c), "the stale active is refused");
    assert!(!fenced.write("a", token_a));
    assert!(fenced.write("b", token_b));
}
