//! `socketscience watch` in a real terminal (tmux) beside three
//! `examples/failover` processes on a real IRC daemon (ngIRCd): the screen
//! lists the three instances and which one is active; after the active one
//! is killed (SIGKILL), it shows the new active one and the killed one gone
//! within the peer timeout. It posts nothing: a raw IRC client in the
//! channel sees no message from it, the fleet posts from the same accounts
//! with and without it, and no instance ever lists it as a peer.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::irc_server::IrcServer;
use common::processes::{
    cli_binary, describe_all, spawn_failover, wait_until, Process, HEARTBEAT, NICKS,
};

const CHANNEL: &str = "#watched";
const WATCH_NICK: &str = "fleet-watcher";

fn spawn(server: &str, i: usize) -> Process {
    spawn_failover(server, CHANNEL, i, &[])
}

/// A plain IRC client in the channel, counting the messages each nick
/// posts there.
struct RawObserver {
    posts: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl RawObserver {
    fn join(server: &str) -> RawObserver {
        let stream = TcpStream::connect(server).expect("connect to ngIRCd");
        let mut writer = stream.try_clone().unwrap();
        write!(
            writer,
            "NICK raw-observer\r\nUSER raw 0 * :raw observer\r\n"
        )
        .unwrap();
        let posts = Arc::new(Mutex::new(BTreeMap::new()));
        let joined = Arc::new(Mutex::new(false));
        let (sink, flag) = (posts.clone(), joined.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let mut words = line.split(' ');
                let first = words.next().unwrap_or("");
                if first == "PING" {
                    let token = line.strip_prefix("PING ").unwrap_or("");
                    let _ = write!(writer, "PONG {token}\r\n");
                    continue;
                }
                match words.next() {
                    Some("001") => {
                        let _ = write!(writer, "JOIN {CHANNEL}\r\n");
                    }
                    Some("JOIN") => *flag.lock().unwrap() = true,
                    Some("PRIVMSG") if words.next() == Some(CHANNEL) => {
                        let nick = first.trim_start_matches(':').split('!').next().unwrap();
                        *sink.lock().unwrap().entry(nick.to_owned()).or_insert(0) += 1;
                    }
                    _ => {}
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while !*joined.lock().unwrap() {
            assert!(Instant::now() < deadline, "the raw observer did not join");
            std::thread::sleep(Duration::from_millis(50));
        }
        RawObserver { posts }
    }

    fn posts(&self) -> BTreeMap<String, u64> {
        self.posts.lock().unwrap().clone()
    }
}

/// Posts per nick between two counts.
fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(nick, n)| (nick.clone(), n - before.get(nick).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// A tmux session of its own (its own server socket), killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn tmux(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket]);
        c
    }

    fn start() -> Tmux {
        let tmux = Tmux {
            socket: format!("socketscience-watch-{}", std::process::id()),
        };
        let status = tmux
            .tmux()
            .args(["new-session", "-d", "-s", "watch", "-x", "150", "-y", "50"])
            .status()
            .expect("tmux runs (Debian package tmux)");
        assert!(status.success());
        tmux
    }

    /// Types `line` and Enter into the terminal.
    fn type_line(&self, line: &str) {
        let status = self
            .tmux()
            .args(["send-keys", "-t", "watch", line, "Enter"])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// What the terminal shows.
    fn screen(&self) -> String {
        let out = self
            .tmux()
            .args(["capture-pane", "-p", "-t", "watch"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait_for(
        &self,
        what: &str,
        limit: Duration,
        fleet: &[&Process],
        done: impl Fn(&str) -> bool,
    ) {
        let deadline = Instant::now() + limit;
        loop {
            let screen = self.screen();
            if done(&screen) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the watch screen never showed {what}:\n{screen}\n{}",
                describe_all(fleet)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux().arg("kill-server").status();
    }
}

/// The screen's line for an instance.
fn row<'s>(screen: &'s str, instance: &str) -> Option<&'s str> {
    screen
        .lines()
        .find(|l| l.trim_start().starts_with(instance))
}

#[test]
fn watch_shows_the_fleet_and_its_failover_and_posts_nothing() {
    let cli = cli_binary();
    let server = IrcServer::start();
    let addr = server.addr();
    let observer = RawObserver::join(&addr);
    let mut a = spawn(&addr, 0);
    let b = spawn(&addr, 1);
    let c = spawn(&addr, 2);
    wait_until(
        "the first election",
        Duration::from_secs(60),
        &[&a, &b, &c],
        || {
            b.printed(|l| l.starts_with("PEERS") && l.contains("Henders/EC2=active"))
                && c.printed(|l| l.starts_with("PEERS") && l.contains("Henders/EC2=active"))
        },
    );

    // Ten seconds of the fleet without watch, then ten with it.
    let window = Duration::from_secs(10);
    let start = observer.posts();
    std::thread::sleep(window);
    let without = delta(&start, &observer.posts());

    let tmux = Tmux::start();
    tmux.type_line(&format!(
        "{} watch --irc {addr} --channel '{CHANNEL}' --nick {WATCH_NICK} --trust 'smokey-*' \
         --heartbeat {}",
        cli.display(),
        HEARTBEAT.as_millis()
    ));
    tmux.wait_for(
        "the three instances, Henders/EC2 active",
        Duration::from_secs(60),
        &[&a, &b, &c],
        |screen| {
            screen.contains("INSTANCES 3 heard, active: Henders/EC2")
                && row(screen, "Henders/EC2").is_some_and(|r| r.contains("active"))
                && row(screen, "teward/vps").is_some_and(|r| r.contains("standby"))
                && row(screen, "Undo/laptop").is_some_and(|r| r.contains("standby"))
        },
    );
    let start = observer.posts();
    std::thread::sleep(window);
    let with = delta(&start, &observer.posts());
    eprintln!("posts in {window:?} without watch: {without:?}; with watch: {with:?}");
    let nicks = |posts: &BTreeMap<String, u64>| posts.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        nicks(&with),
        nicks(&without),
        "the room's posters changed with watch"
    );
    assert_eq!(
        nicks(&with),
        NICKS.iter().map(|n| n.to_string()).collect::<Vec<_>>()
    );

    // The active one killed: the new active shown, the killed one gone,
    // within the peer timeout (three heartbeats) after the takeover; the
    // limit here is only a guard.
    a.sigkill();
    tmux.wait_for(
        "teward/vps active and Henders/EC2 gone",
        Duration::from_secs(60),
        &[&a, &b, &c],
        |screen| {
            screen.contains("INSTANCES 2 heard, active: teward/vps")
                && row(screen, "Henders/EC2").is_none()
                && row(screen, "teward/vps").is_some_and(|r| r.contains("active"))
        },
    );
    let screen = tmux.screen();
    eprintln!("{screen}");
    assert!(screen.contains("REFUSED untrusted=0"), "{screen}");

    // It never posted, and no instance ever heard of it.
    let all = observer.posts();
    assert!(!all.contains_key(WATCH_NICK), "watch posted: {all:?}");
    for p in [&b, &c] {
        assert!(
            !p.printed(|l| l.starts_with("PEERS") && l.contains("watch")),
            "{}",
            p.describe()
        );
    }
    // Ctrl-C stops it.
    let _ = tmux
        .tmux()
        .args(["send-keys", "-t", "watch", "C-c"])
        .status();
    drop(observer);
    drop(server);
}
