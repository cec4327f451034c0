//! Gap repair across processes on a real IRC daemon (ngIRCd), which keeps
//! no history: three `examples/irc_node` processes, one of them connected
//! through a TCP proxy that the test severs for more than 20 s while the
//! other two keep sending and the daemon stays up.
//!
//! - Afterwards every instance ran every note exactly once, in per-sender
//!   order; nothing was lost and the cut-off instance got what it missed
//!   through repair.
//! - The same with a sender killed and restarted during the cut: the
//!   cut-off instance counts what the dead session posted meanwhile as
//!   lost (it logs it), and runs everything of the new session, from its
//!   first note.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::irc_server::IrcServer;
use common::processes::{example_binary, wait_until, Process};
use common::tcp_proxy::TcpProxy;

const NAMES: [&str; 3] = ["Henders/EC2", "teward/vps", "Undo/laptop"];
const NICKS: [&str; 3] = ["smokey-henders", "smokey-teward", "smokey-undo"];
/// The instance behind the proxy.
const CUT: usize = 2;

/// Starts the `irc_node` example as instance `i`, listening to `peers`.
fn spawn(server: &str, i: usize, peers: &[usize], extra: &[&str]) -> Process {
    let peers: Vec<&str> = peers.iter().map(|&j| NICKS[j]).collect();
    Process::spawn(
        NAMES[i],
        Command::new(example_binary("irc_node"))
            .args(["--server", server, "--channel", "#repair"])
            .args(["--nick", NICKS[i], "--name", NAMES[i]])
            .args(["--peers", &peers.join(","), "--trust", "smokey-*"])
            .args(["--heartbeat", "2000", "--repair-window", "2000"])
            .args(["--backoff-max", "2000", "--rate", "2", "--burst", "5"])
            .args(["--timeout", "200000", "--wait-stdin"])
            .args(extra)
            .env("RUST_LOG", "socketscience=info")
            .stdin(Stdio::piped()),
    )
}

impl Process {
    /// The notes it ran from `from`, in order.
    fn ran(&self, from: &str) -> Vec<u64> {
        self.runs().remove(from).unwrap_or_default()
    }

    /// Closes its stdin: it shuts down.
    fn release(&mut self) {
        drop(self.child.stdin.take());
    }

    /// Waits for it to exit successfully; gives its `DONE` line's numbers.
    fn finish(&mut self, within: Duration) -> BTreeMap<String, u64> {
        self.release();
        self.wait_success(Instant::now() + within, within);
        self.done()
    }
}

/// The three instances, each sending `notes`; instance [`CUT`] reaches the
/// daemon through `proxy`.
fn start_fleet(server: &IrcServer, proxy: &TcpProxy, notes: &[&str]) -> Vec<Process> {
    (0..3)
        .map(|i| {
            let addr = if i == CUT {
                proxy.addr()
            } else {
                server.addr()
            };
            let peers: Vec<usize> = (0..3).filter(|&j| j != i).collect();
            spawn(&addr, i, &peers, notes)
        })
        .collect()
}

/// The cut: severs the proxy for `length`, then restores it.
fn cut_for(proxy: &TcpProxy, length: Duration) {
    proxy.sever();
    std::thread::sleep(length);
    proxy.restore();
}

#[test]
fn an_instance_cut_off_for_20_s_gets_everything_through_repair() {
    let server = IrcServer::start();
    let proxy = TcpProxy::start(&server.addr());
    let count = 40u64;
    let notes = ["--count", "40", "--interval", "700", "--expect", "120"];
    let mut fleet = start_fleet(&server, &proxy, &notes);
    {
        let refs: Vec<&Process> = fleet.iter().collect();
        wait_until(
            "the cut-off instance got going",
            Duration::from_secs(60),
            &refs,
            || fleet[CUT].ran(NAMES[0]).len() >= 4 && fleet[CUT].ran(NAMES[1]).len() >= 4,
        );
    }
    let before = fleet[CUT].runs();
    cut_for(&proxy, Duration::from_secs(21));
    {
        let refs: Vec<&Process> = fleet.iter().collect();
        wait_until(
            "every instance ran every note",
            Duration::from_secs(150),
            &refs,
            || fleet.iter().all(|i| i.printed(|l| l.starts_with("ALL "))),
        );
    }
    let done: Vec<BTreeMap<String, u64>> = fleet
        .iter_mut()
        .map(|i| i.finish(Duration::from_secs(60)))
        .collect();
    let expected: Vec<u64> = (0..count).collect();
    for (instance, done) in fleet.iter().zip(&done) {
        let runs = instance.runs();
        assert_eq!(runs.len(), 3, "{}", instance.describe());
        for (from, indices) in &runs {
            assert_eq!(
                indices,
                &expected,
                "{} did not run {from}'s notes exactly once in order\n{}",
                instance.name,
                instance.describe()
            );
        }
        // (Duplicates may be counted: after reconnecting, the IRC transport
        // posts again the lines the server may not have had.)
        assert_eq!(done["lost"], 0, "{}", instance.describe());
    }
    let cut = &done[CUT];
    eprintln!(
        "before the cut: {before:?}; after: {done:?}; proxy refused {}",
        proxy.refused()
    );
    assert!(cut["connections"] >= 2, "{}", fleet[CUT].describe());
    assert!(
        cut["repaired"] > 0,
        "the notes sent during the cut came through repair\n{}",
        fleet[CUT].describe()
    );
    assert!(
        proxy.refused() > 0,
        "the instance tried to reconnect during the cut"
    );
}

