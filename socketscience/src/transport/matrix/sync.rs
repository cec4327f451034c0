//! Receiving: `/sync` long-polls for the room's message events, gaps
//! filled from `/messages`.

use std::sync::Arc;
use std::time::Duration;

use ruma::api::client::filter::{FilterDefinition, RoomEventFilter};
use ruma::api::client::message::get_message_events;
use ruma::api::client::sync::sync_events::v3 as sync;
use ruma::api::Direction;
use ruma::events::{
    AnyMessageLikeEvent, AnySyncMessageLikeEvent, AnySyncTimelineEvent, AnyTimelineEvent,
};
use ruma::presence::PresenceState;
use ruma::serde::Raw;
use ruma::UInt;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::api::Failure;
use super::client::Client;
use super::MatrixError;
use crate::transport::backoff::Backoff;
use crate::transport::ChatMessage;
use crate::transport::{Mishap, NodeLink};

/// One message event of the room: its id and, if it has a body, the chat
/// message it makes.
struct Seen {
    id: Option<String>,
    message: Option<ChatMessage>,
}

/// What starts the transaction ids of this transport's posts.
pub(crate) const TXN_MARK: &str = "ss-";

/// Whether this device posted the event in an earlier run (its
/// transaction id, which the homeserver shows only to the device that
/// posted, is ours but not of this run): the node ran its handlers then,
/// so it is not handed over again after a restart.
fn posted_in_earlier_run<T>(raw: &Raw<T>, this_run: &str) -> bool {
    let Ok(Some(unsigned)) = raw.get_field::<serde_json::Value>("unsigned") else {
        return false;
    };
    unsigned
        .get("transaction_id")
        .and_then(|t| t.as_str())
        .is_some_and(|t| t.starts_with(TXN_MARK) && !t.starts_with(this_run))
}

/// A sync event as the node sees it.
fn from_sync(raw: &Raw<AnySyncTimelineEvent>, this_run: &str) -> Seen {
    seen(raw, this_run, |event| match event {
        AnySyncTimelineEvent::MessageLike(AnySyncMessageLikeEvent::RoomMessage(event)) => event
            .as_original()
            .map(|e| ChatMessage::new(e.sender.as_str(), e.content.body())),
        _ => None,
    })
}

/// A `/messages` event as the node sees it.
fn from_history(raw: &Raw<AnyTimelineEvent>, this_run: &str) -> Seen {
    seen(raw, this_run, |event| match event {
        AnyTimelineEvent::MessageLike(AnyMessageLikeEvent::RoomMessage(event)) => event
            .as_original()
            .map(|e| ChatMessage::new(e.sender.as_str(), e.content.body())),
        _ => None,
    })
}

/// An event as the node sees it: its id, and the chat message `message`
/// finds in it, unless this device posted it in an earlier run or it does
/// not parse.
fn seen<T: serde::de::DeserializeOwned>(
    raw: &Raw<T>,
    this_run: &str,
    message: impl FnOnce(T) -> Option<ChatMessage>,
) -> Seen {
    let id = raw.get_field::<String>("event_id").ok().flatten();
    if posted_in_earlier_run(raw, this_run) {
        debug!(event_id = ?id, "skipped a post of this device's earlier run");
        return Seen { id, message: None };
    }
    let message = match raw.deserialize() {
        Ok(event) => message(event),
        Err(e) => {
            debug!(event_id = ?id, error = %e, "skipped an event that does not parse");
            None
        }
    };
    Seen { id, message }
}

/// Only this room's `m.room.message` events; no presence, state, account
/// data or receipts.
fn filter(client: &Client, limit: u32) -> FilterDefinition {
    let mut filter = FilterDefinition::ignore_all();
    filter.room.rooms = Some(vec![client.room_id.clone()]);
    filter.room.timeline = message_filter(limit);
    filter
}

fn message_filter(limit: u32) -> RoomEventFilter {
    let mut timeline = RoomEventFilter::empty();
    timeline.types = Some(vec!["m.room.message".to_owned()]);
    timeline.limit = Some(UInt::from(limit));
    timeline
}

fn sync_request(
    client: &Client,
    since: Option<String>,
    limit: u32,
    wait: Duration,
) -> sync::Request {
    let mut request = sync::Request::new();
    request.filter = Some(filter(client, limit).into());
    request.since = since;
    request.timeout = Some(wait);
    request.set_presence = PresenceState::Offline;
    request
}

/// Where reading starts when there is no saved position: now. Reads the
/// room's last message event, so that a later gap is read back to it.
pub(crate) async fn start_point(client: &Client) -> Result<(), MatrixError> {
    if client.session().next_batch.is_some() {
        return Ok(());
    }
    // Synapse answers a repeated request from its cache for a while (an
    // old `next_batch`, and so messages from before this start): a random
    // timeout (a first sync returns at once whatever it is) makes each
    // request its own.
    let wait = Duration::from_millis(fastrand::u64(1..10_000));
    let answer = client
        .sync(sync_request(client, None, 1, wait))
        .await
        .map_err(|e| match e {
            Failure::Fatal(e) => e,
            e => MatrixError::Sync(e.to_string()),
        })?;
    let last = answer.rooms.join.get(&client.room_id).and_then(|room| {
        room.timeline
            .events
            .iter()
            .rev()
            .find_map(|e| from_sync(e, &client.txn_prefix).id)
    });
    debug!(next_batch = %answer.next_batch, last_event = ?last, "Matrix sync starts here");
    client.advance(answer.next_batch, last);
    Ok(())
}

