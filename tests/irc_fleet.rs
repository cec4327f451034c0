//! A fleet across processes on a real IRC daemon (ngIRCd): three
//! `examples/irc_node` processes, each broadcasting N notes, each of which
//! must dispatch all 3·N exactly once, in per-sender order; and the same
//! with the daemon killed (SIGKILL) and restarted in the middle.
//!
//! The example binary is the one `cargo test` builds next to this test
//! (`target/<profile>/examples/irc_node`).

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::irc_server::IrcServer;
use common::processes::{collect_output, example_binary, Output};

const NAMES: [&str; 3] = ["Henders/EC2", "teward/vps", "Undo/laptop"];
const NICKS: [&str; 3] = ["smokey-henders", "smokey-teward", "smokey-undo"];

/// One `irc_node` process, its stdout collected line by line.
struct Instance {
    name: &'static str,
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Instance {
    fn spawn(server: &IrcServer, channel: &str, i: usize, count: u64, extra: &[&str]) -> Instance {
        let peers: Vec<&str> = NICKS
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, n)| *n)
            .collect();
        let mut child = Command::new(example_binary("irc_node"))
            .args(["--server", &server.addr()])
            .args(["--nick", NICKS[i], "--name", NAMES[i], "--channel", channel])
            .args(["--peers", &peers.join(","), "--trust", "smokey-*"])
            .args(["--count", &count.to_string()])
            .args(["--timeout", "150000"])
            .args(extra)
            .env("RUST_LOG", "socketscience=info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the irc_node example");
        let Output {
            stdout,
            stderr,
            readers,
        } = collect_output(&mut child);
        Instance {
            name: NAMES[i],
            child,
            stdout,
            stderr,
            readers,
        }
    }

    fn dispatched(&self) -> usize {
        self.stdout
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with("DISPATCH "))
            .count()
    }

    fn describe(&self) -> String {
        format!(
            "--- {} stdout ---\n{}\n--- {} stderr ---\n{}",
            self.name,
            self.stdout.lock().unwrap().join("\n"),
            self.name,
            self.stderr.lock().unwrap().join("\n")
        )
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for every instance to exit, successfully; panics with their
/// output otherwise.
fn wait_for_exit(instances: &mut [Instance], within: Duration) {
    let deadline = Instant::now() + within;
    for instance in instances.iter_mut() {
        loop {
            match instance.child.try_wait().expect("poll the instance") {
                Some(status) if status.success() => break,
                Some(status) => panic!(
                    "{} exited with {status}\n{}",
                    instance.name,
                    instance.describe()
                ),
                None if Instant::now() >= deadline => {
                    panic!(
                        "{} did not finish within {within:?}\n{}",
                        instance.name,
                        instance.describe()
                    )
                }
                None => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
    // The last lines: the readers end at the end of the pipes.
    for instance in instances.iter_mut() {
        for reader in instance.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

/// Every instance dispatched each of the `count` notes of each instance
/// exactly once, in the order its sender sent them. Returns the `DONE`
/// line's numbers of each instance.
fn check_deliveries(instances: &[Instance], count: u64) -> Vec<BTreeMap<String, u64>> {
    let expected: Vec<u64> = (0..count).collect();
    instances
        .iter()
        .map(|instance| {
            let lines = instance.stdout.lock().unwrap().clone();
            let mut by_sender: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
            for line in &lines {
                if let Some(rest) = line.strip_prefix("DISPATCH ") {
                    let (from, index) = rest.rsplit_once(' ').expect("DISPATCH <from> <index>");
                    by_sender
                        .entry(from)
                        .or_default()
                        .push(index.parse().expect("an index"));
                }
            }
            assert_eq!(
                by_sender.keys().copied().collect::<Vec<_>>(),
                {
                    let mut names = NAMES.to_vec();
                    names.sort();
                    names
                },
                "{} heard from other senders than the fleet\n{}",
                instance.name,
                instance.describe()
            );
            for (from, indices) in &by_sender {
                assert_eq!(
                    indices,
                    &expected,
                    "{} did not dispatch the notes of {from} exactly once in order\n{}",
                    instance.name,
                    instance.describe()
                );
            }
            let done = lines
                .iter()
                .find_map(|l| l.strip_prefix("DONE "))
                .unwrap_or_else(|| {
                    panic!(
                        "{} printed no DONE line\n{}",
                        instance.name,
                        instance.describe()
                    )
                });
            done.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.parse().expect("a number")))
                .collect()
        })
        .collect()
}

#[test]
fn three_processes_each_dispatch_every_message_once_in_order() {
    let server = IrcServer::start();
    let count = 20;
    let started = Instant::now();
    let mut fleet: Vec<Instance> = (0..3)
        .map(|i| Instance::spawn(&server, "#fleet", i, count, &["--interval", "100"]))
        .collect();
    wait_for_exit(&mut fleet, Duration::from_secs(120));
    let done = check_deliveries(&fleet, count);
    eprintln!(
        "3 processes x {count} notes, all dispatched everywhere in {:?}: {done:?}",
        started.elapsed()
    );
    for (instance, done) in fleet.iter().zip(&done) {
        assert_eq!(done["dispatched"], 3 * count, "{}", instance.describe());
        assert_eq!(
            done["connections"],
            1,
            "{} reconnected\n{}",
            instance.name,
            instance.describe()
        );
        assert_eq!(done["duplicates"], 0, "{}", instance.describe());
    }
    let log = server.log();
    assert!(
        !log.contains("exhausted") && !log.contains("Flood"),
        "the daemon complained:\n{log}"
    );
}

#[test]
fn every_message_is_delivered_once_across_a_daemon_restart() {
    let mut server = IrcServer::start();
    let count = 30;
    let started = Instant::now();
    // A note every 300 ms: the instances are still sending when the daemon dies.
    let extra = ["--interval", "300", "--backoff-max", "2000"];
    let mut fleet: Vec<Instance> = (0..3)
        .map(|i| Instance::spawn(&server, "#fleet", i, count, &extra))
        .collect();

    // Kill the daemon once every instance has dispatched a few notes.
    let deadline = Instant::now() + Duration::from_secs(60);
    while fleet.iter().any(|i| i.dispatched() < 8) {
        assert!(
            Instant::now() < deadline,
            "the fleet did not get going\n{}",
            fleet
                .iter()
                .map(Instance::describe)
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let before: Vec<usize> = fleet.iter().map(Instance::dispatched).collect();
    server.kill();
    std::thread::sleep(Duration::from_secs(2));
    server.restart();

    wait_for_exit(&mut fleet, Duration::from_secs(150));
    let done = check_deliveries(&fleet, count);
    eprintln!(
        "restart after {before:?} dispatches; 3 x {count} notes all dispatched once in {:?}: {done:?}",
        started.elapsed()
    );
    for (instance, done) in fleet.iter().zip(&done) {
        assert_eq!(done["dispatched"], 3 * count, "{}", instance.describe());
        assert!(
            done["connections"] >= 2,
            "{} did not reconnect\n{}",
            instance.name,
            instance.describe()
        );
    }
    assert!(
        before.iter().all(|&n| n < 3 * count as usize),
        "the daemon died after the fleet was done: {before:?}"
    );
}

/// Issue 18's goal on a real daemon with its stock flood control (lines of
/// about 400 bytes, about one a second per client after a burst): three
/// instances each send 300 of SmokeDetector's pings at once; every one is
/// dispatched everywhere, in each sender's order. The time it took is
/// printed (BENCHMARKS.md); the only limit is the hang guard.
#[test]
fn three_processes_sending_three_hundred_pings_each_dispatch_them_all() {
    let server = IrcServer::start();
    let count = 300;
    let mut fleet: Vec<Instance> = (0..3)
        .map(|i| Instance::spawn(&server, "#pings", i, count, &["--pings"]))
        .collect();
    wait_for_exit(&mut fleet, Duration::from_secs(150));
    let done = check_deliveries(&fleet, count);
    for (instance, done) in fleet.iter().zip(&done) {
        assert_eq!(done["dispatched"], 3 * count, "{}", instance.describe());
        assert_eq!(done["duplicates"], 0, "{}", instance.describe());
        assert_eq!(done["lost"], 0, "{}", instance.describe());
        let out = instance.stdout.lock().unwrap();
        assert!(
            !out.iter().any(|l| l.starts_with("DISORDER")),
            "{}",
            instance.describe()
        );
    }
    let slowest = done.iter().map(|d| d["all_ms"]).max().unwrap_or(0);
    let lines: Vec<u64> = done.iter().map(|d| d["posted"]).collect();
    eprintln!(
        "3 processes x {count} pings: every one dispatched everywhere {slowest} ms after the \
         first send; lines posted {lines:?}"
    );
    let log = server.log();
    assert!(
        !log.contains("exhausted") && !log.contains("Flood"),
        "the daemon complained:\n{log}"
    );
}
