//! Failover across processes on a real IRC daemon (ngIRCd): three
//! `examples/failover` processes elect the highest-priority one; the test
//! kills it with SIGKILL; exactly one of the other two reports itself
//! active within lease + one heartbeat + the chat's delay, and the other
//! never does; the killed instance, started again, comes back as a standby,
//! learns who is active, and stays a standby.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::irc_server::IrcServer;
use common::processes::{describe_all, example_binary, wait_until, Process};

const NAMES: [&str; 3] = ["Henders/EC2", "teward/vps", "Undo/laptop"];
const NICKS: [&str; 3] = ["smokey-henders", "smokey-teward", "smokey-undo"];
const PRIORITIES: [&str; 3] = ["30", "20", "10"];
const HEARTBEAT: Duration = Duration::from_millis(1_000);
const LEASE: Duration = Duration::from_millis(4_000);
/// The chat's delivery delay allowed for: the daemon's flood control and
/// the client's send rate hold a line for up to a second or two.
const CHAT_DELAY: Duration = Duration::from_millis(3_000);

/// Starts the `failover` example as instance `i`.
fn spawn(server: &str, i: usize) -> Process {
    Process::spawn(
        NAMES[i],
        Command::new(example_binary("failover"))
            .args(["--server", server, "--channel", "#failover"])
            .args([
                "--nick",
                NICKS[i],
                "--name",
                NAMES[i],
                "--priority",
                PRIORITIES[i],
            ])
            .args(["--heartbeat", &HEARTBEAT.as_millis().to_string()])
            .args(["--lease", &LEASE.as_millis().to_string()])
            .env("RUST_LOG", "socketscience=info")
            .stdin(Stdio::piped()),
    )
}

/// What a `failover` process reports.
impl Process {
    /// Its latest role line (`active` or `standby`).
    fn role(&self) -> Option<String> {
        self.stdout()
            .iter()
            .rev()
            .find_map(|l| l.strip_prefix("ROLE ").map(str::to_owned))
    }

    /// When it first reported itself active, if it did.
    fn became_active(&self) -> Option<Instant> {
        self.stdout_timed()
            .iter()
            .find(|(_, l)| l == "ROLE active")
            .map(|(t, _)| *t)
    }
}

#[test]
fn sigkill_the_active_instance_and_exactly_one_standby_takes_over() {
    let server = IrcServer::start();
    let addr = server.addr();
    let mut a = spawn(&addr, 0);
    let b = spawn(&addr, 1);
    let c = spawn(&addr, 2);

    // The highest priority is elected once everyone has listened a lease.
    wait_until(
        "the first election",
        Duration::from_secs(60),
        &[&a, &b, &c],
        || a.role().as_deref() == Some("active"),
    );
    std::thread::sleep(LEASE * 2);
    assert_eq!(a.role().as_deref(), Some("active"), "{}", a.describe());
    assert!(
        b.became_active().is_none() && c.became_active().is_none(),
        "a lower-priority instance was active\n{}",
        describe_all(&[&a, &b, &c])
    );
    // Everyone lists the active one.
    wait_until(
        "the peers listing the roles",
        Duration::from_secs(20),
        &[&a, &b, &c],
        || {
            b.printed(|l| l.starts_with("PEERS") && l.contains("Henders/EC2=active"))
                && c.printed(|l| l.starts_with("PEERS") && l.contains("Henders/EC2=active"))
        },
    );

    a.sigkill();
    let killed = Instant::now();
    let bound = LEASE + HEARTBEAT + CHAT_DELAY;
    wait_until("a takeover", bound * 3, &[&b, &c], || {
        b.became_active().is_some() || c.became_active().is_some()
    });
    let (winner, other) = if b.became_active().is_some() {
        (&b, &c)
    } else {
        (&c, &b)
    };
    let took = winner.became_active().unwrap() - killed;
    eprintln!(
        "{} took over {took:?} after the SIGKILL (bound {bound:?})",
        winner.name
    );
    assert!(
        took <= bound,
        "{} took over {took:?} after the kill, more than lease + heartbeat + delay ({bound:?})\n{}",
        winner.name,
        describe_all(&[&b, &c])
    );
    assert_eq!(
        winner.name, "teward/vps",
        "the best-ranked standby takes over"
    );

    // The killed one, started again, is a standby that learns who is active.
    let restarted = spawn(&addr, 0);
    wait_until(
        "the restarted instance learning the active",
        Duration::from_secs(30),
        &[&restarted],
        || restarted.printed(|l| l.starts_with("PEERS") && l.contains("teward/vps=active")),
    );
    std::thread::sleep(LEASE * 3);
    let fleet = [&restarted, &b, &c];
    assert_eq!(
        restarted.role().as_deref(),
        Some("standby"),
        "{}",
        describe_all(&fleet)
    );
    assert!(
        restarted.became_active().is_none(),
        "the restarted instance took over\n{}",
        describe_all(&fleet)
    );
    assert!(restarted.printed(|l| l == "ROLE standby"));
    assert_eq!(
        winner.role().as_deref(),
        Some("active"),
        "{}",
        describe_all(&fleet)
    );
    assert!(
        other.became_active().is_none(),
        "both standbys went active\n{}",
        describe_all(&fleet)
    );
}
