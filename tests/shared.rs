//! Shared handlers (`Node::register_shared`): each job runs in one live
//! instance of those sharing its kind, without a post to choose it; what
//! may have run twice is counted and marked (`Context::is_takeover`).
//! Tokio's clock is paused: heartbeats and peer timeouts pass exactly.
//! (The `#[handler(shared)]` form runs in examples/coffee_bot.rs and
//! tests/irc_shared.rs.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use socketscience::{message, Context, LocalChat, Node, Stats};

#[message("shared_coffee")]
pub struct Coffee {
    pub from: u32,
    pub n: u64,
}

/// Every run of every job, fleet-wide: (sender, n) to the runs, each with
/// the instance and whether it was marked a takeover.
#[derive(Default, Clone)]
struct Tally(Arc<Mutex<Runs>>);

/// Each job's runs: (instance, takeover).
type Runs = HashMap<(u32, u64), Vec<(String, bool)>>;

impl Tally {
    fn runs(&self) -> Runs {
        self.0.lock().unwrap().clone()
    }
}

const HEARTBEAT: Duration = Duration::from_secs(1);

async fn worker(chat: &LocalChat, name: &str, tally: &Tally) -> Node {
    let node = Node::builder(name)
        .transport(chat.join("smokey"))
        .heartbeat(HEARTBEAT)
        .default_node(false)
        .start()
        .await
        .unwrap();
    let (tally, me) = (tally.clone(), name.to_owned());
    node.register_shared(move |cup: Coffee, cx: Context| {
        tally
            .0
            .lock()
            .unwrap()
            .entry((cup.from, cup.n))
            .or_default()
            .push((me.clone(), cx.is_takeover()));
    })
    .unwrap();
    node
}

