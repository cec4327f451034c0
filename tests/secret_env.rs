//! The secret can come from the environment (alone in its binary: the
//! environment is process-wide).

use socketscience::{message, LocalChat, Node, SECRET_ENV};

#[message("env_order")]
pub struct Order(pub u32);

#[tokio::test]
async fn a_node_reads_its_secret_from_the_environment() {
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
    explicit.register(|_: Order| {});
    other.register(|_: Order| {});
    from_env.send(Order(1)).await.unwrap();
    from_env.shutdown().await.unwrap();
    let posted = watch.recv().await.unwrap();
    assert!(!posted.text.contains("from the environment"));
    wait_for_received(&explicit).await;
    wait_for_received(&other).await;
    explicit.shutdown().await.unwrap();
    other.shutdown().await.unwrap();
    assert_eq!(
        explicit.stats().dispatched,
        1,
        "the environment's secret signed it"
    );
    assert_eq!(other.stats().bad_signature, 1);
}

async fn wait_for_received(node: &Node) {
    for _ in 0..4_000 {
        if node.stats().received >= 1 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("{} received nothing", node.name());
}
