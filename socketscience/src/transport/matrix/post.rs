//! Running the transport: posting (one event per post, rate limits
//! waited out, retries with the same transaction id) beside the sync
//! reader.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::OptionFuture;
use ruma::api::client::message::send_message_event;
use ruma::events::room::message::RoomMessageEventContent;
use ruma::OwnedTransactionId;
use tokio::sync::watch;
use tracing::{debug, error, warn};

use super::api::Failure;
use super::client::Client;
use super::{sync, MatrixError};
use crate::error::{Error, Result};
use crate::transport::backoff::Backoff;
use crate::transport::NodeLink;
use crate::transport::{BoxFuture, TransportIo};

/// Stops a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Posts what the node gives and follows the room until the node shuts
/// down (or the room cannot be used).
pub(crate) async fn run(client: Arc<Client>, mut io: TransportIo) -> Result<()> {
    let (stop, stopped) = watch::channel(false);
    let (caught_up, mut reading) = watch::channel(false);
    let mut follower = tokio::spawn(sync::follow(
        client.clone(),
        io.inbound.clone(),
        io.link(),
        stopped,
        caught_up,
    ));
    let _abort = AbortOnDrop(follower.abort_handle());
    let mut sequence = 0u64;
    let mut in_flight: Option<BoxFuture<std::result::Result<bool, MatrixError>>> = None;
    let mut open = true;
    let mut follower_done = false;
    let mut caught_up = false;
    let result = loop {
        if !open && in_flight.is_none() {
            break Ok(());
        }
        tokio::select! {
            // The first posts wait until what was posted since the last
            // run is read (`sync::follow`; a reader gone is told below).
            _ = reading.wait_for(|c| *c), if !caught_up => caught_up = true,
            // Ask for the next text only when free to post: while a post
            // waits out a rate limit, envelopes gather in the node's queue.
            post = io.next_post(), if caught_up && open && in_flight.is_none() => match post {
                Some(text) => {
                    sequence += 1;
                    let txn = OwnedTransactionId::from(format!("{}{sequence}", client.txn_prefix));
                    in_flight = Some(Box::pin(post_text(client.clone(), io.link(), text, txn)));
                }
                None => open = false,
            },
            Some(done) = OptionFuture::from(in_flight.as_mut()), if in_flight.is_some() => {
                in_flight = None;
                match done {
                    Ok(true) => {}
                    // Given up while shutting down: the homeserver is not
                    // answering; stop, and the node counts what is left.
                    Ok(false) => break Ok(()),
                    Err(e) => {
                        error!(node = io.node_name(), error = %e, "cannot post to the Matrix room");
                        break Err(e.into());
                    }
                }
            },
            ended = &mut follower => {
                follower_done = true;
                break match ended {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => {
                        error!(node = io.node_name(), error = %e, "cannot follow the Matrix room");
                        Err(e.into())
                    }
                    Err(e) => Err(Error::transport(e)),
                };
            },
        }
    };
    // Let the reader finish handing over what it has and save its position.
    let _ = stop.send(true);
    if !follower_done {
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut follower).await;
    }
    client.save();
    result
}

/// Posts one text, waiting out rate limits and retrying failures with the
/// same transaction id (a retry is never doubled). Gives up (logged,
/// `Ok(false)`) only once the node is shutting down and a few tries failed;
/// an error when the homeserver refuses this account's posts.
async fn post_text(
    client: Arc<Client>,
    shared: NodeLink,
    text: String,
    txn: OwnedTransactionId,
) -> std::result::Result<bool, MatrixError> {
    let settings = &client.settings;
    let content = RoomMessageEventContent::notice_plain(text);
    let request =
        send_message_event::v3::Request::new(client.room_id.clone(), txn.clone(), &content)
            .map_err(|e| MatrixError::Config(format!("cannot serialise a post: {e}")))?;
    let bytes = request.body.json().get().len();
    let mut backoff = Backoff::new(settings.reconnect_delay, settings.max_reconnect_delay);
    let mut failures = 0;
    loop {
        let failure = match client.request(request.clone()).await {
            Ok(answer) => {
                debug!(event_id = %answer.event_id, %txn, bytes, "posted to Matrix");
                return Ok(true);
            }
            Err(Failure::Fatal(e)) => return Err(e),
            Err(e) => e,
        };
        if let Some(wait) = failure.rate_limited() {
            debug!(?wait, %txn, "rate-limited by the homeserver");
            tokio::time::sleep(wait).await;
            continue;
        }
        if let Failure::Matrix(e) = &failure {
            if e.status_code.as_u16() == 413 {
                error!(%txn, bytes, error = %e, "the homeserver refused a post as too large; its envelopes are lost (lower max_message_len)");
                return Ok(true);
            }
            if e.status_code.is_client_error() {
                return Err(MatrixError::Room {
                    room: client.room_id.to_string(),
                    reason: format!("the homeserver refuses posts from {}: {e}", client.user_id),
                });
            }
        }
        failures += 1;
        if shared.is_closing() && failures >= settings.shutdown_tries {
            error!(%txn, failures, error = %failure, "gave up on a post while shutting down; its envelopes are lost");
            return Ok(false);
        }
        if failures == 1 {
            warn!(%txn, error = %failure, "a post failed; retrying it with the same transaction id");
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}
