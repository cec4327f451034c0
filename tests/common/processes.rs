//! Example programs run as OS processes by the multi-process tests
//! (irc_fleet, irc_repair, irc_failover, watch, watch_rooms), and the
//! `socketscience` command they watch with.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The fleet of `examples/failover.rs` processes the tests run: instance
/// names, nicks and priorities (the first is elected).
pub const NAMES: [&str; 3] = ["Henders/EC2", "teward/vps", "Undo/laptop"];
pub const NICKS: [&str; 3] = ["smokey-henders", "smokey-teward", "smokey-undo"];
pub const PRIORITIES: [&str; 3] = ["30", "20", "10"];
/// Their heartbeat and lease: the IRC row of `guide::coordination`'s "How fast".
pub const HEARTBEAT: Duration = Duration::from_millis(1_000);
pub const LEASE: Duration = Duration::from_millis(4_000);

/// Starts `examples/failover.rs` as instance `i` of the fleet, in
/// `channel` on the IRC server `server`, with `more` options.
pub fn spawn_failover(server: &str, channel: &str, i: usize, more: &[&str]) -> Process {
    Process::spawn(
        NAMES[i],
        Command::new(example_binary("failover"))
            .args(["--server", server, "--channel", channel])
            .args(["--nick", NICKS[i], "--name", NAMES[i]])
            .args(["--priority", PRIORITIES[i]])
            .args(["--heartbeat", &HEARTBEAT.as_millis().to_string()])
            .args(["--lease", &LEASE.as_millis().to_string()])
            .args(more)
            .env("RUST_LOG", "socketscience=info")
            .stdin(Stdio::piped()),
    )
}

/// The example `name` built beside this test binary (`cargo test` builds
/// the examples before it runs the tests).
pub fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary lives in target/<profile>/deps");
    let binary = profile_dir.join("examples").join(name);
    assert!(
        binary.is_file(),
        "{} is missing: `cargo test` builds the examples before running tests; \
         with a target filter, build it first (`cargo build -p socketscience-fleet \
         --example {name}`, with the same features)",
        binary.display()
    );
    binary
}

/// The `socketscience` command, built from this checkout.
pub fn cli_binary() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "-q",
            "-p",
            "socketscience-cli",
            "--bin",
            "socketscience",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building socketscience-cli failed");
    let exe = std::env::current_exe().unwrap();
    let binary = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("socketscience");
    assert!(binary.is_file(), "{} is missing", binary.display());
    binary
}

/// One example program running as an OS process: its standard output
/// (each line with when it arrived) and error collected line by line, by a
/// thread each. It is killed when dropped.
pub struct Process {
    /// The instance's name, in failure messages.
    pub name: &'static str,
    pub child: Child,
    stdout: Arc<Mutex<Vec<(Instant, String)>>>,
    /// The lines it wrote to standard error so far (its logs).
    pub stderr: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
}

impl Process {
    /// Starts `command` with its standard output and error piped here.
    pub fn spawn(name: &'static str, command: &mut Command) -> Process {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({:?}): {e}", command.get_program()));
        let mut readers = Vec::new();
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let sink = stdout.clone();
        let stream = child.stdout.take().expect("piped stdout");
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                sink.lock().unwrap().push((Instant::now(), line));
            }
        }));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = stderr.clone();
        let stream = child.stderr.take().expect("piped stderr");
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        }));
        Process {
            name,
            child,
            stdout,
            stderr,
            readers,
        }
    }

    /// The lines it printed so far.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout
            .lock()
            .unwrap()
            .iter()
            .map(|(_, l)| l.clone())
            .collect()
    }

    /// The lines it printed so far, each with when it arrived.
    pub fn stdout_timed(&self) -> Vec<(Instant, String)> {
        self.stdout.lock().unwrap().clone()
    }

    /// Whether it printed a line that `line` accepts.
    pub fn printed(&self, line: impl Fn(&str) -> bool) -> bool {
        self.stdout.lock().unwrap().iter().any(|(_, l)| line(l))
    }

    /// Its output so far, for a failure message.
    pub fn describe(&self) -> String {
        format!(
            "--- {} stdout ---\n{}\n--- {} stderr ---\n{}",
            self.name,
            self.stdout().join("\n"),
            self.name,
            self.stderr.lock().unwrap().join("\n")
        )
    }

    /// Waits until it exits, which must be successful and before
    /// `deadline` (`within` names the limit in the failure); then reads the
    /// rest of its output (the readers end at the end of the pipes).
    pub fn wait_success(&mut self, deadline: Instant, within: Duration) {
        loop {
            match self.child.try_wait().expect("poll the instance") {
                Some(status) if status.success() => break,
                Some(status) => panic!("{} exited with {status}\n{}", self.name, self.describe()),
                None if Instant::now() >= deadline => {
                    panic!(
                        "{} did not finish within {within:?}\n{}",
                        self.name,
                        self.describe()
                    )
                }
                None => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }

    /// Writes `line` to its standard input (a command: see
    /// `examples/failover.rs`).
    pub fn command(&mut self, line: &str) {
        use std::io::Write as _;
        let stdin = self
            .child
            .stdin
            .as_mut()
            .expect("started with a piped stdin");
        writeln!(stdin, "{line}").expect("write to the instance's stdin");
        stdin.flush().expect("flush the instance's stdin");
    }

    /// Kills it (SIGKILL on Unix: no goodbye, no flush) and reaps it.
    pub fn sigkill(&mut self) {
        self.child.kill().expect("SIGKILL the instance");
        let _ = self.child.wait();
    }

    /// The notes an `irc_node` ran (its `DISPATCH <from> <index>`
    /// lines), by sender, in order.
    pub fn runs(&self) -> BTreeMap<String, Vec<u64>> {
        let mut by_sender: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for line in self.stdout() {
            if let Some(rest) = line.strip_prefix("DISPATCH ") {
                let (from, index) = rest.rsplit_once(' ').expect("DISPATCH <from> <index>");
                by_sender
                    .entry(from.to_owned())
                    .or_default()
                    .push(index.parse().expect("an index"));
            }
        }
        by_sender
    }

    /// The numbers of an `irc_node`'s last line, `DONE key=value ...`.
    pub fn done(&self) -> BTreeMap<String, u64> {
        let lines = self.stdout();
        let done = lines
            .iter()
            .find_map(|l| l.strip_prefix("DONE "))
            .unwrap_or_else(|| panic!("{} printed no DONE line\n{}", self.name, self.describe()));
        done.split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.parse().expect("a number")))
            .collect()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The output of each process of `fleet`, for a failure message.
pub fn describe_all(fleet: &[&Process]) -> String {
    fleet
        .iter()
        .map(|p| p.describe())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits until `done` holds, polling; panics with the fleet's output after
/// `limit`.
pub fn wait_until(what: &str, limit: Duration, fleet: &[&Process], done: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {limit:?}\n{}",
            describe_all(fleet)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
