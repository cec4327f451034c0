//! Failover across processes on a real IRC daemon (ngIRCd): three
//! `examples/failover` processes elect the highest-priority one; the test
//! kills it with SIGKILL; exactly one of the other two reports itself
//! active within lease + one heartbeat + the chat's delay, and the other
//! never does; the killed instance, started again, comes back as a standby,
//! learns who is active, and stays a standby.

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::irc_server::IrcServer;
use common::processes::example_binary;

const NAMES: [&str; 3] = ["Henders/EC2", "teward/vps", "Undo/laptop"];
const NICKS: [&str; 3] = ["smokey-henders", "smokey-teward", "smokey-undo"];
const PRIORITIES: [&str; 3] = ["30", "20", "10"];
const HEARTBEAT: Duration = Duration::from_millis(1_000);
const LEASE: Duration = Duration::from_millis(4_000);
/// The chat's delivery delay allowed for: the daemon's flood control and
/// the client's send rate hold a line for up to a second or two.
const CHAT_DELAY: Duration = Duration::from_millis(3_000);

/// One `failover` process; its output collected line by line, with when
/// each line arrived.
struct Instance {
    name: &'static str,
    child: Child,
    stdout: Arc<Mutex<Vec<(Instant, String)>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Instance {
    fn spawn(server: &str, i: usize) -> Instance {
        let mut child = Command::new(example_binary("failover"))
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
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the failover example");
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push((Instant::now(), line));
            }
        });
        let err = Arc::new(Mutex::new(Vec::new()));
        let sink = err.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Instance {
            name: NAMES[i],
            child,
            stdout: out,
            stderr: err,
        }
    }

    /// Its latest role line (`active` or `standby`).
    fn role(&self) -> Option<String> {
        self.stdout
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find_map(|(_, l)| l.strip_prefix("ROLE ").map(str::to_owned))
    }

    /// When it first reported itself active, if it did.
    fn became_active(&self) -> Option<Instant> {
        self.stdout
            .lock()
            .unwrap()
            .iter()
            .find(|(_, l)| l == "ROLE active")
            .map(|(t, _)| *t)
    }

    fn printed(&self, line: impl Fn(&str) -> bool) -> bool {
        self.stdout.lock().unwrap().iter().any(|(_, l)| line(l))
    }

    fn describe(&self) -> String {
        let out: Vec<String> = self
            .stdout
            .lock()
            .unwrap()
            .iter()
            .map(|(_, l)| l.clone())
            .collect();
        format!(
            "--- {} stdout ---\n{}\n--- stderr ---\n{}",
            self.name,
            out.join("\n"),
            self.stderr.lock().unwrap().join("\n")
        )
    }

    fn sigkill(&mut self) {
        // `Child::kill` sends SIGKILL on Unix: no goodbye, no flush.
        self.child.kill().expect("SIGKILL the instance");
        let _ = self.child.wait();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn describe_all(fleet: &[&Instance]) -> String {
    fleet
        .iter()
        .map(|i| i.describe())
        .collect::<Vec<_>>()
        .join("\n")
}

fn wait_until(what: &str, limit: Duration, fleet: &[&Instance], done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < limit,
            "{what}: not within {limit:?}\n{}",
            describe_all(fleet)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigkill_the_active_instance_and_exactly_one_standby_takes_over() {
    let server = IrcServer::start();
    let addr = server.addr();
    let mut a = Instance::spawn(&addr, 0);
    let b = Instance::spawn(&addr, 1);
    let c = Instance::spawn(&addr, 2);

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
    let restarted = Instance::spawn(&addr, 0);
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
