//! `socketscience watch` on the two other real chats: Matrix (a real
//! Synapse, tests/common/synapse.rs; feature `matrix`) and Stack Exchange
//! chat (the protocol stand-in of tests/common/sechat_standin.rs; feature
//! `stackexchange`). The command, built from this checkout and run as a
//! process with `--plain`, reads the room of three in-process nodes
//! sending heartbeats: it prints a JOINED line for each instance, with the
//! account the chat gave it, and posts nothing (the chat holds no message
//! from its account, and no node ever hears of it). Without a password or
//! token in the environment it exits at once, saying which variable to
//! set.

#![cfg(any(feature = "matrix", feature = "stackexchange"))]

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::processes::{cli_binary, Process};
use socketscience::Node;

/// The fleet's instances.
const NAMES: [&str; 3] = ["Henders/EC2", "teward/vps", "Undo/laptop"];

/// How long anything may take: a guard, not a measure.
const LIMIT: Duration = Duration::from_secs(90);

/// Polls `done` without blocking the runtime (the nodes, and the
/// stand-in, run on it) until it holds; fails, showing watch's output, if
/// watch exits or `LIMIT` passes first.
async fn wait_for(what: &str, watch: &mut Process, mut done: impl FnMut(&Process) -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !done(watch) {
        if let Some(status) = watch.child.try_wait().expect("poll watch") {
            panic!(
                "watch exited ({status}) before {what}\n{}",
                watch.describe()
            );
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {LIMIT:?} waiting for {what}\n{}",
            watch.describe()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `JOINED` line watch printed for `instance`, if any.
fn joined(watch: &Process, instance: &str) -> Option<String> {
    let prefix = format!("JOINED {instance} ");
    watch.stdout().into_iter().find(|l| l.starts_with(&prefix))
}

/// Waits until watch printed a JOINED line for every instance, and checks
/// that each names the account `account(i)`.
async fn wait_for_the_fleet(watch: &mut Process, account: impl Fn(usize) -> String) {
    wait_for("a JOINED line for each instance", watch, |w| {
        NAMES.iter().all(|n| joined(w, n).is_some())
    })
    .await;
    for (i, name) in NAMES.iter().enumerate() {
        let line = joined(watch, name).unwrap();
        let want = format!("account={} ", account(i));
        assert!(line.contains(&want), "{line:?} lacks {want:?}");
    }
}

/// Waits until every node has read `more` posts beyond what it had read
/// when called: the fleet kept talking while watch was in the room.
async fn more_traffic(nodes: &[Node], more: u64, watch: &mut Process) {
    let start: Vec<u64> = nodes.iter().map(|n| n.stats().received).collect();
    wait_for("more of the fleet's posts", watch, |_| {
        nodes
            .iter()
            .zip(&start)
            .all(|(n, s)| n.stats().received >= s + more)
    })
    .await;
}

/// No node ever heard of watch: it lists only the fleet's instances, and
/// no untrusted account (a post from watch's account would be one).
fn never_heard_of_watch(nodes: &[Node], fleet_account: impl Fn(&str) -> bool) {
    for node in nodes {
        for peer in node.peers() {
            assert!(
                NAMES.contains(&peer.instance()) && fleet_account(peer.account()),
                "{} lists {} ({})",
                node.name(),
                peer.instance(),
                peer.account()
            );
        }
        assert_eq!(node.peers().len(), NAMES.len() - 1, "{}", node.name());
        assert!(
            node.untrusted_accounts().is_empty(),
            "{}: {:?}",
            node.name(),
            node.untrusted_accounts()
        );
    }
}

/// Runs watch with `args` and no chat secrets in its environment; it must
/// end by itself.
fn watch_without_secrets(args: &[&str]) -> Output {
    Command::new(cli_binary())
        .arg("watch")
        .args(args)
        .env_remove("SOCKETSCIENCE_MATRIX_PASSWORD")
        .env_remove("SOCKETSCIENCE_MATRIX_TOKEN")
        .env_remove("SOCKETSCIENCE_STACKEXCHANGE_PASSWORD")
        .output()
        .expect("run watch")
}

/// Checks that watch failed, and that its error says all of `words`.
fn fails_saying(output: &Output, words: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "watch succeeded: {output:?}");
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    for word in words {
        assert!(stderr.contains(word), "{word:?} missing from: {stderr}");
    }
}

#[cfg(feature = "matrix")]
mod matrix {
    use std::collections::BTreeMap;

    use serde_json::Value;
    use socketscience::MatrixChat;

    use super::*;
    use common::synapse::{Options, Synapse};

    const ROOM: &str = "#fleet:localhost";
    const USERS: [&str; 3] = ["smokey-henders", "smokey-teward", "smokey-undo"];
    const WATCHER: &str = "fleet-watcher";
    const WATCHER_ID: &str = "@fleet-watcher:localhost";
    const HEARTBEAT: Duration = Duration::from_millis(500);

    fn password(user: &str) -> String {
        format!("{user}-password")
    }

    /// Instance `i` of the fleet, logged in as `USERS[i]`.
    async fn fleet_node(synapse: &Synapse, i: usize) -> Node {
        synapse.register(USERS[i], &password(USERS[i]), false).await;
        let chat = MatrixChat::builder(synapse.url(), ROOM)
            .credentials(USERS[i], password(USERS[i]))
            .reconnect_delay(Duration::from_millis(100))
            .sync_wait(Duration::from_secs(5))
            .connect()
            .await
            .expect("connect to Synapse");
        Node::builder(NAMES[i])
            .transport(chat)
            .trust("@smokey-*:localhost")
            .heartbeat(HEARTBEAT)
            .default_node(false)
            .start()
            .await
            .expect("start the node")
    }

    /// Every event of the room's timeline, as (type, sender), read by the
    /// admin (its creator) through `/messages`, newest first.
    async fn timeline(synapse: &Synapse, token: &str, room_id: &str) -> Vec<(String, String)> {
        let http = reqwest::Client::new();
        let room = room_id.replace('!', "%21").replace(':', "%3A");
        let mut events = Vec::new();
        let mut from: Option<String> = None;
        loop {
            let mut url = format!(
                "{}/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=500",
                synapse.url()
            );
            if let Some(from) = &from {
                url.push_str(&format!("&from={from}"));
            }
            let answer = http
                .get(&url)
                .bearer_auth(token)
                .send()
                .await
                .expect("read the room");
            let status = answer.status();
            let page: Value = answer.json().await.expect("messages JSON");
            assert!(status.is_success(), "/messages: {status} {page}");
            let chunk = page["chunk"].as_array().cloned().unwrap_or_default();
            if chunk.is_empty() {
                return events;
            }
            for event in chunk {
                let field = |name: &str| event[name].as_str().unwrap_or("").to_owned();
                events.push((field("type"), field("sender")));
            }
            match page["end"].as_str() {
                Some(end) => from = Some(end.to_owned()),
                None => return events,
            }
        }
    }

    /// The room's chat messages (`m.room.message`), counted by sender.
    fn messages_by_sender(timeline: &[(String, String)]) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for (kind, sender) in timeline {
            if kind == "m.room.message" {
                *counts.entry(sender.clone()).or_insert(0) += 1;
            }
        }
        counts
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn watch_lists_a_matrix_fleet_and_posts_nothing() {
        let cli = cli_binary();
        let synapse = Synapse::start(Options::default()).await;
        let admin = synapse.register("admin", "admin-password", true).await;
        let room_id = synapse.create_room(&admin, "fleet").await;
        synapse.register(WATCHER, &password(WATCHER), false).await;
        let mut nodes = Vec::new();
        for i in 0..NAMES.len() {
            nodes.push(fleet_node(&synapse, i).await);
        }

        let mut watch = Process::spawn(
            "watch",
            Command::new(&cli)
                .args(["watch", "--matrix", &synapse.url(), "--room", ROOM])
                .args(["--user", WATCHER, "--trust", "@smokey-*:localhost"])
                .args(["--heartbeat", &HEARTBEAT.as_millis().to_string(), "--plain"])
                .env("SOCKETSCIENCE_MATRIX_PASSWORD", password(WATCHER))
                .env_remove("SOCKETSCIENCE_MATRIX_TOKEN"),
        );
        wait_for_the_fleet(&mut watch, |i| format!("@{}:localhost", USERS[i])).await;
        more_traffic(&nodes, 10, &mut watch).await;

        // It joined the room, and posted nothing there; the fleet did.
        let timeline = timeline(&synapse, &admin, &room_id).await;
        assert!(
            timeline
                .iter()
                .any(|(kind, sender)| kind == "m.room.member" && sender == WATCHER_ID),
            "watch never joined {ROOM}: {timeline:?}"
        );
        let posts = messages_by_sender(&timeline);
        eprintln!("m.room.message events by sender: {posts:?}");
        assert!(!posts.contains_key(WATCHER_ID), "watch posted: {posts:?}");
        for user in USERS {
            let id = format!("@{user}:localhost");
            assert!(posts.get(&id).is_some_and(|n| *n > 0), "{id}: {posts:?}");
        }
        never_heard_of_watch(&nodes, |account| {
            account.starts_with("@smokey-") && account != WATCHER_ID
        });
        assert!(
            watch
                .stdout()
                .iter()
                .all(|l| !l.starts_with("REFUSED")
                    || l.split(' ').skip(1).all(|c| c.ends_with("=0"))),
            "{}",
            watch.describe()
        );

        drop(watch);
        for node in nodes {
            node.shutdown().await.expect("shut down a node");
        }
    }

    #[test]
    fn watch_without_matrix_credentials_says_which_variable_to_set() {
        // Nothing listens on port 9: watch must stop before connecting.
        let common = [
            "--matrix",
            "http://127.0.0.1:9",
            "--room",
            ROOM,
            "--trust",
            "@smokey-*:localhost",
            "--plain",
        ];
        let output = watch_without_secrets(&[&common[..], &["--user", WATCHER]].concat());
        fails_saying(
            &output,
            &[
                "SOCKETSCIENCE_MATRIX_PASSWORD",
                WATCHER,
                ROOM,
                "http://127.0.0.1:9",
            ],
        );
        let output = watch_without_secrets(&common);
        fails_saying(
            &output,
            &[
                "--user",
                "SOCKETSCIENCE_MATRIX_PASSWORD",
                "SOCKETSCIENCE_MATRIX_TOKEN",
                ROOM,
                "http://127.0.0.1:9",
            ],
        );
    }
}

#[cfg(feature = "stackexchange")]
mod stackexchange {
    use socketscience::StackExchangeChat;

    use super::*;
    use common::sechat_standin::StandIn;

    const ROOM: u64 = 11540;
    /// The fleet's one account, shared by its instances as SmokeDetector's.
    const SMOKEY: u64 = 120914;
    const EMAIL: &str = "smokey@example.com";
    const PASSWORD: &str = "correct horse";
    const WATCHER: u64 = 3;
    const WATCHER_EMAIL: &str = "watcher@example.com";
    const WATCHER_PASSWORD: &str = "battery staple";
    /// The chat lets an account post about once a second.
    const HEARTBEAT: Duration = Duration::from_millis(1_000);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn watch_lists_a_stack_exchange_fleet_and_posts_nothing() {
        let cli = cli_binary();
        let standin = StandIn::start().await;
        standin.add_user(SMOKEY, "SmokeDetector", EMAIL, PASSWORD);
        standin.add_user(WATCHER, "fleet watcher", WATCHER_EMAIL, WATCHER_PASSWORD);
        standin.add_room(ROOM);
        let mut nodes = Vec::new();
        for name in NAMES {
            let chat = StackExchangeChat::builder("stackexchange.com", ROOM)
                .base_urls(standin.base(), standin.base())
                .credentials(EMAIL, PASSWORD)
                .reconnect_delay(Duration::from_millis(50))
                .connect()
                .await
                .expect("log in to the stand-in");
            let node = Node::builder(name)
                .transport(chat)
                .heartbeat(HEARTBEAT)
                .default_node(false)
                .start()
                .await
                .expect("start the node");
            nodes.push(node);
        }
        let logins = standin.counts().logins;

        let mut watch = Process::spawn(
            "watch",
            Command::new(&cli)
                .args(["watch", "--stackexchange", &standin.base()])
                .args(["--room", &ROOM.to_string(), "--email", WATCHER_EMAIL])
                .args(["--trust", &SMOKEY.to_string()])
                .args(["--heartbeat", &HEARTBEAT.as_millis().to_string(), "--plain"])
                .env("SOCKETSCIENCE_STACKEXCHANGE_PASSWORD", WATCHER_PASSWORD),
        );
        wait_for_the_fleet(&mut watch, |_| SMOKEY.to_string()).await;
        more_traffic(&nodes, 5, &mut watch).await;

        // It logged in, and posted nothing; the fleet did.
        let counts = standin.counts();
        eprintln!("stand-in counts: {counts:?}");
        assert_eq!(counts.logins, logins + 1, "watch's login");
        assert_eq!(counts.posts_by(WATCHER), 0, "watch posted: {counts:?}");
        assert!(counts.posts_by(SMOKEY) > 0, "{counts:?}");
        let posters: Vec<u64> = standin.messages(ROOM).iter().map(|m| m.user_id).collect();
        assert!(posters.iter().all(|u| *u == SMOKEY), "{posters:?}");
        never_heard_of_watch(&nodes, |account| account == SMOKEY.to_string());

        drop(watch);
        for node in nodes {
            node.shutdown().await.expect("shut down a node");
        }
    }

    #[test]
    fn watch_without_a_stack_exchange_password_says_which_variable_to_set() {
        let output = watch_without_secrets(&[
            "--stackexchange",
            "stackexchange.com",
            "--room",
            "11540",
            "--email",
            WATCHER_EMAIL,
            "--trust",
            "120914",
        ]);
        fails_saying(
            &output,
            &[
                "SOCKETSCIENCE_STACKEXCHANGE_PASSWORD",
                WATCHER_EMAIL,
                "room 11540",
                "stackexchange.com",
            ],
        );
    }
}
