//! [`StackExchangeChat`]: a [`Transport`] for Stack Exchange chat
//! (chat.stackexchange.com, chat.stackoverflow.com,
//! chat.meta.stackexchange.com), where SmokeDetector runs. Feature
//! `stackexchange`.
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> socketscience::Result<()> {
//! use socketscience::{Codec, Node, StackExchangeChat};
//!
//! let chat = StackExchangeChat::builder("stackexchange.com", 11540)
//!     .credentials("smokey@example.com", "hunter2")
//!     .cookie_file("smokey-cookies.json") // reused on the next start
//!     .connect() // logs in, learns the user id
//!     .await?;
//! let node = Node::builder("Henders/EC2")
//!     .transport(chat) // posts and reads as that user
//!     .codec(Codec::MessagePack) // when Python instances share the room
//!     .start()
//!     .await?;
//! # node.shutdown().await }
//! ```
//!
//! How it speaks to the chat (the protocol the open-source clients,
//! ChatExchange, sochat4j and ChatExchange.Net, agree on):
//!
//! - **Login**: the login host's `/users/login` form (email, password and
//!   its hidden `fkey`) gives an `acct` cookie; the chat's
//!   `chats/join/favorite` page then gives the chat `fkey` and, in its top
//!   bar (`.topbar-menu-links`, the only place that says who is logged
//!   in; a top bar without a user link, saying "log in", means nobody is,
//!   whatever users the page lists elsewhere), the user id, which is the
//!   node's chat account. Cookies can be saved to a file and reused. A
//!   page without an fkey means the site is down or read-only: the
//!   transport waits and retries.
//! - **Posting**: `chats/<room>/messages/new`. The transport asks the node
//!   for the next text only when it may post, so envelopes wait in the
//!   node's queue while the chat throttles (HTTP 409, "You can perform this
//!   action again in N seconds": it waits N seconds and a random part of
//!   a second more, so that instances sharing the account take turns) and
//!   are coalesced into fewer posts. A throttle answer is never a failure:
//!   it never drops a post. Only real failures (network, server errors)
//!   count toward [`max_post_tries`](StackExchangeChatBuilder::max_post_tries);
//!   a post given up is logged with how many envelopes it held and counted
//!   in [`Stats::posts_given_up`](crate::Stats::posts_given_up). The chat
//!   silently refuses a repeat of the account's previous text (`{"id":
//!   null}`): a repeated frame is posted again with other random digits.
//!   A room in timeout (404, "The room is in timeout, ending in N
//!   seconds") is waited out, logged and counted in
//!   [`Stats::room_timeouts`](crate::Stats::room_timeouts). Any other 404
//!   (no such room, the account blocked) stops the transport with the
//!   chat's explanation; [`Node::shutdown`](crate::Node::shutdown) returns
//!   it.
//! - **Receiving**: the room's websocket (`ws-auth`, `Origin` set). New
//!   messages (`event_type` 1) of the room are handed to the node with the
//!   author's user id as the account; edits and other events are ignored.
//!   Rendered content is turned back into the exact source: the
//!   `<div class='full'>` wrapper dropped, `<br>` made newlines, entities
//!   unescaped; a cut (`'partial'`) message is fetched whole from
//!   `/message/<id>?plain=true`, retried with backoff for up to
//!   [`source_retry_limit`](StackExchangeChatBuilder::source_retry_limit)
//!   (60 s); it counts as handed over only once its full text reached the
//!   node. One whose source stays unreadable is logged and counted in
//!   [`Stats::sources_lost`](crate::Stats::sources_lost).
//! - **Reconnects**: when the socket closes, fails, or sends nothing for
//!   the idle timeout (30 s), a new one is opened, and the room's history
//!   (its last 100 messages) is read to hand over what came in between.
//!   Messages already handed over are not handed again. Everything posted
//!   in the room after [`connect`](StackExchangeChatBuilder::connect)
//!   returns is delivered as long as no more than 100 messages come while
//!   no socket listens; beyond that the older ones are missed, and a
//!   warning says so.
//!
//! Tested against a stand-in server that speaks this protocol on loopback
//! (`tests/sechat.rs`), not against the live site.

mod builder;
mod client;
mod html;
mod socket;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::OptionFuture;
use tokio::sync::mpsc;
use tracing::{debug, error, warn};

use crate::error::{Error, Result};
use crate::transport::backoff::Backoff;
use crate::transport::{BoxFuture, Transport, TransportIo};
use crate::transport::{Mishap, NodeLink};
use crate::wire;
pub use builder::StackExchangeChatBuilder;
use client::{Client, PostAnswer};

/// The default largest post, in bytes. Multi-line chat messages (frames
/// start with `".\n"`) have no known limit; 16 KiB keeps posts reasonable
/// and lets one post carry many coalesced envelopes. Larger frames are
/// chunked by the node.
pub const DEFAULT_MAX_MESSAGE_LEN: usize = 16 << 10;

/// The longest wait a throttle answer is taken at its word for.
const MAX_THROTTLE_WAIT: Duration = Duration::from_secs(600);

/// The wait for a room in timeout when the chat does not say how long.
const ROOM_TIMEOUT_WAIT: Duration = Duration::from_secs(30);

/// The longest wait a room timeout is taken at its word for (then the
/// post is tried again, and waits again if the room still is in timeout).
const MAX_ROOM_TIMEOUT_WAIT: Duration = Duration::from_secs(3600);

/// How many times in a row a repeated text is posted again with other
/// digits before the refusal counts as a failure (once is the norm).
const MAX_REPEATS: u32 = 8;

/// What can go wrong with Stack Exchange chat. It reaches callers inside
/// [`Error::Transport`]; downcast the source to tell the cases apart.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StackExchangeError {
    /// Logging in failed.
    #[error("cannot log in to Stack Exchange chat: {0}")]
    Login(String),
    /// The site stayed down or read-only (its pages had no fkey).
    #[error(
        "Stack Exchange chat stayed down or read-only (no fkey) for {tries} tries; \
         try again later or raise `unavailable_retry`"
    )]
    Unavailable {
        /// How many times the page was read.
        tries: u32,
    },
    /// The chat answered 404 for the room: it does not exist, or the
    /// account may not post there (blocked). A room in timeout is waited
    /// out instead.
    #[error("Stack Exchange chat refuses room {room}: {text}")]
    Refused {
        /// The room.
        room: u64,
        /// The chat's explanation.
        text: String,
    },
    /// An unexpected HTTP status.
    #[error("{url} answered HTTP {status}: {text}")]
    Status {
        /// The address requested.
        url: String,
        /// The status code.
        status: u16,
        /// The answer, shortened.
        text: String,
    },
    /// The chat answered something this transport does not understand.
    #[error("unexpected answer from Stack Exchange chat: {0}")]
    Protocol(String),
    /// The HTTP request failed (network, timeout, TLS).
    #[error("HTTP request to Stack Exchange chat failed: {0}")]
    Http(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The websocket failed.
    #[error("the Stack Exchange chat websocket failed: {0}")]
    WebSocket(String),
    /// The cookie file could not be read.
    #[error("cannot read the cookie file {path}: {reason}")]
    CookieFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The builder's settings do not make a connection.
    #[error("invalid Stack Exchange chat setting: {0}")]
    Config(String),
}

