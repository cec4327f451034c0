//! `IrcChat::tls` against a real TLS-only ngIRCd whose certificate a test
//! CA made at test time signed (for `irc.socketscience.test` and
//! `127.0.0.1`): a node given the CA posts and receives; a node without
//! it, or connecting by a name the certificate does not carry, fails
//! `start` with an error naming the host and the cause. (Delivery across
//! a daemon restart over TLS: tests/irc_fleet.rs.)

mod common;

use std::time::Duration;

use common::irc_server::{IrcServer, Options};
use common::Log;
use socketscience::{message, Context, Error, IrcChat, Node};

#[message("irc_tls_note")]
#[derive(Debug, Clone)]
pub struct Note {
    pub index: u64,
}

fn tls_server() -> IrcServer {
    IrcServer::start_with(Options {
        tls: true,
        ..Options::default()
    })
}

async fn start(chat: IrcChat, name: &str) -> socketscience::Result<Node> {
    Node::builder(name)
        .transport(chat)
        .trust("smokey-*")
        .default_node(false)
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_given_the_ca_talk_over_tls() {
    let server = tls_server();
    let chat = |nick: &str| {
        IrcChat::new(server.addr(), nick, "#tls")
            .tls()
            .tls_ca_file(server.ca_file())
    };
    let a_chat = chat("smokey-a");
    let a_status = a_chat.status();
    let a = start(a_chat, "a").await.expect("start a over TLS");
    let b = start(chat("smokey-b"), "b")
        .await
        .expect("start b over TLS");
    let seen: Log<(String, u64)> = Log::default();
    b.register({
        let seen = seen.clone();
        move |note: Note, cx: Context| {
            seen.push((cx.sender().account().to_owned(), note.index));
        }
    });
    assert!(
        a_status
            .wait_for_members(&["smokey-b"], Duration::from_secs(30))
            .await,
        "b never joined: {a_status:?}"
    );
    for index in 0..3 {
        a.send(Note { index }).await.unwrap();
    }
    for _ in 0..3000 {
        if seen.items().len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        seen.items(),
        (0..3)
            .map(|i| ("smokey-a".to_owned(), i))
            .collect::<Vec<_>>()
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_ca_start_fails_saying_the_certificate_is_not_trusted() {
    let server = tls_server();
    let err = start(IrcChat::new(server.addr(), "smokey-a", "#tls").tls(), "a")
        .await
        .expect_err("a certificate from an unknown CA must fail start");
    let text = err.to_string();
    assert!(matches!(err, Error::Transport(_)), "{err:?}");
    assert!(
        text.contains("127.0.0.1")
            && text.contains("does not verify")
            && text.contains("not signed by a trusted root")
            && text.contains("tls_ca_file"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_the_certificate_does_not_carry_fails_start_naming_it() {
    let server = tls_server();
    // `localhost` reaches the daemon, but the certificate is for
    // irc.socketscience.test and 127.0.0.1 only.
    let addr = server.addr().replace("127.0.0.1", "localhost");
    let err = start(
        IrcChat::new(addr, "smokey-a", "#tls").tls_ca_file(server.ca_file()),
        "a",
    )
    .await
    .expect_err("a certificate for other names must fail start");
    let text = err.to_string();
    assert!(text.contains("not valid for the name localhost"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_ca_file_fails_start_naming_the_file() {
    let err = start(
        IrcChat::new("127.0.0.1:1", "smokey-a", "#tls").tls_ca_file("/nonexistent/ca.pem"),
        "a",
    )
    .await
    .expect_err("a missing CA file must fail start");
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}
