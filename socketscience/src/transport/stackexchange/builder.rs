//! [`StackExchangeChatBuilder`]: the settings of a
//! [`StackExchangeChat`], and connecting it (the chat host's addresses,
//! TLS, the login).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::client::{Client, Credentials, Endpoints};
use super::{StackExchangeChat, StackExchangeError, DEFAULT_MAX_MESSAGE_LEN};
use crate::error::Result;

/// Timing and limits, from the builder.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) max_message_len: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) reconnect_delay: Duration,
    pub(crate) unavailable_wait: Duration,
    pub(crate) unavailable_tries: u32,
    pub(crate) unknown_throttle_wait: Duration,
    pub(crate) max_post_tries: u32,
    pub(crate) request_timeout: Duration,
    pub(crate) source_retry_limit: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            max_message_len: DEFAULT_MAX_MESSAGE_LEN,
            idle_timeout: Duration::from_secs(30),
            reconnect_delay: Duration::from_secs(1),
            unavailable_wait: Duration::from_secs(15),
            unavailable_tries: 40,
            unknown_throttle_wait: Duration::from_secs(5),
            max_post_tries: 5,
            request_timeout: Duration::from_secs(30),
            source_retry_limit: Duration::from_secs(60),
        }
    }
}

/// Settings for a [`StackExchangeChat`]; from
/// [`StackExchangeChat::builder`]. Nothing happens until
/// [`connect`](Self::connect).
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `.connect().await`"]
pub struct StackExchangeChatBuilder {
    host: String,
    room: u64,
    credentials: Option<Credentials>,
    cookie_file: Option<PathBuf>,
    base_urls: Option<Endpoints>,
    settings: Settings,
}

impl StackExchangeChatBuilder {
    /// Default settings for room `room` on `host`.
    pub(super) fn new(host: String, room: u64) -> StackExchangeChatBuilder {
        StackExchangeChatBuilder {
            host,
            room,
            credentials: None,
            cookie_file: None,
            base_urls: None,
            settings: Settings::default(),
        }
    }

    /// Logs in with this email and password (a Stack Exchange login; the
    /// site's own, not an OpenID or social one).
    pub fn credentials(mut self, email: impl Into<String>, password: impl Into<String>) -> Self {
        self.credentials = Some(Credentials {
            email: email.into(),
            password: password.into(),
        });
        self
    }

