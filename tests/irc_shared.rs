//! Shared handlers across processes on a real IRC daemon (ngIRCd): three
//! `examples/coffee_bot` processes share `!!/coffee` jobs that this test
//! posts from its own node; the instance that served the latest job is
//! killed with SIGKILL while jobs keep coming. Every job is served at least
//! once; those served twice are no more than the jobs sent within one peer
//! timeout before the kill, and each is marked a takeover.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::irc_server::IrcServer;
use common::processes::{describe_all, example_binary, wait_until, Process};
use socketscience::{message, IrcChat, Node};

/// The example's command (same kind and fields).
#[message("coffee")]
pub struct Coffee {
    pub by: String,
    pub n: u64,
}

const NAMES: [&str; 3] = ["bot-a", "bot-b", "bot-c"];
const HEARTBEAT: Duration = Duration::from_millis(1_000);
/// The default peer timeout: three heartbeats.
const PEER_TIMEOUT: Duration = Duration::from_millis(3_000);
const JOBS: u64 = 200;
const KILL_AFTER: u64 = 100;
const EVERY: Duration = Duration::from_millis(50);
/// How long the last job may take to be served.
const SERVED_WITHIN: Duration = Duration::from_secs(60);

fn spawn(server: &str, i: usize) -> Process {
    Process::spawn(
        NAMES[i],
        Command::new(example_binary("coffee_bot"))
            .args(["--server", server, "--channel", "#coffee"])
            .args([
                "--nick",
                &format!("smokey-{}", NAMES[i]),
                "--name",
                NAMES[i],
            ])
            .args(["--heartbeat", &HEARTBEAT.as_millis().to_string()])
            .env("RUST_LOG", "socketscience=info")
            .stdin(Stdio::piped()),
    )
}

/// Each `SERVED <n> <by> <takeover>` line: job, takeover.
fn served(p: &Process) -> Vec<(u64, bool)> {
    p.stdout()
        .iter()
        .filter_map(|l| {
            let mut words = l.strip_prefix("SERVED ")?.split(' ');
            let n = words.next()?.parse().ok()?;
            let _by = words.next()?;
            Some((n, words.next()? == "1"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_the_serving_instance_every_job_served_duplicates_bounded_and_marked() {
    let server = IrcServer::start();
    let addr = server.addr();
    let mut fleet: Vec<Process> = (0..3).map(|i| spawn(&addr, i)).collect();
    // The relay posts at IrcChat's default rate, which ngIRCd passes on
    // without delay, so its queue batches the jobs: at 20 lines a second
    // (one job a line) the daemon's flood control read them at about
    // 3 a second, and the last was served a minute after it was sent.
    let relay = Node::builder("relay")
        .transport(IrcChat::new(&addr, "smokey-relay", "#coffee"))
        .trust("smokey-*")
        .heartbeat(HEARTBEAT)
        .default_node(false)
        .start()
        .await
        .unwrap();
    {
        let all: Vec<&Process> = fleet.iter().collect();
        wait_until("the fleet sharing", Duration::from_secs(60), &all, || {
            all.iter().all(|p| p.printed(|l| l == "SHARING 2"))
        });
    }
    let sharing = tokio::time::Instant::now();
    while relay
        .peers()
        .iter()
        .filter(|p| p.handles_shared("coffee"))
        .count()
        < 3
    {
        assert!(
            sharing.elapsed() < Duration::from_secs(30),
            "the relay never heard the fleet"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Past each newcomer's grace.
    tokio::time::sleep(HEARTBEAT * 2).await;

    let mut sent_at = Vec::new();
    let mut killed = None;
    for n in 0..JOBS {
        relay
            .send(Coffee {
                by: "@Undo".into(),
                n,
            })
            .await
            .unwrap();
        sent_at.push(Instant::now());
        tokio::time::sleep(EVERY).await;
        if n == KILL_AFTER {
            // The instance that served the latest job served.
            let latest = (0..3)
                .filter_map(|i| served(&fleet[i]).iter().map(|s| s.0).max().map(|m| (m, i)))
                .max()
                .expect("jobs served before the kill");
            fleet[latest.1].sigkill();
            killed = Some((latest.1, Instant::now()));
            eprintln!(
                "killed {} after it served job {}",
                NAMES[latest.1], latest.0
            );
        }
    }
    let (victim, kill_time) = killed.unwrap();
    let all: Vec<&Process> = fleet.iter().collect();
    let tally = || {
        let mut runs: BTreeMap<u64, Vec<(usize, bool)>> = BTreeMap::new();
        for (i, p) in fleet.iter().enumerate() {
            for (n, takeover) in served(p) {
                runs.entry(n).or_default().push((i, takeover));
            }
        }
        runs
    };
    let last_sent = Instant::now();
    while tally().len() as u64 != JOBS {
        let runs = tally();
        assert!(
            last_sent.elapsed() < SERVED_WITHIN,
            "every job served: not within {SERVED_WITHIN:?} of the last; never served: {:?}\n{}",
            (0..JOBS)
                .filter(|n| !runs.contains_key(n))
                .collect::<Vec<_>>(),
            describe_all(&all)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "every job served {:?} after the last was sent",
        last_sent.elapsed()
    );
    // Late takeovers would show here.
    std::thread::sleep(PEER_TIMEOUT);
    let runs = tally();
    let twice: Vec<_> = runs.iter().filter(|(_, r)| r.len() > 1).collect();
    let within = sent_at
        .iter()
        .filter(|t| **t <= kill_time && kill_time.duration_since(**t) <= PEER_TIMEOUT)
        .count();
    let takeovers: usize = runs
        .values()
        .flatten()
        .filter(|(i, t)| *i != victim && *t)
        .count();
    eprintln!(
        "{JOBS} jobs, {} served by the killed instance, {} served twice (bound: {within} sent \
         within one peer timeout before the kill), {takeovers} takeover runs in the survivors",
        runs.values()
            .flatten()
            .filter(|(i, _)| *i == victim)
            .count(),
        twice.len()
    );
    assert_eq!(runs.len() as u64, JOBS, "every job served at least once");
    assert!(
        twice.len() <= within,
        "{} served twice, more than the {within} sent within one peer timeout before the \
         kill: {twice:?}\n{}",
        twice.len(),
        describe_all(&all)
    );
    for (n, r) in &twice {
        assert!(r.len() == 2, "job {n} served {r:?}");
        assert!(
            r.iter().any(|(i, t)| *i != victim && *t),
            "job {n}, served twice, is not marked a takeover: {r:?}"
        );
    }
    assert!(takeovers >= twice.len());
    relay.shutdown().await.unwrap();
    for p in &mut fleet {
        drop(p.child.stdin.take());
    }
}
