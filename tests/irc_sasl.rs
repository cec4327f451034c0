//! `IrcChat::sasl` on a real SASL network (InspIRCd + Atheme on loopback,
//! tests/common/irc_sasl.rs), accounts registered through NickServ now:
//! the right password connects and the wrong one fails `start` with the
//! server's reason, and neither password reaches a log; two instances
//! logged into one account trust each other; a stranger who takes an
//! instance's nick while it is away, without the account, has every
//! envelope refused and counted. SASL
//! EXTERNAL over TLS: a client certificate whose fingerprint is on the
//! account's NickServ `CERT` list logs in, and the fleet's messages carry
//! the account the server vouches for; a certificate NickServ does not
//! know fails `start` with the server's reason. And a server without SASL
//! (ngIRCd), or with SASL but without `account-tag` (InspIRCd without
//! `m_ircv3_accounttag`), fails `start` saying so.

mod common;

use std::time::Duration;

use common::irc_sasl::{Options, SaslServer};
use common::irc_server::IrcServer;
use common::{wait_for, Log, LogCapture};
use socketscience::{message, Context, IrcChat, Node};

#[message("irc_sasl_note")]
#[derive(Debug, Clone)]
pub struct Note {
    pub index: u64,
}

async fn start(chat: IrcChat, name: &str) -> socketscience::Result<Node> {
    Node::builder(name)
        .transport(chat)
        .default_node(false)
        .start()
        .await
}

fn chat(server: &SaslServer, nick: &str) -> IrcChat {
    IrcChat::new(server.addr(), nick, "#sasl")
        .reconnect_backoff(Duration::from_millis(100), Duration::from_secs(1))
        .peer_wait(Duration::from_secs(5))
        .settle_time(Duration::from_millis(300))
}

