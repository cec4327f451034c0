//! [`MatrixChat`]: a [`Transport`] for a Matrix room. Feature `matrix`.
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> socketscience::Result<()> {
//! use socketscience::{MatrixChat, Node};
//!
//! let chat = MatrixChat::builder("http://127.0.0.1:8008", "#smokey:localhost") // homeserver, room id or alias
//!     .credentials("smokey-henders", "password")  // or .access_token(token)
//!     .state_file("smokey-matrix.json")           // device and sync token, resumed at the next start
//!     .connect()
//!     .await?;
//! let node = Node::builder("Henders/EC2")
//!     .transport(chat)
//!     .trust("@smokey-*:localhost")               // the account is the full user id
//!     .start()
//!     .await?;
//! # node.shutdown().await }
//! ```
//!
//! **Posts are not end-to-end encrypted.** `MatrixChat` has no E2EE (no
//! Olm or Megolm): it posts plain `m.room.message` events and reads only
//! those. The homeserver (and every server the room federates to) can read
//! every envelope; sign them ([`NodeBuilder::secret`](crate::NodeBuilder::secret),
//! `SOCKETSCIENCE_SECRET`) so that nobody can forge one, and keep secrets
//! out of messages. In a room with encryption turned on, its posts still go
//! out unencrypted (clients show them as such), and what other clients post
//! encrypted (`m.room.encrypted`) it never sees: give the fleet a room
//! without encryption.
//!
//! How it speaks to the homeserver (the client-server API, with ruma's
//! typed requests and events over reqwest):
//!
//! - **Account**: the full user id (`@smokey-henders:localhost`); trust
//!   patterns such as `"@smokey-*:localhost"` work as on IRC.
//! - **Login**: a password login (`m.login.password`), or an access token
//!   given. With a [state file](MatrixChatBuilder::state_file) the device,
//!   its token and the sync position are kept (owner-only, 0600) and
//!   reused at the next start: homeservers rate-limit logins, so a fleet
//!   should keep its tokens. When the homeserver stops taking the token
//!   (`M_UNKNOWN_TOKEN`) the transport logs in again on the same device if
//!   it has credentials, and otherwise stops with an error saying so.
//! - **Posting**: one `m.room.message` event of msgtype `m.notice` (bots
//!   do not answer notices) per post, the frame as its body, sent with a
//!   `PUT` and a transaction id: a post retried after a lost answer or a
//!   homeserver restart is not doubled. While the homeserver rate-limits
//!   (`429 M_LIMIT_EXCEEDED`) the transport waits `retry_after_ms`; the
//!   envelopes sent meanwhile wait in the node and share the next post.
//!   The largest post ([`DEFAULT_MAX_MESSAGE_LEN`]) keeps the whole event,
//!   JSON escaping included, under the 65 536 bytes Matrix allows; larger
//!   envelopes are chunked by the node.
//! - **Receiving**: `/sync` long-polls from the saved `next_batch`, with a
//!   filter for this room's `m.room.message` events. When the timeline has
//!   a gap (`limited`: more was posted than one sync returns, such as while
//!   the node was stopped), it is read back from `/messages` to the last
//!   event handed over, at most [`max_backfill`](MatrixChatBuilder::max_backfill)
//!   events (past that the older ones are skipped, logged and counted in
//!   [`Stats::history_gaps`](crate::Stats::history_gaps)). The node's own
//!   posts come back too and are recognised as its own echoes
//!   ([`Stats::own_echoes`](crate::Stats::own_echoes)); after a restart
//!   from the state file, the posts of its earlier run (known by their
//!   transaction ids, which the homeserver shows to the posting device
//!   only) are not handed over: their handlers ran when they were sent.
//! - **Reconnects**: when the homeserver is unreachable or restarts, the
//!   transport retries with a backoff (from
//!   [`reconnect_delay`](MatrixChatBuilder::reconnect_delay), doubling, up
//!   to 30 s) and resumes from its sync position.
//!
//! Tested against a real Synapse (`tests/matrix.rs`).

mod api;
mod client;
mod post;
mod state;
mod sync;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::transport::{BoxFuture, Transport, TransportIo};
use client::{Client, Credentials, Start};

/// The largest event Matrix allows, in bytes of JSON.
pub const MAX_EVENT_BYTES: usize = 65_536;

/// What an event holds besides its body: ids, hashes, signatures, room and
/// user names (each up to 255 bytes), timestamps.
const EVENT_OVERHEAD: usize = 3_072;

/// The default (and largest) post, in bytes: the event around it and the
/// JSON escaping of the frame's control characters (at most 5 more bytes
/// for each of its few `\x02`, `\x03` and `\n`) stay within
/// [`MAX_EVENT_BYTES`].
pub const DEFAULT_MAX_MESSAGE_LEN: usize = MAX_EVENT_BYTES - EVENT_OVERHEAD - 64;

/// What can go wrong with Matrix. It reaches callers inside
/// [`Error::Transport`]; downcast the source to tell the cases apart.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MatrixError {
    /// No Matrix homeserver answered at the address.
    #[error("cannot reach the Matrix homeserver at {homeserver}: {reason}; check the address and that it runs")]
    Unreachable {
        /// The address given.
        homeserver: String,
        /// What failed.
        reason: String,
    },
    /// Logging in failed (wrong user name or password, or login refused).
    #[error("cannot log in to Matrix as {user}: {reason}")]
    Login {
        /// The user name given.
        user: String,
        /// The homeserver's answer.
        reason: String,
    },
    /// The access token is refused and there are no credentials to log in
    /// again with.
    #[error("Matrix refuses the access token: {reason}; give `credentials(user, password)` or a new `access_token`")]
    TokenRefused {
        /// What happened.
        reason: String,
    },
    /// The room does not exist, or this user may not join or post in it.
    #[error("Matrix room {room}: {reason}")]
    Room {
        /// The room id or alias.
        room: String,
        /// What the homeserver said.
        reason: String,
    },
    /// The first sync failed.
    #[error("cannot read the Matrix room: {0}")]
    Sync(String),
    /// The state file cannot be read.
    #[error("cannot read the Matrix state file {path}: {reason}")]
    StateFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The builder's settings do not make a connection.
    #[error("invalid Matrix setting: {0}")]
    Config(String),
}

