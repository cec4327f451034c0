//! The receiving side: the room's websocket, reconnects, and backfill from
//! the room's history after each (re)connect.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::header::{HeaderValue, ORIGIN, USER_AGENT};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::Connector;
use tracing::{debug, info, warn};

use super::client::{Client, Event, History};
use super::html::{self, Content};
use super::StackExchangeError;
use crate::transport::backoff::Backoff;
use crate::transport::ChatMessage;
use crate::transport::{Mishap, NodeLink};

/// `event_type` of a new message. Edits (2), deletions (10), mentions (8),
/// replies (18) and the rest are not new messages.
const MESSAGE_POSTED: u64 = 1;

/// How many delivered message ids are remembered to drop repeats (the
/// history gives at most 100 messages, so this is plenty).
const REMEMBERED_IDS: usize = 2048;

/// Longest websocket message read (frames are small; this bounds memory).
const MAX_WS_MESSAGE: usize = 8 << 20;

type Result<T, E = StackExchangeError> = std::result::Result<T, E>;

/// What the receiver knows across reconnects.
pub(crate) struct Receiver {
    client: Arc<Client>,
    /// The node's counters (`sources_lost`, `room_timeouts`).
    shared: NodeLink,
    tls: Arc<rustls::ClientConfig>,
    tx: mpsc::Sender<ChatMessage>,
    /// Messages up to this id were in the room before the transport
    /// connected: never delivered.
    baseline: u64,
    /// The last event time seen, for the websocket's `?l=`.
    time: i64,
    /// Messages handed to the node (their full text), or given up on
    /// (their source stayed unreadable): never handed again.
    delivered: RecentIds,
}

/// How a websocket session ended.
enum Ended {
    /// The socket closed, failed or went quiet; `frames` came before.
    Socket { frames: u64 },
    /// The node is gone: stop.
    Stopped,
}

impl Receiver {
    pub(crate) fn new(
        client: Arc<Client>,
        shared: NodeLink,
        tls: Arc<rustls::ClientConfig>,
        tx: mpsc::Sender<ChatMessage>,
        start: &History,
    ) -> Receiver {
        let baseline = start
            .events
            .iter()
            .filter_map(|e| e.message_id)
            .max()
            .unwrap_or(0);
        Receiver {
            client,
            shared,
            tls,
            tx,
            baseline,
            time: start.time,
            delivered: RecentIds::default(),
        }
    }