impl StackExchangeError {
    /// Whether retrying cannot help.
    fn is_fatal(&self) -> bool {
        matches!(
            self,
            StackExchangeError::Login(_)
                | StackExchangeError::Refused { .. }
                | StackExchangeError::CookieFile { .. }
                | StackExchangeError::Config(_)
        )
    }
}

impl StackExchangeError {
    /// Whether the chat no longer takes this session's fkey or cookies:
    /// reading the fkey again (and logging in again) may fix it.
    fn is_session_lost(&self) -> bool {
        match self {
            StackExchangeError::Status { status, .. } => matches!(status, 400 | 401 | 403),
            // An HTML page (the login form) where JSON was expected.
            StackExchangeError::Protocol(_) => true,
            _ => false,
        }
    }
}

impl From<StackExchangeError> for Error {
    fn from(e: StackExchangeError) -> Error {
        Error::transport(e)
    }
}

/// A logged-in connection to one Stack Exchange chat room: a
/// [`Transport`]. Build it with [`StackExchangeChat::builder`].
///
/// Its chat account (what [`Node::account`](crate::Node::account) reports
/// and what nodes trust) is the chat user id, such as `"120914"`.
pub struct StackExchangeChat {
    account: String,
    client: Arc<Client>,
    tls: Arc<rustls::ClientConfig>,
    start: client::History,
}