impl From<MatrixError> for Error {
    fn from(e: MatrixError) -> Error {
        Error::transport(e)
    }
}

/// Timing and limits, from the builder.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) max_message_len: usize,
    pub(crate) request_timeout: Duration,
    pub(crate) sync_wait: Duration,
    pub(crate) timeline_limit: u32,
    pub(crate) backfill_page: u32,
    pub(crate) max_backfill: usize,
    pub(crate) reconnect_delay: Duration,
    pub(crate) max_reconnect_delay: Duration,
    pub(crate) shutdown_tries: u32,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            max_message_len: DEFAULT_MAX_MESSAGE_LEN,
            request_timeout: Duration::from_secs(30),
            sync_wait: Duration::from_secs(30),
            timeline_limit: 50,
            backfill_page: 100,
            max_backfill: 1_000,
            reconnect_delay: Duration::from_millis(500),
            max_reconnect_delay: Duration::from_secs(30),
            shutdown_tries: 5,
        }
    }
}

/// Settings for a [`MatrixChat`]; from [`MatrixChat::builder`]. Nothing
/// happens until [`connect`](Self::connect).
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `.connect().await`"]
pub struct MatrixChatBuilder {
    /// What `connect` hands the client.
    start: Start,
}

impl MatrixChatBuilder {
    /// Logs in with this user (a localpart such as `smokey-henders`, or a
    /// full user id) and password, unless a token is given or saved in the
    /// state file; also used to log in again if the token stops working.
    pub fn credentials(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.start.credentials = Some(Credentials {
            user: user.into(),
            password: password.into(),
        });
        self
    }

    /// Uses this access token (no login). Without
    /// [`credentials`](Self::credentials) the transport stops with an error
    /// when the homeserver stops taking it.
    pub fn access_token(mut self, token: impl Into<String>) -> Self {
        self.start.access_token = Some(token.into());
        self
    }

