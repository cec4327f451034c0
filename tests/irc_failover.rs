//! Failover across processes on a real IRC daemon (ngIRCd): three
//! `examples/failover` processes elect the highest-priority one; the test
//! kills it with SIGKILL; exactly one of the other two reports itself
//! active within lease + one heartbeat + the chat's delay, and the other
//! never does; the killed instance, started again, comes back as a standby,
//! learns who is active, and stays a standby. And fencing: the active one,
//! cut off from the daemon, is replaced; once the cut heals it steps down,
//! its fencing token is lower than its successor's, and a toy service that
//! refuses lower tokens takes writes from one active only.

mod common;

use std::time::{Duration, Instant};

use common::irc_server::IrcServer;
use common::processes::{describe_all, spawn_failover, wait_until, Process, HEARTBEAT, LEASE};
use common::tcp_proxy::TcpProxy;

/// The chat's delivery delay allowed for: the daemon's flood control and
/// the client's send rate hold a line for up to a second or two.
const CHAT_DELAY: Duration = Duration::from_millis(3_000);

/// Starts the `failover` example as instance `i`.
fn spawn(server: &str, i: usize) -> Process {
    spawn_with(server, i, &[])
}

/// Starts the `failover` example as instance `i`, with more options.
fn spawn_with(server: &str, i: usize, more: &[&str]) -> Process {
    spawn_failover(server, "#failover", i, more)
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

    /// Its latest fencing token (`TOKEN` lines), if it has one.
    fn token(&self) -> Option<u64> {
        self.stdout()
            .iter()
            .rev()
            .find_map(|l| l.strip_prefix("TOKEN "))
            .and_then(|t| t.parse().ok())
    }

    /// Its writes to the fenced service (`WRITE` lines): when, with which
    /// token.
    fn writes(&self) -> Vec<(Instant, u64)> {
        self.stdout_timed()
            .iter()
            .filter_map(|(t, l)| Some((*t, l.strip_prefix("WRITE ")?.parse().ok()?)))
            .collect()
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

/// A write to the fenced service: when it arrived, from whom, its token.
type Write = (Instant, &'static str, u64);

/// The toy service the active instance writes to: the writes of every
/// process, in the order they arrived, through a fence that keeps the
/// highest token seen and refuses lower ones. Gives the writes taken and
/// refused, each with its writer's name.
fn fence(fleet: &[&Process]) -> (Vec<Write>, Vec<(&'static str, u64)>) {
    let mut writes: Vec<Write> = fleet
        .iter()
        .flat_map(|p| p.writes().into_iter().map(|(t, token)| (t, p.name, token)))
        .collect();
    writes.sort_by_key(|w| w.0);
    let (mut highest, mut taken, mut refused) = (0, Vec::new(), Vec::new());
    for (at, who, token) in writes {
        if token < highest {
            refused.push((who, token));
        } else {
            highest = token;
            taken.push((at, who, token));
        }
    }
    (taken, refused)
}

#[test]
fn a_cut_off_active_is_replaced_and_fenced_out_by_its_successors_higher_token() {
    let server = IrcServer::start();
    let proxy = TcpProxy::start(&server.addr());
    let write = ["--write-every", "200"];
    let a = spawn_with(&proxy.addr(), 0, &write);
    let b = spawn_with(&server.addr(), 1, &write);
    let c = spawn_with(&server.addr(), 2, &write);
    let fleet = [&a, &b, &c];
    wait_until(
        "the first election",
        Duration::from_secs(60),
        &fleet,
        || a.role().as_deref() == Some("active") && a.token().is_some(),
    );
    let old = a.token().unwrap();
    // The others heard a's claim (its term) before the cut: b's claim is of
    // the next term.
    let listed = format!("{}=active", a.name);
    wait_until("a's claim heard", Duration::from_secs(20), &fleet, || {
        b.printed(|l| l.starts_with("PEERS") && l.contains(&listed))
            && c.printed(|l| l.starts_with("PEERS") && l.contains(&listed))
    });

    // a's network fails: the others stop hearing it and b takes over,
    // while a, alone, still believes itself active and goes on writing.
    proxy.sever();
    wait_until("a takeover", Duration::from_secs(60), &fleet, || {
        b.role().as_deref() == Some("active")
    });
    std::thread::sleep(LEASE);
    assert_eq!(a.role().as_deref(), Some("active"), "{}", a.describe());
    let new = b.token().expect("the new active has a token");
    assert!(new > old, "b's token {new} is not above a's {old}");

    // The cut heals: a hears b's stronger claim and steps down.
    proxy.restore();
    wait_until("a stepping down", Duration::from_secs(90), &fleet, || {
        a.role().as_deref() == Some("standby")
    });
    assert_eq!(a.token(), None, "{}", a.describe());
    assert_eq!(b.role().as_deref(), Some("active"));
    assert!(c.became_active().is_none(), "{}", describe_all(&fleet));
    std::thread::sleep(HEARTBEAT * 3);

    // The service took a's writes until b's first, and b's only after it;
    // a's writes with its stale token were refused.
    let (taken, refused) = fence(&fleet);
    let first_b = taken
        .iter()
        .position(|w| w.1 == "teward/vps")
        .expect("b's writes were taken");
    assert!(
        taken[..first_b]
            .iter()
            .all(|w| w.1 == "Henders/EC2" && w.2 == old),
        "{taken:?}"
    );
    assert!(
        taken[first_b..]
            .iter()
            .all(|w| w.1 == "teward/vps" && w.2 == new),
        "two writers after the takeover: {taken:?}\n{}",
        describe_all(&fleet)
    );
    assert!(
        refused
            .iter()
            .any(|&(who, t)| who == "Henders/EC2" && t == old),
        "the cut-off active wrote nothing after the takeover: {refused:?}"
    );
    assert!(refused.iter().all(|&(who, _)| who == "Henders/EC2"));
}
