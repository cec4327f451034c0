//! Tracing: each handler run is inside a span naming the node, the kind,
//! the sender instance and the envelope's sequence number, itself inside
//! the span of the node's dispatcher task; a user's `#[instrument]`ed code
//! nests under it, and a log line in a handler says which message it
//! served.

mod common;

use std::time::Duration;

use common::LogCapture;
use socketscience::{message, Context, LocalChat, Node};

#[message("spans_coffee")]
#[derive(Debug, Clone)]
pub struct Coffee {
    pub cups: u32,
}

/// The user's own code, instrumented.
#[tracing::instrument]
fn brew(cups: u32) {
    tracing::info!("brewing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_line_in_a_handler_says_which_message_it_served() {
    // Global: the node's tasks run on the runtime's worker threads.
    let log = LogCapture::default();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_writer({
                let log = log.clone();
                move || log.clone()
            })
            .with_ansi(false)
            .with_env_filter("info")
            .finish(),
    )
    .unwrap();

    let chat = LocalChat::new();
    let start = |name: &'static str| {
        Node::builder(name)
            .transport(chat.join("smokey"))
            .default_node(false)
            .start()
    };
    let henders = start("Henders/EC2").await.unwrap();
    let teward = start("teward/vps").await.unwrap();
    for node in [&henders, &teward] {
        node.register(|coffee: Coffee, cx: Context| {
            tracing::info!(by = cx.node().name(), "serving");
            brew(coffee.cups);
        });
    }
    // An async handler too: its future runs inside the span.
    teward.register(|coffee: Coffee| async move {
        tokio::task::yield_now().await;
        tracing::info!(cups = coffee.cups, "served later");
    });
    for cups in 1..=3 {
        henders.send(Coffee { cups }).await.unwrap();
    }
    let seen = |needle: &str| log.lines().iter().any(|l| l.contains(needle));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !(seen("served later")
        && log.lines().iter().filter(|l| l.contains("brewing")).count() >= 6)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "handlers did not log: {:#?}",
            log.lines()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    henders.shutdown().await.unwrap();
    teward.shutdown().await.unwrap();

    let lines = log.lines();
    let find = |needle: &str| {
        lines
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line has `{needle}`: {lines:#?}"))
            .clone()
    };
    // teward ran Henders/EC2's third envelope (sequence number 2): the
    // dispatcher task's span, then the handler run's, then the user's.
    let line = find("by=\"teward/vps\"");
    assert!(
        line.contains("node{node=teward/vps task=\"dispatcher\"}:handler{"),
        "{line}"
    );
    for cups in 1..=3u32 {
        let seq = cups - 1;
        let handler = format!(
            "handler{{node=teward/vps kind=\"spans_coffee\" sender=\"Henders/EC2\" seq={seq}}}"
        );
        let brewing = find(&format!("{handler}:brew{{cups={cups}}}: spans: brewing"));
        assert!(brewing.contains("node{node=teward/vps"), "{brewing}");
        find(&format!("{handler}: spans: served later cups={cups}"));
        // Henders/EC2 runs its own envelopes, itself the sender.
        find(&format!(
            "handler{{node=Henders/EC2 kind=\"spans_coffee\" sender=\"Henders/EC2\" seq={seq}}}:brew{{cups={cups}}}"
        ));
    }
}