#[test]
fn a_sender_restarted_during_the_cut_leaves_a_counted_lost_range() {
    let server = IrcServer::start();
    let proxy = TcpProxy::start(&server.addr());
    let notes = ["--count", "40", "--interval", "700", "--expect", "0"];
    let mut fleet = start_fleet(&server, &proxy, &notes);
    {
        let refs: Vec<&Process> = fleet.iter().collect();
        wait_until(
            "the cut-off instance got going",
            Duration::from_secs(60),
            &refs,
            || fleet[CUT].ran(NAMES[0]).len() >= 4,
        );
    }
    let started = Instant::now();
    proxy.sever();
    // The first session of Henders/EC2 goes on for a few seconds, then dies
    // (SIGKILL) and a new process of the same name starts.
    std::thread::sleep(Duration::from_secs(5));
    let _ = fleet[0].child.kill();
    let _ = fleet[0].child.wait();
    let old_session_heard_by_witness = fleet[1].ran(NAMES[0]);
    let restarted = spawn(
        &server.addr(),
        0,
        &[1],
        &[
            "--count",
            "10",
            "--interval",
            "500",
            "--first-index",
            "1000",
            "--expect",
            "0",
        ],
    );
    std::thread::sleep(Duration::from_secs(21).saturating_sub(started.elapsed()));
    proxy.restore();
    let new: Vec<u64> = (1000..1010).collect();
    let teward: Vec<u64> = (0..40).collect();
    {
        let refs = [&fleet[1], &fleet[2], &restarted];
        wait_until(
            "the cut-off instance ran the new session and the witness's notes",
            Duration::from_secs(150),
            &refs,
            || {
                let runs = fleet[CUT].runs();
                let henders = runs.get(NAMES[0]).cloned().unwrap_or_default();
                henders.ends_with(&new) && runs.get(NAMES[1]) == Some(&teward)
            },
        );
    }
    let mut restarted = restarted;
    let witness_done = fleet[1].finish(Duration::from_secs(60));
    let cut_done = fleet[CUT].finish(Duration::from_secs(60));
    let _ = restarted.finish(Duration::from_secs(60));
    let cut_henders = fleet[CUT].ran(NAMES[0]);
    let witness_henders = fleet[1].ran(NAMES[0]);
    let old_heard = cut_henders.len() - new.len();
    // Both ran the first session from its first note, in order, without a
    // hole, then all of the new one.
    assert_eq!(
        &cut_henders[..old_heard],
        &(0..old_heard as u64).collect::<Vec<_>>()[..]
    );
    assert_eq!(
        &cut_henders[old_heard..],
        &new[..],
        "{}",
        fleet[CUT].describe()
    );
    let witness_old = witness_henders.len() - new.len();
    assert_eq!(
        witness_henders,
        (0..witness_old as u64)
            .chain(1000..1010)
            .collect::<Vec<_>>(),
        "{}",
        fleet[1].describe()
    );
    assert!(witness_old >= old_session_heard_by_witness.len());
    // What the first session posted during the cut is lost for the cut-off
    // instance: counted and logged.
    assert!(
        witness_old > old_heard,
        "the first session posted during the cut"
    );
    assert_eq!(
        cut_done["lost"],
        (witness_old - old_heard) as u64,
        "{}",
        fleet[CUT].describe()
    );
    assert!(
        fleet[CUT]
            .stderr
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("envelopes lost") && l.contains(NAMES[0])),
        "the loss is logged with its sender\n{}",
        fleet[CUT].describe()
    );
    assert!(cut_done["repaired"] > 0, "{}", fleet[CUT].describe());
    assert_eq!(witness_done["lost"], 0, "{}", fleet[1].describe());
}
