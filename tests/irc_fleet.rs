//! A fleet across processes on a real IRC daemon (ngIRCd): three
//! `examples/irc_node` processes, each broadcasting N notes, each of which
//! must dispatch all 3·N exactly once, in per-sender order; and the same
//! with the daemon killed (SIGKILL) and restarted in the middle; and that
//! again on a daemon that speaks TLS only, its CA given with `--tls-ca`.
//!
//! The example binary is the one `cargo test` builds next to this test
//! (`target/<profile>/examples/irc_node`).

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::irc_server::{IrcServer, Options};
use common::processes::{example_binary, Process};

const NAMES: [&str; 3] = ["Henders/EC2", "teward/vps", "Undo/laptop"];
const NICKS: [&str; 3] = ["smokey-henders", "smokey-teward", "smokey-undo"];

/// Starts the `irc_node` example as instance `i`, sending `count` notes.
fn spawn(server: &IrcServer, channel: &str, i: usize, count: u64, extra: &[&str]) -> Process {
    let peers: Vec<&str> = NICKS
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != i)
        .map(|(_, n)| *n)
        .collect();
    Process::spawn(
        NAMES[i],
        Command::new(example_binary("irc_node"))
            .args(["--server", &server.addr()])
            .args(["--nick", NICKS[i], "--name", NAMES[i], "--channel", channel])
            .args(["--peers", &peers.join(","), "--trust", "smokey-*"])
            .args(["--count", &count.to_string()])
            .args(["--timeout", "150000"])
            .args(extra)
            .env("RUST_LOG", "socketscience=info")
            .stdin(Stdio::null()),
    )
}

impl Process {
    /// How many notes it dispatched so far.
    fn dispatched(&self) -> usize {
        self.stdout()
            .iter()
            .filter(|l| l.starts_with("DISPATCH "))
            .count()
    }
}

/// Waits for every instance to exit, successfully; panics with their
/// output otherwise.
fn wait_for_exit(instances: &mut [Process], within: Duration) {
    let deadline = Instant::now() + within;
    for instance in instances.iter_mut() {
        instance.wait_success(deadline, within);
    }
}

/// Every instance dispatched each of the `count` notes of each instance
/// exactly once, in the order its sender sent them. Returns the `DONE`
/// line's numbers of each instance.
fn check_deliveries(instances: &[Process], count: u64) -> Vec<BTreeMap<String, u64>> {
    let expected: Vec<u64> = (0..count).collect();
    instances
        .iter()
        .map(|instance| {
            let by_sender = instance.runs();
            assert_eq!(
                by_sender.keys().map(String::as_str).collect::<Vec<_>>(),
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
            instance.done()
        })
        .collect()
}

#[test]
fn three_processes_each_dispatch_every_message_once_in_order() {
    let server = IrcServer::start();
    let count = 20;
    let started = Instant::now();
    let mut fleet: Vec<Process> = (0..3)
        .map(|i| spawn(&server, "#fleet", i, count, &["--interval", "100"]))
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
    across_a_restart(IrcServer::start(), &[]);
}

/// Issue 29: the same on a TLS-only daemon (its certificate signed by a
/// test CA made now): every connection, the reconnects too, is TLS.
#[test]
fn every_message_is_delivered_once_over_tls_across_a_daemon_restart() {
    let server = IrcServer::start_with(Options {
        tls: true,
        ..Options::default()
    });
    let ca = server.ca_file().display().to_string();
    across_a_restart(server, &["--tls-ca", &ca]);
}

/// Three processes send notes while the daemon is killed and restarted;
/// each dispatches every note once, in order, and reconnected.
fn across_a_restart(mut server: IrcServer, extra: &[&str]) {
    let count = 30;
    let started = Instant::now();
    // A note every 300 ms: the instances are still sending when the daemon dies.
    let mut extra = extra.to_vec();
    extra.extend(["--interval", "300", "--backoff-max", "2000"]);
    let mut fleet: Vec<Process> = (0..3)
        .map(|i| spawn(&server, "#fleet", i, count, &extra))
        .collect();

    // Kill the daemon once every instance has dispatched a few notes.
    let deadline = Instant::now() + Duration::from_secs(60);
    while fleet.iter().any(|i| i.dispatched() < 8) {
        assert!(
            Instant::now() < deadline,
            "the fleet did not get going\n{}",
            fleet
                .iter()
                .map(Process::describe)
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let before: Vec<usize> = fleet.iter().map(Process::dispatched).collect();
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
    let mut fleet: Vec<Process> = (0..3)
        .map(|i| spawn(&server, "#pings", i, count, &["--pings"]))
        .collect();
    wait_for_exit(&mut fleet, Duration::from_secs(150));
    let done = check_deliveries(&fleet, count);
    for (instance, done) in fleet.iter().zip(&done) {
        assert_eq!(done["dispatched"], 3 * count, "{}", instance.describe());
        assert_eq!(done["duplicates"], 0, "{}", instance.describe());
        assert_eq!(done["lost"], 0, "{}", instance.describe());
        let out = instance.stdout();
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