    /// Receives until the node stops, reconnecting as the clients do: when
    /// the socket closes, fails, or sends nothing for the idle timeout.
    /// Fails only on what retrying cannot fix (the room refuses us, the
    /// login is gone for good).
    pub(crate) async fn run(mut self) -> Result<()> {
        let settings = self.client.settings.clone();
        // Doubling at most five times, and to at most 30 s (or the delay
        // itself, when it is longer).
        let max = settings
            .reconnect_delay
            .saturating_mul(32)
            .min(Duration::from_secs(30).max(settings.reconnect_delay));
        let mut backoff = Backoff::new(settings.reconnect_delay, max);
        loop {
            match self.session().await {
                Ok(Ended::Stopped) => return Ok(()),
                Ok(Ended::Socket { frames }) => {
                    if frames > 0 {
                        backoff.reset();
                    }
                    info!(
                        room = self.client.room,
                        frames, "the chat websocket ended; reconnecting"
                    );
                }
                Err(StackExchangeError::Refused { text, .. })
                    if html::room_timeout(&text).is_some() =>
                {
                    self.shared.count(Mishap::RoomTimeout);
                    let wait = html::room_timeout(&text)
                        .flatten()
                        .unwrap_or(super::ROOM_TIMEOUT_WAIT)
                        .min(super::MAX_ROOM_TIMEOUT_WAIT);
                    warn!(room = self.client.room, chat_says = %text, ?wait, "the room is in timeout; waiting it out");
                    tokio::time::sleep(wait).await;
                }
                Err(e) if e.is_fatal() => return Err(e),
                Err(e) if e.is_session_lost() => {
                    warn!(room = self.client.room, error = %e, "the chat session is gone; reading the fkey again");
                    match self.client.refresh().await {
                        Ok(()) => {}
                        Err(e) if e.is_fatal() => return Err(e),
                        Err(e) => {
                            warn!(room = self.client.room, error = %e, "cannot renew the chat session")
                        }
                    }
                }
                Err(e) => {
                    warn!(room = self.client.room, error = %e, "cannot follow the room; retrying")
                }
            }
            if self.tx.is_closed() {
                return Ok(());
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    /// One websocket session: authorise, connect, backfill, stream.
    async fn session(&mut self) -> Result<Ended> {
        let client = self.client.clone();
        if self.time == 0 {
            self.time = client.history().await?.time;
        }
        let url = client.ws_auth().await?;
        let separator = if url.contains('?') { '&' } else { '?' };
        let mut request = format!("{url}{separator}l={}", self.time)
            .into_client_request()
            .map_err(|e| StackExchangeError::WebSocket(e.to_string()))?;
        let origin = HeaderValue::from_str(&client.endpoints.chat)
            .map_err(|e| StackExchangeError::Protocol(format!("bad chat address: {e}")))?;
        request.headers_mut().insert(ORIGIN, origin);
        request.headers_mut().insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("socketscience/", env!("CARGO_PKG_VERSION"))),
        );
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_WS_MESSAGE))
            .max_frame_size(Some(MAX_WS_MESSAGE));
        let connect = tokio_tungstenite::connect_async_tls_with_config(
            request,
            Some(config),
            false,
            Some(Connector::Rustls(self.tls.clone())),
        );
        let idle = client.settings.idle_timeout;
        let (mut socket, _) = tokio::time::timeout(idle, connect)
            .await
            .map_err(|_| StackExchangeError::WebSocket("connecting timed out".into()))?
            .map_err(|e| StackExchangeError::WebSocket(e.to_string()))?;
        debug!(room = client.room, "the chat websocket is open");

        // What was posted while no socket listened: the history, now that
        // the socket is open (a message is in one or the other, or both).
        let history = client.history().await?;
        self.time = self.time.max(history.time);
        let mut backlog = history.events;
        backlog.sort_by_key(|e| e.message_id);
        if let Some(oldest) = backlog.iter().filter_map(|e| e.message_id).min() {
            if backlog.len() >= 100 && oldest > self.delivered.newest().max(self.baseline) {
                warn!(
                    room = client.room,
                    "more than 100 messages came while disconnected; some may be missed"
                );
            }
        }
        for event in &backlog {
            if !self.deliver(event).await {
                return Ok(Ended::Stopped);
            }
        }