impl std::fmt::Debug for StackExchangeChat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackExchangeChat")
            .field("chat", &self.client.endpoints.chat)
            .field("room", &self.client.room)
            .field("user_id", &self.client.user_id)
            .field("user_name", &self.client.user_name)
            .finish_non_exhaustive()
    }
}

impl StackExchangeChat {
    /// Settings for room `room` on `host`: `"stackexchange.com"`,
    /// `"stackoverflow.com"` or `"meta.stackexchange.com"` (a leading
    /// `chat.` is accepted).
    pub fn builder(host: impl Into<String>, room: u64) -> StackExchangeChatBuilder {
        StackExchangeChatBuilder::new(host.into(), room)
    }

    /// The chat user id this transport posts as.
    pub fn user_id(&self) -> u64 {
        self.client.user_id
    }

    /// The chat user name this transport posts as.
    pub fn user_name(&self) -> &str {
        &self.client.user_name
    }

    /// The room it posts to and reads.
    pub fn room(&self) -> u64 {
        self.client.room
    }
}

impl Transport for StackExchangeChat {
    fn account(&self) -> &str {
        &self.account
    }

    fn max_message_len(&self) -> usize {
        self.client.settings.max_message_len
    }

    /// About one a second: what Stack Exchange chat lets an established
    /// account post (it answers faster posts with HTTP 409).
    fn posts_per_minute(&self) -> Option<f64> {
        Some(60.0)
    }

