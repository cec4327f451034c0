//! Two builds of one message type in one room, as during a rolling
//! upgrade (socketscience/guide/coordination.md, "Changing a message type while the fleet runs"): a
//! field added with `#[serde(default)]` reads both ways; a field whose type
//! changed, or a kind one build does not know, is counted
//! (`Stats::bad_values`, `Stats::unknown_kinds`) and never stops a node.
//!
//! One test binary cannot hold two `#[message]` types of one kind (no node
//! would start: tests/duplicate_kind.rs), so the two builds' types here
//! implement `Message` by hand and are registered per node.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use socketscience::{data, Envelope, LocalChat, Message, Node};

mod old {
    use super::*;

    #[data]
    #[derive(Debug, Clone, PartialEq)]
    pub struct Note {
        pub text: String,
    }
    impl Message for Note {
        const KIND: &'static str = "upgrade_note";
    }

    #[data]
    #[derive(Debug, Clone, PartialEq)]
    pub struct Count {
        pub n: u32,
    }
    impl Message for Count {
        const KIND: &'static str = "upgrade_count";
    }
}

mod new {
    use super::*;

    /// A field added, with a default: the old build's notes read too.
    #[data]
    #[derive(Debug, Clone, PartialEq)]
    pub struct Note {
        pub text: String,
        #[serde(default)]
        pub tags: Vec<String>,
    }
    impl Message for Note {
        const KIND: &'static str = "upgrade_note";
    }

    /// The field's type changed: neither build reads the other's.
    #[data]
    #[derive(Debug, Clone, PartialEq)]
    pub struct Count {
        pub n: String,
    }
    impl Message for Count {
        const KIND: &'static str = "upgrade_count";
    }

    /// A kind only the new build has.
    #[data]
    #[derive(Debug, Clone, PartialEq)]
    pub struct Shiny(pub u8);
    impl Message for Shiny {
        const KIND: &'static str = "upgrade_shiny";
    }
}

type Seen<T> = Arc<Mutex<Vec<(String, T)>>>;

fn record<M: Message + Clone>(node: &Node) -> Seen<M> {
    let seen: Seen<M> = Default::default();
    let into = seen.clone();
    node.register(move |m: M, cx: socketscience::Context| {
        let from = cx.sender().instance().unwrap_or("?").to_owned();
        into.lock().unwrap().push((from, m));
    });
    seen
}

fn from<T: Clone>(seen: &Seen<T>, who: &str) -> Vec<T> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|(f, _)| f == who)
        .map(|(_, m)| m.clone())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn an_old_and_a_new_build_exchange_envelopes_both_ways() {
    let chat = LocalChat::new();
    let start = |name: &'static str| {
        Node::builder(name)
            .transport(chat.join("smokey"))
            .default_node(false)
            .start()
    };
    let old_node = start("old").await.unwrap();
    let new_node = start("new").await.unwrap();
    let old_notes = record::<old::Note>(&old_node);
    let old_counts = record::<old::Count>(&old_node);
    let new_notes = record::<new::Note>(&new_node);
    let new_counts = record::<new::Count>(&new_node);
    let new_shiny = record::<new::Shiny>(&new_node);

    old_node
        .send(
            Envelope::new()
                .with(old::Note {
                    text: "from old".into(),
                })
                .unwrap()
                .with(old::Count { n: 3 })
                .unwrap(),
        )
        .await
        .unwrap();
    new_node
        .send(
            Envelope::new()
                .with(new::Note {
                    text: "from new".into(),
                    tags: vec!["x".into()],
                })
                .unwrap()
                .with(new::Count { n: "three".into() })
                .unwrap()
                .with(new::Shiny(1))
                .unwrap(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;

    // The added field: read both ways; the old build's note gets the
    // default.
    assert_eq!(
        from(&new_notes, "old"),
        [new::Note {
            text: "from old".into(),
            tags: vec![]
        }]
    );
    assert_eq!(
        from(&old_notes, "new"),
        [old::Note {
            text: "from new".into()
        }]
    );
    // The changed type: neither reads the other's, each counts it once,
    // and the other kinds of the same envelope still ran.
    assert!(from(&new_counts, "old").is_empty());
    assert!(from(&old_counts, "new").is_empty());
    assert_eq!(from(&new_counts, "new"), [new::Count { n: "three".into() }]);
    assert_eq!(from(&old_counts, "old"), [old::Count { n: 3 }]);
    assert_eq!(old_node.stats().bad_values, 1);
    assert_eq!(new_node.stats().bad_values, 1);
    // The kind the old build does not know: counted there.
    assert_eq!(old_node.stats().unknown_kinds, 1);
    assert_eq!(new_node.stats().unknown_kinds, 0);
    assert_eq!(from(&new_shiny, "new"), [new::Shiny(1)]);
    // Per kind and sender: who sent what this build could not use.
    let at_old: Vec<_> = old_node
        .mismatches()
        .into_iter()
        .map(|m| {
            (
                m.kind,
                m.sender,
                m.bad_values,
                m.unknown,
                m.last_error.is_some(),
            )
        })
        .collect();
    assert_eq!(
        at_old,
        [
            ("upgrade_count".into(), "new".into(), 1, 0, true),
            ("upgrade_shiny".into(), "new".into(), 0, 1, false),
        ]
    );
    let at_new: Vec<_> = new_node
        .mismatches()
        .into_iter()
        .map(|m| (m.kind, m.sender, m.bad_values, m.unknown))
        .collect();
    assert_eq!(at_new, [("upgrade_count".into(), "old".into(), 1, 0)]);
    // Both keep going.
    old_node
        .send(old::Note {
            text: "still here".into(),
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(from(&new_notes, "old").len(), 2);
    old_node.shutdown().await.unwrap();
    new_node.shutdown().await.unwrap();
}