/// Follows the room until told to stop; hands every message event to the
/// node. An error only when it cannot go on (token refused, room left).
///
/// The first request reads what was posted since the saved position
/// without waiting for more; `caught_up` is told once it is handed over
/// (or failed): the node posts only then, so that its first posts (and
/// the heartbeats others answer them with) do not take the places of
/// older messages in the sync's timeline and the backfill.
pub(crate) async fn follow(
    client: Arc<Client>,
    inbound: mpsc::Sender<ChatMessage>,
    shared: NodeLink,
    mut stop: watch::Receiver<bool>,
    caught_up: watch::Sender<bool>,
) -> Result<(), MatrixError> {
    let settings = client.settings.clone();
    let mut backoff = Backoff::new(settings.reconnect_delay, settings.max_reconnect_delay);
    let mut failing = false;
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        let since = client.session().next_batch;
        let wait = if *caught_up.borrow() {
            settings.sync_wait
        } else {
            Duration::ZERO
        };
        let request = sync_request(&client, since, settings.timeline_limit, wait);
        let answer = tokio::select! {
            answer = client.sync(request) => answer,
            _ = stop.wait_for(|stop| *stop) => return Ok(()),
        };
        let handed = match answer {
            Ok(answer) => Ok(hand_over(&client, &inbound, &shared, answer).await?),
            Err(e) => Err(e),
        };
        caught_up.send_if_modified(|c| !std::mem::replace(c, true));
        let wait = match handed {
            Ok(handed) => {
                if failing {
                    info!(homeserver = %client.base, "reading the Matrix room again");
                    failing = false;
                }
                backoff.reset();
                if !handed {
                    // The node stopped.
                    return Ok(());
                }
                continue;
            }
            Err(Failure::Fatal(e)) => return Err(e),
            Err(e) => match e.rate_limited() {
                Some(wait) => wait,
                None => {
                    if !failing {
                        warn!(homeserver = %client.base, error = %e, "cannot read the Matrix room; retrying");
                        failing = true;
                    } else {
                        debug!(homeserver = %client.base, error = %e, "still cannot read the Matrix room");
                    }
                    backoff.next_delay()
                }
            },
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|stop| *stop) => return Ok(()),
        }
    }
}

/// Hands the node one sync answer's messages (after those of a gap), then
/// records the position. `false` when the node stopped taking messages.
async fn hand_over(
    client: &Client,
    inbound: &mpsc::Sender<ChatMessage>,
    shared: &NodeLink,
    answer: sync::Response,
) -> Result<bool, MatrixError> {
    if answer.rooms.leave.contains_key(&client.room_id) {
        return Err(MatrixError::Room {
            room: client.room_id.to_string(),
            reason: format!("{} left it (kicked or banned?)", client.user_id),
        });
    }
    let mut seen = Vec::new();
    if let Some(room) = answer.rooms.join.get(&client.room_id) {
        let timeline = &room.timeline;
        if timeline.limited {
            if let Some(prev) = &timeline.prev_batch {
                seen = backfill(client, shared, prev.clone()).await;
            }
        }
        seen.extend(
            timeline
                .events
                .iter()
                .map(|e| from_sync(e, &client.txn_prefix)),
        );
    }
    let mut last = None;
    for event in seen {
        if let Some(message) = event.message {
            if inbound.send(message).await.is_err() {
                return Ok(false);
            }
        }
        if event.id.is_some() {
            last = event.id;
        }
    }
    client.advance(answer.next_batch, last);
    Ok(true)
}

/// The message events between the last one handed over and `from` (a
/// gap's `prev_batch`), oldest first; at most the backfill bound of them
/// (the older ones are counted lost, in `Stats::history_gaps`).
async fn backfill(client: &Client, shared: &NodeLink, mut from: String) -> Vec<Seen> {
    let settings = &client.settings;
    let until = client.session().last_event_id;
    let mut found = Vec::new();
    let mut tries = 0;
    loop {
        let mut request =
            get_message_events::v3::Request::new(client.room_id.clone(), Direction::Backward);
        request.from = Some(from.clone());
        request.limit = UInt::from(settings.backfill_page);
        request.filter = message_filter(settings.backfill_page);
        let page = match client.request(request).await {
            Ok(page) => page,
            Err(e) if e.is_transient() && tries < 5 => {
                tries += 1;
                let wait = e.rate_limited().unwrap_or(settings.reconnect_delay * tries);
                debug!(error = %e, "cannot read the room's history yet; retrying");
                tokio::time::sleep(wait).await;
                continue;
            }
            Err(e) => {
                warn!(error = %e, "cannot read the room's history: messages posted in a gap may be missed");
                shared.count(Mishap::HistoryGap);
                break;
            }
        };
        let mut reached = false;
        for raw in &page.chunk {
            let event = from_history(raw, &client.txn_prefix);
            if event.id.is_some() && event.id == until {
                reached = true;
                break;
            }
            found.push(event);
            if found.len() > settings.max_backfill {
                break;
            }
        }
        if reached {
            break;
        }
        if found.len() > settings.max_backfill {
            found.truncate(settings.max_backfill);
            warn!(
                bound = settings.max_backfill,
                "more messages were posted during a gap than the backfill bound: the older ones are not read"
            );
            shared.count(Mishap::HistoryGap);
            break;
        }
        match page.end {
            Some(end) if !page.chunk.is_empty() => from = end,
            // The room's beginning.
            _ => break,
        }
    }
    debug!(
        events = found.len(),
        "read a gap back from the room's history"
    );
    found.reverse();
    found
}