    fn run(self: Box<Self>, io: TransportIo) -> BoxFuture<Result<()>> {
        Box::pin(run(*self, io))
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A post's end: the text posted (`None` if it was given up on).
type PostDone = std::result::Result<Option<String>, StackExchangeError>;

async fn run(chat: StackExchangeChat, mut io: TransportIo) -> Result<()> {
    let StackExchangeChat {
        client, tls, start, ..
    } = chat;
    let shared = io.link();
    let (tx, mut rx) = mpsc::channel(256);
    let receiver =
        tokio::spawn(socket::Receiver::new(client.clone(), shared.clone(), tls, tx, &start).run());
    let _abort = AbortOnDrop(receiver.abort_handle());
    let mut receiver = Some(receiver);

    let mut rng = fastrand::Rng::new();
    let mut last_posted: Option<String> = None;
    let mut in_flight: Option<BoxFuture<PostDone>> = None;
    let mut open = true;
    let mut receiving = true;
    while open || in_flight.is_some() {
        tokio::select! {
            // Ask for the next text only when free to post: while a post
            // waits out a throttle, envelopes gather in the node's queue.
            post = io.next_post(), if open && in_flight.is_none() => match post {
                Some(text) => {
                    let text = unlike(text, last_posted.as_deref(), &mut rng);
                    // The envelopes of this post (of its frame, for a chunk).
                    let envelopes = io.last_post_envelopes();
                    in_flight = Some(Box::pin(post_text(
                        client.clone(),
                        shared.clone(),
                        text,
                        envelopes,
                        rng.u64(..),
                    )));
                }
                None => open = false,
            },
            Some(done) = OptionFuture::from(in_flight.as_mut()), if in_flight.is_some() => {
                in_flight = None;
                match done {
                    Ok(Some(text)) => last_posted = Some(text),
                    Ok(None) => {}
                    Err(e) => {
                        error!(node = io.node_name(), error = %e, "cannot post to Stack Exchange chat");
                        return Err(e.into());
                    }
                }
            },
            message = rx.recv(), if receiving => match message {
                Some(message) => io.receive(message).await?,
                None => {
                    receiving = false;
                    if let Some(handle) = receiver.take() {
                        match handle.await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => {
                                error!(node = io.node_name(), error = %e, "cannot follow the Stack Exchange chat room");
                                return Err(e.into());
                            }
                            Err(e) => return Err(Error::transport(e)),
                        }
                    }
                }
            },
        }
    }
    // Hand over what the socket had already delivered.
    while let Ok(message) = rx.try_recv() {
        io.receive(message).await?;
    }
    Ok(())
}

/// `text`, made to differ from the previous post: the chat drops a text
/// equal to the one before. A frame gets other random digits (receivers
/// ignore them); other texts (chunks never repeat) are left as they are.
fn unlike(text: String, previous: Option<&str>, rng: &mut fastrand::Rng) -> String {
    if previous != Some(text.as_str()) {
        return text;
    }
    match redigit(&text, rng) {
        Some(changed) => changed,
        None => text,
    }
}

/// The frame with other random digits, or `None` if `text` is no frame.
fn redigit(text: &str, rng: &mut fastrand::Rng) -> Option<String> {
    let (start, old) = wire::frame_head(text)?;
    let new = (old + 1 + rng.u16(0..9_999)) % 10_000;
    Some(format!("{start}{new:04}{}", &text[start.len() + 4..]))
}

/// A wait plus a random part of it (at most 3 s), smaller the more
/// times in a row this post was throttled: instances sharing the account
/// all hear the same wait, and the spread lets them take turns, the one
/// that has waited longest most likely first.
fn jittered(wait: Duration, in_a_row: u32, rng: &mut fastrand::Rng) -> Duration {
    let spread = (wait / 2 + Duration::from_millis(250)).min(Duration::from_secs(3));
    let spread = spread / in_a_row.clamp(1, 16);
    wait + spread.mul_f64(rng.f64())
}

/// Posts one text, waiting out throttles and room timeouts as long as the
/// chat asks, and retrying real failures up to the configured tries.
/// `Ok(None)` when it was given up on (logged and counted); an error only
/// when the chat refuses this account's posts in the room.
async fn post_text(
    client: Arc<Client>,
    shared: NodeLink,
    mut text: String,
    envelopes: usize,
    seed: u64,
) -> PostDone {
    let settings = &client.settings;
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let tries = settings.max_post_tries.max(1);
    let mut failures = 0;
    let mut repeats = 0;
    let mut throttled = 0;
    loop {
        match client.post_message(&text).await {
            PostAnswer::Posted(id) => {
                debug!(
                    room = client.room,
                    message_id = id,
                    bytes = text.len(),
                    "posted"
                );
                return Ok(Some(text));
            }
            PostAnswer::Duplicate => {
                repeats += 1;
                match redigit(&text, &mut rng) {
                    Some(changed) if repeats <= MAX_REPEATS => {
                        debug!(
                            room = client.room,
                            "the chat refused a post as a repeat; posting it with other digits"
                        );
                        text = changed;
                        continue;
                    }
                    Some(changed) => {
                        text = changed;
                        failures += 1;
                        warn!(
                            room = client.room,
                            repeats, "the chat keeps refusing a post as a repeat"
                        );
                    }
                    // Not a frame (a chunk): the same text is the
                    // account's last one in the room, so nothing is lost.
                    None => return Ok(Some(text)),
                }
            }
            PostAnswer::Throttled(wait) => {
                throttled += 1;
                let wait = wait
                    .unwrap_or(settings.unknown_throttle_wait)
                    .min(MAX_THROTTLE_WAIT);
                let wait = jittered(wait, throttled, &mut rng);
                debug!(
                    room = client.room,
                    ?wait,
                    throttled,
                    "throttled by the chat"
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            PostAnswer::Refused(why) => match html::room_timeout(&why) {
                Some(wait) => {
                    shared.count(Mishap::RoomTimeout);
                    let wait = wait.unwrap_or(ROOM_TIMEOUT_WAIT).min(MAX_ROOM_TIMEOUT_WAIT);
                    let wait = jittered(wait, 1, &mut rng);
                    warn!(room = client.room, chat_says = %why, ?wait, "the room is in timeout; waiting it out");
                    tokio::time::sleep(wait).await;
                    continue;
                }
                None => {
                    return Err(StackExchangeError::Refused {
                        room: client.room,
                        text: why,
                    })
                }
            },
            PostAnswer::SessionLost(reason) => {
                failures += 1;
                warn!(room = client.room, %reason, "the chat session is gone; reading the fkey again");
                if let Err(e) = client.refresh().await {
                    if e.is_fatal() {
                        return Err(e);
                    }
                    warn!(room = client.room, error = %e, "cannot renew the chat session");
                }
            }
            PostAnswer::Failed(reason) => {
                failures += 1;
                warn!(room = client.room, %reason, failures, "a post failed");
                if failures < tries {
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
        if failures >= tries {
            break;
        }
    }
    shared.count(Mishap::PostGivenUp);
    error!(
        room = client.room,
        failures,
        envelopes,
        bytes = text.len(),
        "gave up on a post after {failures} failures; its {envelopes} envelope(s) are lost \
         unless resent"
    );
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_waits_are_spread_and_the_longest_waiter_spreads_least() {
        let mut rng = fastrand::Rng::with_seed(3);
        let second = Duration::from_secs(1);
        let waits: Vec<Duration> = (0..200).map(|_| jittered(second, 1, &mut rng)).collect();
        assert!(waits.iter().all(|w| *w >= second && *w <= second * 7 / 4));
        assert!(waits.iter().any(|w| *w > second * 5 / 4), "spread out");
        for _ in 0..200 {
            let w = jittered(second, 8, &mut rng);
            assert!(w >= second && w <= second + Duration::from_millis(750) / 8);
        }
        let long = jittered(Duration::from_secs(600), 1, &mut rng);
        assert!(long <= Duration::from_secs(603));
    }

    #[test]
    fn a_repeated_frame_gets_other_digits() {
        let mut rng = fastrand::Rng::with_seed(7);
        let frame = ".\n\u{2}1234eyJhIjoxfQ==\u{3}".to_owned();
        assert_eq!(unlike(frame.clone(), None, &mut rng), frame);
        assert_eq!(unlike(frame.clone(), Some("other"), &mut rng), frame);
        for _ in 0..1000 {
            let changed = unlike(frame.clone(), Some(&frame), &mut rng);
            assert_ne!(changed, frame);
            assert_eq!(changed.len(), frame.len());
            assert!(changed.starts_with(".\n\u{2}"));
            assert!(changed.ends_with("eyJhIjoxfQ==\u{3}"));
            // Still a frame with the same body.
            assert_eq!(
                wire::parse_chat_text(&changed).unwrap(),
                wire::ChatText::Frame {
                    body: "eyJhIjoxfQ=="
                }
            );
        }
        let single = "\u{2}0000AAAA\u{3}".to_owned();
        assert_ne!(unlike(single.clone(), Some(&single), &mut rng), single);
        // Not a frame: left alone.
        assert_eq!(unlike("hi".into(), Some("hi"), &mut rng), "hi");
        assert_eq!(redigit(".\n\u{2}12", &mut rng), None);
    }
}
