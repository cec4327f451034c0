//! The process's default node behind `broadcast()`. One test, alone in its
//! binary, since the default is process-wide.

use socketscience::{message, Error, LocalChat, Node};

#[message("default_hello")]
#[derive(Debug, Clone, PartialEq)]
pub struct Hello(pub String);

fn hello_from_sync_code(text: &str) -> socketscience::Result<()> {
    Hello(text.to_owned()).broadcast()
}

#[tokio::test]
async fn broadcast_uses_the_first_node_started_then_none_after_it_shuts_down() {
    assert!(matches!(
        hello_from_sync_code("too early"),
        Err(Error::NoDefaultNode)
    ));
    let message = hello_from_sync_code("too early").unwrap_err().to_string();
    assert!(
        message.contains("Node::builder"),
        "says what to do: {message}"
    );

    let chat = LocalChat::new();
    let first = Node::builder("default/first")
        .transport(chat.join("smokey"))
        .start()
        .await
        .unwrap();
    let second = Node::builder("default/second")
        .transport(chat.join("smokey"))
        .start()
        .await
        .unwrap();
    hello_from_sync_code("via the default").unwrap();
    // Inside a scope, broadcast goes through that node instead.
    second
        .scope(async { hello_from_sync_code("via the scope") })
        .await
        .unwrap();
    // From a spawned task, sync code works too.
    tokio::spawn(async { hello_from_sync_code("from a task") })
        .await
        .unwrap()
        .unwrap();

    first.shutdown().await.unwrap();
    // It says the default node stopped, naming it (not "start one").
    let after = hello_from_sync_code("after").unwrap_err();
    assert!(
        matches!(&after, Error::DefaultNodeStopped { name } if name == "default/first"),
        "{after}"
    );
    assert!(after.to_string().contains("has shut down"), "{after}");
    assert_eq!(first.stats().sent, 2);
    assert_eq!(second.stats().sent, 1);
    second.make_default();
    hello_from_sync_code("second is default now").unwrap();
    second.shutdown().await.unwrap();
    assert_eq!(second.stats().sent, 2);
    assert!(matches!(
        hello_from_sync_code("after all"),
        Err(Error::DefaultNodeStopped { name }) if name == "default/second"
    ));
}