    /// Keeps the device, its access token and the sync position in this
    /// JSON file (written owner-only, 0600): read at connect if it exists,
    /// so that a restart needs no login and reads what was posted while
    /// the node was away. Keep it as secret as a password.
    pub fn state_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.start.state_file = Some(path.into());
        self
    }

    /// The largest post in bytes (default and most:
    /// [`DEFAULT_MAX_MESSAGE_LEN`]). Larger frames are sent in chunks.
    pub fn max_message_len(mut self, bytes: usize) -> Self {
        self.start.settings.max_message_len = bytes;
        self
    }

    /// Timeout of each HTTP request, besides a sync's long poll (default 30 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.start.settings.request_timeout = timeout;
        self
    }

    /// How long one `/sync` waits for new events (default 30 s).
    pub fn sync_wait(mut self, wait: Duration) -> Self {
        self.start.settings.sync_wait = wait;
        self
    }

    /// Most events one sync returns (default 50); more make a gap, read
    /// back from the room's history.
    pub fn timeline_limit(mut self, events: u32) -> Self {
        self.start.settings.timeline_limit = events.max(1);
        self
    }

    /// Most events read back to fill one gap (default 1 000); older ones
    /// are skipped and counted in [`Stats::history_gaps`](crate::Stats::history_gaps).
    pub fn max_backfill(mut self, events: usize) -> Self {
        self.start.settings.max_backfill = events;
        self
    }

    /// The first wait before trying again after a failure (default 0.5 s);
    /// it doubles with each failure in a row, up to 30 s.
    pub fn reconnect_delay(mut self, delay: Duration) -> Self {
        self.start.settings.reconnect_delay = delay;
        self
    }

    /// Reaches the homeserver, logs in (or checks the token), joins the
    /// room and marks where reading starts; returns the transport, ready
    /// for [`NodeBuilder::transport`](crate::NodeBuilder::transport).
    /// Every message posted in the room from now on reaches the node (and,
    /// with a state file, everything since the last run).
    ///
    /// Fails, saying which, if the homeserver cannot be reached, the login
    /// or token is refused, or the room does not exist or cannot be joined.
    pub async fn connect(self) -> Result<MatrixChat> {
        let Start {
            homeserver,
            settings,
            ..
        } = &self.start;
        if settings.max_message_len < 64 || settings.max_message_len > DEFAULT_MAX_MESSAGE_LEN {
            return Err(MatrixError::Config(format!(
                "max_message_len {} is outside 64..={DEFAULT_MAX_MESSAGE_LEN}",
                settings.max_message_len
            ))
            .into());
        }
        if !(homeserver.starts_with("http://") || homeserver.starts_with("https://")) {
            return Err(MatrixError::Config(format!(
                "the homeserver `{homeserver}` must be an http:// or https:// address"
            ))
            .into());
        }
        let client = Client::connect(self.start).await?;
        sync::start_point(&client).await?;
        Ok(MatrixChat {
            account: client.user_id.to_string(),
            client: Arc::new(client),
        })
    }
}

/// A logged-in connection to one Matrix room: a [`Transport`]. Build it
/// with [`MatrixChat::builder`].
///
/// Its chat account (what [`Node::account`](crate::Node::account) reports
/// and what nodes trust) is the full user id, such as
/// `"@smokey-henders:localhost"`.
pub struct MatrixChat {
    account: String,
    client: Arc<Client>,
}

impl std::fmt::Debug for MatrixChat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MatrixChat")
            .field("homeserver", &self.client.base)
            .field("room", &self.client.room_id)
            .field("user_id", &self.client.user_id)
            .finish_non_exhaustive()
    }
}

impl MatrixChat {
    /// Settings for `room` (an id such as `!abc:example.org` or an alias
    /// such as `#smokey:example.org`) on the homeserver at `homeserver`
    /// (such as `https://matrix.example.org`).
    pub fn builder(homeserver: impl Into<String>, room: impl Into<String>) -> MatrixChatBuilder {
        MatrixChatBuilder {
            start: Start {
                homeserver: homeserver.into(),
                room: room.into(),
                credentials: None,
                access_token: None,
                state_file: None,
                settings: Settings::default(),
            },
        }
    }

    /// The full user id this transport posts as.
    pub fn user_id(&self) -> &str {
        &self.account
    }

    /// The room's id (an alias given to the builder resolved).
    pub fn room_id(&self) -> &str {
        self.client.room_id.as_str()
    }
}

impl Transport for MatrixChat {
    fn account(&self) -> &str {
        &self.account
    }

    /// Instances usually log in as users of their own.
    fn account_per_instance(&self) -> bool {
        true
    }

    fn max_message_len(&self) -> usize {
        self.client.settings.max_message_len
    }

    fn run(self: Box<Self>, io: TransportIo) -> BoxFuture<Result<()>> {
        Box::pin(post::run(self.client, io))
    }
}
