//! Two types claiming one kind: no node starts, and the error names both.

use socketscience::handlers::message_types;
use socketscience::{message, Error, LocalChat, Node};

mod one {
    use super::message;
    #[message("ping")]
    pub struct Ping {
        pub location: String,
    }
}

mod other {
    use super::message;
    #[message("ping")]
    pub struct Pong(pub f64);
}

#[tokio::test]
async fn a_node_refuses_to_start_when_two_types_claim_one_kind() {
    let kinds: Vec<_> = message_types()
        .into_iter()
        .filter(|t| t.kind == "ping")
        .collect();
    assert_eq!(kinds.len(), 2);
    let error = Node::builder("dup")
        .transport(LocalChat::new().join("smokey"))
        .start()
        .await
        .unwrap_err();
    match &error {
        Error::DuplicateKind {
            kind,
            first,
            second,
        } => {
            assert_eq!(kind, "ping");
            let mut types = [first.as_str(), second.as_str()];
            types.sort();
            assert_eq!(
                types,
                ["duplicate_kind::one::Ping", "duplicate_kind::other::Pong"]
            );
        }
        other => panic!("expected DuplicateKind, got {other:?}"),
    }
    let text = error.to_string();
    assert!(
        text.contains("duplicate_kind::one::Ping") && text.contains("duplicate_kind::other::Pong"),
        "{text}"
    );
}
