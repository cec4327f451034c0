//! The secret can come from the environment, and a node can refuse it on
//! purpose (alone in their binary: the environment is process-wide).

use socketscience::trust::SECRET_ENV;
use socketscience::{message, Error, LocalChat, Node, Stats};

#[message("env_order")]
pub struct Order(pub u32);

#[tokio::test]
async fn the_environment_s_secret_signs_unless_a_node_opts_out() {
    let chat = LocalChat::new();
    let mut watch = chat.watch();
    // SAFETY: this test binary has one test and sets the variable before
    // any node reads it.
    unsafe { std::env::set_var(SECRET_ENV, "from the environment") };
    let from_env = Node::builder("env")
        .transport(chat.join("smokey"))
        .default_node(false)
        .start()
        .await
        .unwrap();
    let explicit = Node::builder("explicit")
        .transport(chat.join("smokey"))
        .secret("from the environment")
        .default_node(false)
        .start()
        .await
        .unwrap();
    let other = Node::builder("other")
        .transport(chat.join("smokey"))
        .secret("something else")
        .default_node(false)
        .start()
        .await
        .unwrap();
    // Opted out of the environment's secret: posts unsigned.
    let opted_out = Node::builder("opted-out")
        .transport(chat.join("smokey"))
        .unsigned()
        .default_node(false)
        .start()
        .await
        .unwrap();
    explicit.register(|_: Order| {});
    other.register(|_: Order| {});
    from_env.send(Order(1)).await.unwrap();
    from_env.shutdown().await.unwrap();
    let posted = watch.recv().await.unwrap();
    assert!(!posted.text.contains("from the environment"));
    wait_for(&explicit, "dispatched 1", |s| s.dispatched >= 1).await;
    wait_for(&other, "refused 1 forged", |s| s.bad_signature >= 1).await;
    opted_out.send(Order(2)).await.unwrap();
    opted_out.shutdown().await.unwrap();
    wait_for(&explicit, "refused 1 unsigned", |s| s.unsigned >= 1).await;
    wait_for(&other, "refused 1 unsigned", |s| s.unsigned >= 1).await;
    explicit.shutdown().await.unwrap();
    other.shutdown().await.unwrap();
    let (explicit, other) = (explicit.stats(), other.stats());
    assert_eq!(
        explicit.dispatched, 1,
        "the environment's secret signed the first, not the opted-out node's"
    );
    assert_eq!(explicit.bad_signature, 0);
    // At least the order each; a node's presence posts (a goodbye at
    // shutdown, an answer to a newcomer) are refused the same way when they
    // arrive first.
    assert!(explicit.unsigned >= 1, "the opted-out node signed nothing");
    assert!(other.bad_signature >= 1);
    assert!(other.unsigned >= 1);
    assert_eq!(other.dispatched, 0, "nothing the other secret refused ran");

    // Asking for both is a mistake the builder names.
    let both = Node::builder("both")
        .transport(chat.join("smokey"))
        .secret("s")
        .unsigned()
        .default_node(false)
        .start()
        .await;
    match both {
        Err(Error::InvalidOption {
            option: "unsigned",
            reason,
        }) => assert!(reason.contains("not both"), "{reason}"),
        other => panic!("expected InvalidOption(unsigned), got {other:?}"),
    }
}

async fn wait_for(node: &Node, what: &str, done: impl Fn(&Stats) -> bool) {
    for _ in 0..4_000 {
        if done(&node.stats()) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("{} never {what}: {:?}", node.name(), node.stats());
}