    /// Keeps the login cookies in this JSON file: read at connect if it
    /// exists, written (owner-only) after each login with credentials. With
    /// a valid file no password is needed; keep it as secret as one.
    pub fn cookie_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.cookie_file = Some(path.into());
        self
    }

    /// The largest post in bytes (default [`DEFAULT_MAX_MESSAGE_LEN`]).
    /// Larger frames are sent in chunks.
    pub fn max_message_len(mut self, bytes: usize) -> Self {
        self.settings.max_message_len = bytes;
        self
    }

    /// Reconnect when the websocket sends nothing for this long (default
    /// 30 s; the chat sends frames regularly even in a quiet room). Also
    /// the limit for opening a websocket.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.settings.idle_timeout = timeout;
        self
    }

    /// The first wait before reconnecting after a failure (default 1 s);
    /// it doubles with each failure in a row, up to 30 s.
    pub fn reconnect_delay(mut self, delay: Duration) -> Self {
        self.settings.reconnect_delay = delay;
        self
    }

    /// While the site is down or read-only (its pages have no fkey), read
    /// the page again after `wait`, at most `tries` times in all (default
    /// 15 s, 40 tries).
    pub fn unavailable_retry(mut self, wait: Duration, tries: u32) -> Self {
        self.settings.unavailable_wait = wait;
        self.settings.unavailable_tries = tries;
        self
    }

    /// How long to wait after a throttle answer (HTTP 409) that does not
    /// say how long (default 5 s). Throttle answers never drop a post: the
    /// transport waits as long as the chat asks.
    pub fn throttle_wait(mut self, wait: Duration) -> Self {
        self.settings.unknown_throttle_wait = wait;
        self
    }

    /// How many real failures (network errors, server errors, a session
    /// that had to be renewed) one post may meet before it is given up:
    /// logged with how many envelopes it held and counted in
    /// [`Stats::posts_given_up`](crate::Stats::posts_given_up) (default 5).
    /// Throttle answers, room timeouts and refused repeats are not
    /// failures and never count.
    pub fn max_post_tries(mut self, tries: u32) -> Self {
        self.settings.max_post_tries = tries;
        self
    }

    /// How long to keep trying to read the full source of a cut message
    /// (`/message/<id>?plain=true`) while the chat fails to answer, with
    /// backoff (default 60 s). A message whose source is still unreadable
    /// after that is logged and counted in
    /// [`Stats::sources_lost`](crate::Stats::sources_lost).
    pub fn source_retry_limit(mut self, limit: Duration) -> Self {
        self.settings.source_retry_limit = limit;
        self
    }

    /// Timeout of each HTTP request (default 30 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.settings.request_timeout = timeout;
        self
    }

    /// Talks to these addresses instead of the real chat and login hosts,
    /// such as `http://127.0.0.1:8080` for a stand-in server in tests. The
    /// chat address is also the websocket's `Origin`.
    pub fn base_urls(mut self, chat: impl Into<String>, login: impl Into<String>) -> Self {
        self.base_urls = Some(Endpoints {
            chat: chat.into().trim_end_matches('/').to_owned(),
            login: login.into().trim_end_matches('/').to_owned(),
        });
        self
    }

    /// Logs in, reads the user id and the room's state, and returns the
    /// transport, ready for [`NodeBuilder::transport`](crate::NodeBuilder::transport).
    /// Every message posted in the room from now on reaches the node.
    ///
    /// Fails if the login fails, the site stays down, or the room refuses
    /// this account.
    pub async fn connect(self) -> Result<StackExchangeChat> {
        let StackExchangeChatBuilder {
            host,
            room,
            credentials,
            cookie_file,
            base_urls,
            settings,
        } = self;
        if credentials.is_none() && cookie_file.is_none() {
            return Err(StackExchangeError::Config(
                "give `credentials(email, password)` or a `cookie_file(path)` (or both)".into(),
            )
            .into());
        }
        if settings.max_message_len < 64 {
            return Err(StackExchangeError::Config(format!(
                "max_message_len {} is too small to carry a chunk",
                settings.max_message_len
            ))
            .into());
        }
        let endpoints = match base_urls {
            Some(endpoints) => endpoints,
            None => endpoints_for(&host)?,
        };
        let tls = tls_config()?;
        let client =
            Arc::new(Client::connect(endpoints, room, credentials, cookie_file, settings).await?);
        let start = client.history().await?;
        Ok(StackExchangeChat {
            account: client.user_id.to_string(),
            client,
            tls,
            start,
        })
    }
}

/// The chat and login addresses of a chat host.
fn endpoints_for(host: &str) -> Result<Endpoints> {
    let site = host
        .trim()
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .trim_start_matches("chat.");
    if site.is_empty() || site.contains(['/', ' ', ':']) {
        return Err(StackExchangeError::Config(format!(
            "`{host}` is not a chat host: use stackexchange.com, stackoverflow.com or \
             meta.stackexchange.com"
        ))
        .into());
    }
    // chat.stackexchange.com has no login of its own: its accounts log in
    // on Meta Stack Exchange.
    let login = if site == "stackexchange.com" {
        "meta.stackexchange.com"
    } else {
        site
    };
    Ok(Endpoints {
        chat: format!("https://chat.{site}"),
        login: format!("https://{login}"),
    })
}

/// TLS for the websocket: rustls with ring and the webpki roots.
fn tls_config() -> Result<Arc<rustls::ClientConfig>> {
    let roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| StackExchangeError::Config(format!("TLS: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_map_to_chat_and_login_addresses() {
        let e = endpoints_for("stackexchange.com").unwrap();
        assert_eq!(e.chat, "https://chat.stackexchange.com");
        assert_eq!(e.login, "https://meta.stackexchange.com");
        let e = endpoints_for("chat.stackoverflow.com").unwrap();
        assert_eq!(e.chat, "https://chat.stackoverflow.com");
        assert_eq!(e.login, "https://stackoverflow.com");
        let e = endpoints_for("https://chat.meta.stackexchange.com/").unwrap();
        assert_eq!(e.chat, "https://chat.meta.stackexchange.com");
        assert_eq!(e.login, "https://meta.stackexchange.com");
        assert!(endpoints_for("").is_err());
        assert!(endpoints_for("http://x:1/").is_err());
    }
}