/// On one thread, so that everything the node and its transport log,
/// down to TRACE, reaches this test's subscriber.
#[tokio::test(flavor = "current_thread")]
async fn the_right_password_connects_a_wrong_one_fails_start_with_the_reason_and_neither_is_logged()
{
    let (log, _guard) = LogCapture::capture(tracing::Level::TRACE);
    let server = SaslServer::start();
    server.register("smokeyone", "right-password");
    let good = chat(&server, "smokey-good").sasl("smokeyone", "right-password");
    let status = good.status();
    let node = start(good, "good")
        .await
        .expect("the right password connects");
    assert_eq!(status.account().as_deref(), Some("smokeyone"));
    node.shutdown().await.unwrap();

    let err = start(
        chat(&server, "smokey-bad").sasl("smokeyone", "wrong-password"),
        "bad",
    )
    .await
    .expect_err("a wrong password must fail start");
    let text = err.to_string();
    assert!(
        text.contains("SASL PLAIN login") && text.contains("904") && text.contains("failed"),
        "{text}"
    );
    // The log says what happened...
    let logged = log.text();
    assert!(logged.contains("logged in with SASL"), "{logged}");
    assert!(logged.contains("904"), "{logged}");
    // ...and neither password, in clear or as the PLAIN message sent in
    // base64, appears in it, in the error or in the settings' Debug.
    for password in ["right-password", "wrong-password"] {
        let plain = format!("\0smokeyone\0{password}");
        let encoded =
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, plain.as_bytes());
        for shown in [
            logged.clone(),
            text.clone(),
            format!("{:?}", chat(&server, "x").sasl("smokeyone", password)),
        ] {
            assert!(!shown.contains(password), "{shown}");
            assert!(!shown.contains(&encoded), "{shown}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_account_is_trusted_on_every_instance_and_a_nick_thief_is_not() {
    let server = SaslServer::start();
    server.register("smokey", "fleet-password");
    // Two instances, each with its own nick, logged into one account; each
    // trusts its own account (the default).
    let a_chat = chat(&server, "smokey-a").sasl("smokey", "fleet-password");
    let a_status = a_chat.status();
    let a = start(a_chat, "a").await.expect("start a");
    let b = start(
        chat(&server, "smokey-b").sasl("smokey", "fleet-password"),
        "b",
    )
    .await
    .expect("start b");
    let seen: Log<(String, String, u64)> = Log::default();
    b.register({
        let seen = seen.clone();
        move |note: Note, cx: Context| {
            let from = cx.sender().instance().unwrap_or("?").to_owned();
            seen.push((from, cx.sender().account().to_owned(), note.index));
        }
    });
    assert!(
        a_status
            .wait_for_members(&["smokey-b"], Duration::from_secs(30))
            .await,
        "{a_status:?}"
    );
    for index in 0..3 {
        a.send(Note { index }).await.unwrap();
    }
    wait_for(&b, "a's three notes", |s| s.dispatched >= 3).await;
    assert_eq!(
        seen.items(),
        (0..3)
            .map(|i| ("a".to_owned(), "smokey".to_owned(), i))
            .collect::<Vec<_>>()
    );

    // a leaves; a stranger takes its nick without the account and posts.
    a.shutdown().await.unwrap();
    let untrusted_before = b.stats().untrusted;
    let thief = start(IrcChat::new(server.addr(), "smokey-a", "#sasl"), "a")
        .await
        .expect("start the thief");
    for index in 10..13 {
        thief.send(Note { index }).await.unwrap();
    }
    // The thief confirms its posts before quitting: they are all in b's
    // room by the end of its shutdown.
    thief.shutdown().await.unwrap();
    let stats = wait_for(&b, "the thief's posts refused", |s| {
        s.untrusted > untrusted_before
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        seen.items().len(),
        3,
        "the thief's notes ran: {:?}",
        seen.items()
    );
    assert!(stats.untrusted > untrusted_before, "{stats:?}");
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_sasl_fails_start_saying_so() {
    let server = IrcServer::start();
    let err = start(
        IrcChat::new(server.addr(), "smokey-a", "#sasl").sasl("smokey", "pw"),
        "a",
    )
    .await
    .expect_err("no SASL on the server must fail start");
    assert!(err.to_string().contains("offers no SASL login"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_external_logs_in_with_a_certificate_nickserv_holds() {
    let server = SaslServer::start_with(Options {
        tls: true,
        ..Options::default()
    });
    let known = server.client_cert("known", "smokey-cert");
    let stranger = server.client_cert("stranger", "smokey-cert");
    server.register_with_cert("smokeycert", "fleet-password", &known.cert);
    let external = |nick: &str, cert: &common::test_ca::CertFiles| {
        IrcChat::new(server.tls_addr(), nick, "#sasl")
            .tls_ca_file(server.ca_file())
            .sasl_external(
                std::fs::read(&cert.cert).unwrap(),
                std::fs::read(&cert.key).unwrap(),
            )
            .reconnect_backoff(Duration::from_millis(100), Duration::from_secs(1))
            .peer_wait(Duration::from_secs(5))
            .settle_time(Duration::from_millis(300))
    };

    // A certificate signed by the same CA but on no account's list: the
    // server refuses the login, and `start` says so with its reason.
    let err = start(external("smokey-x", &stranger), "x")
        .await
        .expect_err("a certificate NickServ does not hold must fail start");
    let text = err.to_string();
    assert!(
        text.contains("SASL EXTERNAL login") && text.contains("904"),
        "{text}"
    );

    // The registered certificate logs in to its account: the server names
    // it, and a node trusting the account runs the fleet's messages, which
    // carry the account the server vouches for (account-tag).
    let a_chat = external("smokey-a", &known);
    let a_status = a_chat.status();
    let a = Node::builder("a")
        .transport(a_chat)
        .trust("smokeycert")
        .default_node(false)
        .start()
        .await
        .expect("the certificate NickServ holds logs in");
    assert_eq!(a_status.account().as_deref(), Some("smokeycert"));
    // b logs in to the same account with its password, over TLS too.
    let b = start(
        IrcChat::new(server.tls_addr(), "smokey-b", "#sasl")
            .tls_ca_file(server.ca_file())
            .sasl("smokeycert", "fleet-password"),
        "b",
    )
    .await
    .expect("start b");
    // What each node heard from the other, through the server: the
    // account on each is the one the server tagged it with.
    let seen: Log<(String, String, u64)> = Log::default();
    for (node, who) in [(&a, "a"), (&b, "b")] {
        let seen = seen.clone();
        node.register(move |note: Note, cx: Context| {
            let from = cx.sender().instance().unwrap_or("?").to_owned();
            if from != who {
                seen.push((
                    format!("{who} from {from}"),
                    cx.sender().account().to_owned(),
                    note.index,
                ));
            }
        });
    }
    assert!(
        a_status
            .wait_for_members(&["smokey-b"], Duration::from_secs(30))
            .await,
        "{a_status:?}"
    );
    a.send(Note { index: 1 }).await.unwrap();
    b.send(Note { index: 2 }).await.unwrap();
    wait_for(&a, "b's note", |s| s.dispatched >= 2).await;
    wait_for(&b, "a's note", |s| s.dispatched >= 2).await;
    let mut items = seen.items();
    items.sort();
    assert_eq!(
        items,
        [
            ("a from b".to_owned(), "smokeycert".to_owned(), 2),
            ("b from a".to_owned(), "smokeycert".to_owned(), 1),
        ]
    );
    assert_eq!(a.stats().untrusted, 0);
    assert_eq!(b.stats().untrusted, 0);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_sasl_but_without_account_tag_fails_start_saying_so() {
    let server = SaslServer::start_with(Options {
        without_account_tag: true,
        ..Options::default()
    });
    server.register("smokey", "fleet-password");
    let err = start(
        chat(&server, "smokey-a").sasl("smokey", "fleet-password"),
        "a",
    )
    .await
    .expect_err("SASL without account-tag must fail start");
    let text = err.to_string();
    assert!(
        text.contains("does not offer the IRCv3 `account-tag` capability") && text.contains("sasl"),
        "{text}"
    );
}