        let mut frames = 0;
        loop {
            let next = match tokio::time::timeout(idle, socket.next()).await {
                Ok(next) => next,
                Err(_) => {
                    info!(
                        room = client.room,
                        ?idle,
                        "no frame from the chat websocket; reconnecting"
                    );
                    return Ok(Ended::Socket { frames });
                }
            };
            let text = match next {
                Some(Ok(WsMessage::Text(text))) => text,
                Some(Ok(WsMessage::Close(_))) | None => return Ok(Ended::Socket { frames }),
                Some(Ok(_)) => {
                    frames += 1;
                    continue;
                }
                Some(Err(e)) => {
                    debug!(room = client.room, error = %e, "the chat websocket failed");
                    return Ok(Ended::Socket { frames });
                }
            };
            frames += 1;
            let events = match self.read_frame(&text) {
                Some(events) => events,
                None => {
                    debug!(
                        room = client.room,
                        "ignored a websocket frame that is not JSON"
                    );
                    continue;
                }
            };
            for event in &events {
                if !self.deliver(event).await {
                    return Ok(Ended::Stopped);
                }
            }
        }
    }

    /// The events of this room in a frame `{"r<room>": {"e": [...], "t": N}}`.
    fn read_frame(&mut self, text: &str) -> Option<Vec<Event>> {
        let frame: Value = serde_json::from_str(text).ok()?;
        let room = frame.get(format!("r{}", self.client.room))?;
        if let Some(time) = room.get("t").and_then(Value::as_i64) {
            self.time = self.time.max(time);
        }
        Some(
            room.get("e")
                .and_then(Value::as_array)
                .map(|events| events.iter().filter_map(Event::from_json).collect())
                .unwrap_or_default(),
        )
    }

    /// Hands a new message of this room to the node, once. `false` once the
    /// node has stopped.
    async fn deliver(&mut self, event: &Event) -> bool {
        let room = self.client.room;
        if event.event_type != MESSAGE_POSTED || event.room_id.is_some_and(|r| r != room) {
            return true;
        }
        let (Some(message_id), Some(user_id), Some(content)) =
            (event.message_id, event.user_id, event.content.as_deref())
        else {
            return true;
        };
        if message_id <= self.baseline || self.delivered.contains(message_id) {
            return true;
        }
        let text = match html::content_to_text(content) {
            Content::Text(text) => text,
            Content::Partial => match self.fetch_source(message_id).await {
                Some(text) => text,
                None => {
                    // Logged; not fetched again on the next history read.
                    self.shared.count(Mishap::SourceLost);
                    self.delivered.insert(message_id);
                    return true;
                }
            },
        };
        // Handed over only now that its full text is here.
        let sent = self
            .tx
            .send(ChatMessage::new(user_id.to_string(), text))
            .await
            .is_ok();
        self.delivered.insert(message_id);
        sent
    }

    /// The full source of a cut message, retried with backoff for up to
    /// the `source_retry_limit`; `None` (logged) if it stayed unreadable.
    async fn fetch_source(&self, message_id: u64) -> Option<String> {
        let limit = self.client.settings.source_retry_limit;
        let start = tokio::time::Instant::now();
        let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
        let mut attempts = 0;
        loop {
            attempts += 1;
            let e = match self.client.plain_source(message_id).await {
                Ok(text) => return Some(text),
                Err(e) => e,
            };
            // The message is gone (deleted): no retry can bring it back.
            let gone = matches!(e, StackExchangeError::Status { status: 404, .. });
            let left = limit.saturating_sub(start.elapsed());
            if gone || left.is_zero() {
                warn!(
                    room = self.client.room,
                    message_id,
                    attempts,
                    error = %e,
                    "cannot read the full source of a cut message; its envelopes are lost \
                     to this node"
                );
                return None;
            }
            let wait = backoff.next_delay();
            debug!(message_id, error = %e, ?wait, "cannot fetch a message source; retrying");
            tokio::time::sleep(wait.min(left)).await;
        }
    }
}

/// The last few thousand message ids delivered.
#[derive(Default)]
struct RecentIds {
    set: HashSet<u64>,
    order: VecDeque<u64>,
    newest: u64,
}

impl RecentIds {
    /// Remembers `id`; `false` if it already was.
    fn insert(&mut self, id: u64) -> bool {
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > REMEMBERED_IDS {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.newest = self.newest.max(id);
        true
    }

    fn contains(&self, id: u64) -> bool {
        self.set.contains(&id)
    }

    fn newest(&self) -> u64 {
        self.newest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_ids_drop_repeats_and_stay_bounded() {
        let mut ids = RecentIds::default();
        assert!(ids.insert(5));
        assert!(!ids.insert(5));
        for id in 6..6 + REMEMBERED_IDS as u64 {
            assert!(ids.insert(id));
        }
        assert_eq!(ids.set.len(), REMEMBERED_IDS);
        assert_eq!(ids.newest(), 5 + REMEMBERED_IDS as u64);
    }
}