/// Waits until each of `nodes` hears every other share `shared_coffee`.
async fn until_sharing(nodes: &[&Node]) {
    for _ in 0..200 {
        let all = nodes.iter().all(|n| {
            n.peers()
                .iter()
                .filter(|p| p.handles_shared("shared_coffee"))
                .count()
                >= nodes.len() - 1
        });
        if all {
            // And past the newcomer's grace (one heartbeat interval).
            tokio::time::sleep(HEARTBEAT * 2).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the nodes never heard each other share the kind");
}

fn total(nodes: &[Node]) -> Stats {
    let mut sum = Stats::default();
    for n in nodes {
        let s = n.stats();
        sum.shared_runs += s.shared_runs;
        sum.shared_takeovers += s.shared_takeovers;
        sum.shared_dropped += s.shared_dropped;
    }
    sum
}

#[tokio::test(start_paused = true)]
async fn three_nodes_3000_jobs_from_three_senders_each_runs_once_spread_evenly() {
    let chat = LocalChat::new();
    let tally = Tally::default();
    let mut nodes = Vec::new();
    for name in ["A", "B", "C"] {
        nodes.push(worker(&chat, name, &tally).await);
    }
    until_sharing(&nodes.iter().collect::<Vec<_>>()).await;
    // Each node sends a thousand: the jobs come from three senders.
    for n in 0..1_000u64 {
        for (from, node) in nodes.iter().enumerate() {
            node.send(Coffee {
                from: from as u32,
                n,
            })
            .await
            .unwrap();
        }
        if n % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let runs = tally.runs();
    assert_eq!(runs.len(), 3_000, "every job ran");
    assert!(
        runs.values().all(|r| r.len() == 1),
        "each job ran exactly once"
    );
    for name in ["A", "B", "C"] {
        let mine = runs.values().filter(|r| r[0].0 == name).count();
        println!("{name} ran {mine} of 3000");
        assert!(
            (750..=1_260).contains(&mine),
            "{name} ran {mine}: between 25 % and 42 %"
        );
    }
    let sum = total(&nodes);
    assert_eq!(sum.shared_runs, 3_000);
    assert_eq!(sum.shared_takeovers, 0);
    assert_eq!(sum.shared_dropped, 0);
    for node in &nodes {
        node.shutdown().await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn ordinary_handlers_of_the_kind_still_run_everywhere() {
    let chat = LocalChat::new();
    let tally = Tally::default();
    let seen = Arc::new(Mutex::new(0u64));
    let mut nodes = Vec::new();
    for name in ["A", "B"] {
        let node = worker(&chat, name, &tally).await;
        let seen = seen.clone();
        node.register(move |_: Coffee| *seen.lock().unwrap() += 1);
        nodes.push(node);
    }
    until_sharing(&nodes.iter().collect::<Vec<_>>()).await;
    for n in 0..10 {
        nodes[0].send(Coffee { from: 0, n }).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(*seen.lock().unwrap(), 20, "both nodes, every message");
    let runs = tally.runs();
    assert_eq!(runs.len(), 10);
    assert!(runs.values().all(|r| r.len() == 1));
    for node in &nodes {
        node.shutdown().await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_shared_handler_needs_heartbeats() {
    let chat = LocalChat::new();
    let node = Node::builder("quiet")
        .transport(chat.join("smokey"))
        .heartbeat(Duration::ZERO)
        .default_node(false)
        .start()
        .await
        .unwrap();
    let err = node.register_shared(|_: Coffee| ()).unwrap_err();
    assert!(err.to_string().contains("heartbeat"), "{err}");
    node.shutdown().await.unwrap();
}

/// Instances join and leave while 2 000 jobs flow (one started and the
/// oldest stopped every three seconds): no job is lost, and every run past
/// a job's first is marked a takeover and counted.
#[tokio::test(start_paused = true)]
async fn instances_join_and_leave_while_jobs_flow_none_lost_duplicates_counted() {
    let chat = LocalChat::new();
    let tally = Tally::default();
    // The sender shares nothing: it posts the jobs (a chat command relay).
    let sender = Node::builder("relay")
        .transport(chat.join("smokey"))
        .heartbeat(HEARTBEAT)
        .default_node(false)
        .start()
        .await
        .unwrap();
    let mut live = Vec::new();
    let mut all = Vec::new();
    for i in 0..3 {
        let node = worker(&chat, &format!("W{i}"), &tally).await;
        live.push(node.clone());
        all.push(node);
    }
    until_sharing(&live.iter().collect::<Vec<_>>()).await;
    let mut next = 3;
    let mut stopped = 0;
    for n in 0..2_000u64 {
        sender.send(Coffee { from: 0, n }).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        if n % 300 == 299 {
            // One joins, the oldest leaves.
            let node = worker(&chat, &format!("W{next}"), &tally).await;
            next += 1;
            live.push(node.clone());
            all.push(node);
            live.remove(0).shutdown().await.unwrap();
            stopped += 1;
        }
    }
    tokio::time::sleep(Duration::from_secs(30)).await;
    let runs = tally.runs();
    let lost = (0..2_000u64)
        .filter(|n| !runs.contains_key(&(0, *n)))
        .count();
    let twice = runs.values().filter(|r| r.len() > 1).count();
    let extra: usize = runs.values().map(|r| r.len() - 1).sum();
    let sum = total(&all);
    println!(
        "churn: {} instances started, {stopped} stopped; 2000 jobs: {lost} lost, {twice} ran \
         more than once ({extra} extra runs); counted takeovers {}, dropped {}",
        all.len(),
        sum.shared_takeovers,
        sum.shared_dropped
    );
    assert_eq!(lost, 0, "no job lost");
    for (job, r) in &runs {
        let marked = r.iter().filter(|(_, takeover)| *takeover).count();
        assert!(
            r.len() - 1 <= marked,
            "job {job:?} ran {} times, {marked} marked a takeover: {r:?}",
            r.len()
        );
    }
    assert!(sum.shared_takeovers as usize >= extra);
    for node in &live {
        node.shutdown().await.unwrap();
    }
    sender.shutdown().await.unwrap();
}
