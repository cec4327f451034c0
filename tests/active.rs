//! `#[handler(active)]`: runs only on the instance that is active, also
//! across a takeover. Alone in its binary: a node without failover refuses
//! to start while an `active` handler is in the program. Tokio's clock is
//! paused (as in tests/failover.rs): leases pass exactly, not slowly.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use socketscience::{handler, message, Context, Failover, LocalChat, Node, Role};

#[message("active_coffee")]
pub struct Coffee(pub u64);

/// How many coffees this node served.
struct Served(AtomicU64);

#[handler(active)]
fn serve(cup: Coffee, cx: Context) {
    let _ = cup.0;
    cx.state::<Served>()
        .expect("given")
        .0
        .fetch_add(1, Ordering::SeqCst);
}

fn served(node: &Node) -> u64 {
    node.state::<Served>().unwrap().0.load(Ordering::SeqCst)
}

async fn the_active(nodes: &[&Node]) -> usize {
    for _ in 0..600 {
        let active: Vec<usize> = (0..nodes.len())
            .filter(|&i| nodes[i].role() == Role::Active)
            .collect();
        if active.len() == 1 {
            return active[0];
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no single active instance");
}

#[tokio::test(start_paused = true)]
async fn an_active_handler_runs_on_the_active_only_also_after_a_takeover() {
    let chat = LocalChat::new();
    let mut nodes = Vec::new();
    for (i, priority) in [30, 20, 10].into_iter().enumerate() {
        nodes.push(
            Node::builder(format!("N{i}"))
                .transport(chat.join("smokey"))
                .heartbeat(Duration::from_secs(1))
                .failover(
                    Failover::new()
                        .priority(priority)
                        .lease(Duration::from_secs(4)),
                )
                .state(Served(AtomicU64::new(0)))
                .default_node(false)
                .start()
                .await
                .unwrap(),
        );
    }
    let all: Vec<&Node> = nodes.iter().collect();
    let first = the_active(&all).await;
    assert_eq!(first, 0, "the best-ranked");
    // Sent by a standby: every node reads it, the active alone serves.
    nodes[2].send(Coffee(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(nodes.iter().map(served).collect::<Vec<_>>(), [1, 0, 0]);

    // The active stops; a standby takes over and serves from then on.
    nodes[0].shutdown().await.unwrap();
    let rest: Vec<&Node> = nodes[1..].iter().collect();
    let second = the_active(&rest).await;
    assert_eq!(second, 0, "N1, the best-ranked left");
    nodes[2].send(Coffee(2)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(nodes.iter().map(served).collect::<Vec<_>>(), [1, 1, 0]);
    for node in &nodes[1..] {
        node.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn a_node_without_failover_refuses_to_start_naming_the_handler() {
    let chat = LocalChat::new();
    let err = Node::builder("alone")
        .transport(chat.join("smokey"))
        .default_node(false)
        .start()
        .await
        .unwrap_err();
    let text = format!("{err:?}");
    assert!(text.contains("active::serve"), "{text}");
    assert!(text.contains(".failover(Failover::new())"), "{text}");
}
