//! Presence that scales on the Stack Exchange stand-in
//! (`tests/common/sechat_standin.rs`, built from the public clients'
//! descriptions of the protocol): fleets of 3, 10 and 30 instances with
//! failover and no data, every instance logged in as the same account, whose
//! throttle (one post a second, HTTP 409 "You can perform this action again
//! in N seconds") every instance shares. The budget is the default one, an
//! eighth of what the transport says the room takes (60 a minute: 7.5).
//!
//! On tokio's paused clock (the stand-in keeps its throttle on tokio's
//! clock too; the HTTP requests and websockets are real, on loopback): the
//! account's posts per minute stay within the budget at every size, a
//! killed standby leaves every peer list within the peer timeout
//! `Node::peer_timeout` reports (`3 h × T / h`), and a killed active is
//! replaced within its lease plus the node's clock tick and the chat's
//! delay. "Killed" is a shutdown: it posts no goodbye.
//!
//! Each test prints its row of the table in BENCHMARKS.md (`--nocapture`).

mod common;

use std::time::Duration;

use common::presence_fleet::{documented_interval, measure};
use common::sechat_standin::StandIn;
use socketscience::{Failover, Node, StackExchangeChat};
use tokio::time::Instant;

const ROOM: u64 = 11540;
const SMOKEY: u64 = 120914;
const EMAIL: &str = "smokey@example.com";
const PASSWORD: &str = "correct horse";

/// The default budget on Stack Exchange: an eighth of 60 posts a minute.
const BUDGET: f64 = 7.5;
/// The chat's delay: a post that meets the account's throttle waits the
/// whole seconds the chat asks for (at least one), and a heartbeat may
/// meet it a few times when others' posts come first.
const CHAT_DELAY: Duration = Duration::from_secs(5);

/// A fleet of `n` on one account, started one after another
/// (`common::presence_fleet::measure`).
async fn fleet_stays_within_its_budget(n: usize) {
    // An idle frame every 5 s (the transport reconnects after 30 s without
    // one): a quiet room's sockets cost little over hours of paused time.
    let standin = StandIn::start_with_idle_frames(Duration::from_secs(5)).await;
    standin.add_user(SMOKEY, "SmokeDetector", EMAIL, PASSWORD);
    standin.add_room(ROOM);
    standin.set_throttle(Some(Duration::from_secs(1)));
    let started = Instant::now();
    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        let chat = StackExchangeChat::builder("stackexchange.com", ROOM)
            .base_urls(standin.base(), standin.base())
            .credentials(EMAIL, PASSWORD)
            .connect()
            .await
            .expect("log in");
        let node = Node::builder(format!("i{i:03}"))
            .transport(chat)
            .seed(i as u64 + 1)
            // i000 ranks first, then i001, ...
            .failover(Failover::new().priority(-(i as i64)))
            .default_node(false)
            .start()
            .await
            .expect("start");
        nodes.push(node);
    }
    // Posts the account made in the room so far; and the throttle answers
    // (HTTP 409) so far, at each count.
    let throttled = std::cell::RefCell::new(Vec::new());
    let posts = || {
        throttled.borrow_mut().push(standin.counts().throttled);
        standin
            .messages(ROOM)
            .iter()
            .filter(|m| m.user_id == SMOKEY)
            .count()
    };
    let m = measure(nodes, started, BUDGET, CHAT_DELAY, posts).await;
    // Those of the 40 minutes counted.
    let throttled = throttled.borrow()[1] - throttled.borrow()[0];
    println!(
        "| {n} | {} in {:.1} min | {:.0} s | {:.2} | {} | {:.0} s | {:.0} s | {:.0} s |",
        m.start_posts,
        m.start_minutes,
        documented_interval(n, BUDGET).as_secs_f64(),
        m.per_minute,
        throttled,
        m.peer_timeout.as_secs_f64(),
        m.standby_noticed.as_secs_f64(),
        m.replaced.as_secs_f64(),
    );
}

#[tokio::test(start_paused = true)]
async fn three_instances_of_one_account_stay_within_the_budget() {
    fleet_stays_within_its_budget(3).await;
}

#[tokio::test(start_paused = true)]
async fn ten_instances_of_one_account_stay_within_the_budget() {
    fleet_stays_within_its_budget(10).await;
}

#[tokio::test(start_paused = true)]
async fn thirty_instances_of_one_account_stay_within_the_budget() {
    fleet_stays_within_its_budget(30).await;
}
