//! The HTTP side of Stack Exchange chat: login, fkey, posting, history,
//! websocket authorisation, message sources, saved cookies.

use std::fs;
use std::io::{BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use reqwest::header::{HeaderValue, CONTENT_TYPE};
use reqwest::{StatusCode, Url};
use reqwest_cookie_store::{CookieStore, CookieStoreMutex};
use serde_json::Value;
use tracing::{debug, info, warn};

use crate::sync::lock;

use super::builder::Settings;
use super::html;
use super::StackExchangeError;

/// What a login needs.
#[derive(Clone)]
pub(crate) struct Credentials {
    pub(crate) email: String,
    pub(crate) password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

/// Where the chat and its login live.
#[derive(Debug, Clone)]
pub(crate) struct Endpoints {
    /// `https://chat.stackexchange.com`, without a trailing slash. Also the
    /// websocket's `Origin`.
    pub(crate) chat: String,
    /// `https://meta.stackexchange.com`, without a trailing slash.
    pub(crate) login: String,
}

/// One chat event, as `chats/<room>/events` and the websocket carry them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    pub(crate) event_type: u64,
    pub(crate) room_id: Option<u64>,
    pub(crate) user_id: Option<i64>,
    pub(crate) message_id: Option<u64>,
    pub(crate) content: Option<String>,
}

impl Event {
    /// Reads one event, whatever else it carries; `None` if it is not an
    /// object with an `event_type`.
    pub(crate) fn from_json(value: &Value) -> Option<Event> {
        let object = value.as_object()?;
        Some(Event {
            event_type: object.get("event_type")?.as_u64()?,
            room_id: object.get("room_id").and_then(Value::as_u64),
            user_id: object.get("user_id").and_then(Value::as_i64),
            message_id: object.get("message_id").and_then(Value::as_u64),
            content: object
                .get("content")
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }
}

/// The room's recent history and its event time.
#[derive(Debug)]
pub(crate) struct History {
    pub(crate) time: i64,
    pub(crate) events: Vec<Event>,
}

/// The answer to one post.
#[derive(Debug)]
pub(crate) enum PostAnswer {
    /// Posted, with its message id.
    Posted(u64),
    /// `{"id": null}`: the same text as the previous message.
    Duplicate,
    /// HTTP 409: wait this long (when the answer said), then retry.
    Throttled(Option<Duration>),
    /// HTTP 404: the chat explains why this account cannot post here.
    Refused(String),
    /// The fkey or the login is no longer good.
    SessionLost(String),
    /// Anything else (network, server error): worth another try.
    Failed(String),
}

/// The logged-in chat session.
pub(crate) struct Client {
    http: reqwest::Client,
    cookies: Arc<CookieStoreMutex>,
    pub(crate) endpoints: Endpoints,
    pub(crate) room: u64,
    credentials: Option<Credentials>,
    cookie_file: Option<PathBuf>,
    pub(crate) settings: Settings,
    fkey: Mutex<String>,
    pub(crate) user_id: u64,
    pub(crate) user_name: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("chat", &self.endpoints.chat)
            .field("room", &self.room)
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

type Result<T, E = StackExchangeError> = std::result::Result<T, E>;

impl Client {
    /// Logs in (with saved cookies or credentials) and reads the chat fkey
    /// and user.
    pub(crate) async fn connect(
        endpoints: Endpoints,
        room: u64,
        credentials: Option<Credentials>,
        cookie_file: Option<PathBuf>,
        settings: Settings,
    ) -> Result<Client> {
        let store = match &cookie_file {
            Some(path) if path.exists() => load_cookies(path)?,
            _ => CookieStore::default(),
        };
        let cookies = Arc::new(CookieStoreMutex::new(store));
        let http = reqwest::Client::builder()
            .cookie_provider(cookies.clone())
            .user_agent(concat!(
                "socketscience/",
                env!("CARGO_PKG_VERSION"),
                " (Stack Exchange chat transport)"
            ))
            .timeout(settings.request_timeout)
            .build()
            .map_err(http_error)?;
        let mut client = Client {
            http,
            cookies,
            endpoints,
            room,
            credentials,
            cookie_file,
            settings,
            fkey: Mutex::new(String::new()),
            user_id: 0,
            user_name: String::new(),
        };
        let (fkey, user_id, user_name) = client.establish().await?;
        info!(chat = %client.endpoints.chat, user_id, user_name = %user_name, "logged in to Stack Exchange chat");
        *lock(&client.fkey) = fkey;
        client.user_id = user_id;
        client.user_name = user_name;
        Ok(client)
    }

    /// Reads the chat fkey and user from `chats/join/favorite`, logging in
    /// when the page shows nobody is; waits while the site is down.
    async fn establish(&self) -> Result<(String, u64, String)> {
        let url = format!("{}/chats/join/favorite", self.endpoints.chat);
        let mut logged_in_now = false;
        let tries = self.settings.unavailable_tries.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let page = match self.get_text(&url).await {
                Ok(page) => Some(page),
                Err(e) => {
                    warn!(url = %url, error = %e, "cannot reach the chat");
                    None
                }
            };
            match page
                .as_deref()
                .map(|p| (html::fkey(p), html::current_user(p)))
            {
                Some((Some(fkey), Some((user_id, user_name)))) => {
                    return Ok((fkey, user_id, user_name))
                }
                Some((Some(_), None)) => {
                    if logged_in_now {
                        return Err(StackExchangeError::Login(
                            "the chat does not show the account as logged in after a \
                             successful login"
                                .into(),
                        ));
                    }
                    if self.credentials.is_none() {
                        return Err(StackExchangeError::Login(match &self.cookie_file {
                            Some(path) => format!(
                                "the saved cookies in {} do not log in (any more); \
                                 give an email and password",
                                path.display()
                            ),
                            None => "no credentials given".into(),
                        }));
                    }
                    self.site_login().await?;
                    logged_in_now = true;
                    continue;
                }
                _ => {}
            }
            // No fkey: the site is down or read-only.
            if attempt >= tries {
                return Err(StackExchangeError::Unavailable { tries });
            }
            warn!(
                url = %url,
                wait = ?self.settings.unavailable_wait,
                "the chat page has no fkey: the site is down or read-only; waiting"
            );
            tokio::time::sleep(self.settings.unavailable_wait).await;
        }
    }

    /// Logs in on the login host: read its fkey, post email, password and
    /// fkey, expect an `acct` cookie.
    async fn site_login(&self) -> Result<()> {
        let Some(credentials) = &self.credentials else {
            return Err(StackExchangeError::Login("no credentials given".into()));
        };
        let url = format!("{}/users/login", self.endpoints.login);
        let tries = self.settings.unavailable_tries.max(1);
        let mut attempt = 0;
        let fkey = loop {
            attempt += 1;
            match self.get_text(&url).await.map(|page| html::fkey(&page)) {
                Ok(Some(fkey)) => break fkey,
                Ok(None) => {
                    warn!(url = %url, "the login page has no fkey: the site is down or read-only")
                }
                Err(e) => warn!(url = %url, error = %e, "cannot reach the login page"),
            }
            if attempt >= tries {
                return Err(StackExchangeError::Unavailable { tries });
            }
            tokio::time::sleep(self.settings.unavailable_wait).await;
        };
        let response = self
            .http
            .post(&url)
            .form(&[
                ("email", credentials.email.as_str()),
                ("password", credentials.password.as_str()),
                ("fkey", fkey.as_str()),
            ])
            .send()
            .await
            .map_err(http_error)?;
        let status = response.status();
        debug!(url = %url, %status, "posted the login form");
        if !self.has_acct_cookie() {
            return Err(StackExchangeError::Login(format!(
                "{} gave no `acct` cookie (HTTP {status}): check the email and password",
                self.endpoints.login
            )));
        }
        self.save_cookies();
        Ok(())
    }

    fn has_acct_cookie(&self) -> bool {
        let store = self.cookies.lock().unwrap_or_else(PoisonError::into_inner);
        [&self.endpoints.login, &self.endpoints.chat]
            .iter()
            .filter_map(|base| Url::parse(&format!("{base}/")).ok())
            .any(|url| store.matches(&url).iter().any(|c| c.name() == "acct"))
    }

    /// Writes the cookies to the cookie file, if there is one (mode 0600).
    fn save_cookies(&self) {
        let Some(path) = &self.cookie_file else {
            return;
        };
        let mut json = Vec::new();
        {
            let store = self.cookies.lock().unwrap_or_else(PoisonError::into_inner);
            if let Err(e) =
                cookie_store::serde::json::save_incl_expired_and_nonpersistent(&store, &mut json)
            {
                warn!(path = %path.display(), error = %e, "cannot serialise the cookies");
                return;
            }
        }
        if let Err(e) = write_private(path, &json) {
            warn!(path = %path.display(), error = %e, "cannot save the cookies");
        } else {
            debug!(path = %path.display(), "saved the cookies");
        }
    }

    /// Reads the fkey again (logging in again if needed), after a post was
    /// refused for it.
    pub(crate) async fn refresh(&self) -> Result<()> {
        let (fkey, user_id, _) = self.establish().await?;
        if user_id != self.user_id {
            return Err(StackExchangeError::Login(format!(
                "the chat now shows user {user_id} logged in instead of {}",
                self.user_id
            )));
        }
        *lock(&self.fkey) = fkey;
        Ok(())
    }

    fn fkey(&self) -> String {
        lock(&self.fkey).clone()
    }

    async fn get_text(&self, url: &str) -> Result<String> {
        let response = self.http.get(url).send().await.map_err(http_error)?;
        let status = response.status();
        let text = response.text().await.map_err(http_error)?;
        if !status.is_success() {
            return Err(StackExchangeError::Status {
                url: url.to_owned(),
                status: status.as_u16(),
                text: html::error_text(&text),
            });
        }
        Ok(text)
    }

    /// POSTs a form with the fkey to a chat path; the answer's status and
    /// body.
    async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Result<(StatusCode, String)> {
        let url = format!("{}/{path}", self.endpoints.chat);
        let fkey = self.fkey();
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        form.push(("fkey", &fkey));
        let response = self
            .http
            .post(&url)
            // `.form` sets it too; the chat refuses posts without it.
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            )
            .form(&form)
            .send()
            .await
            .map_err(http_error)?;
        let status = response.status();
        let body = response.text().await.map_err(http_error)?;
        Ok((status, body))
    }

    /// One try at posting `text` into the room.
    pub(crate) async fn post_message(&self, text: &str) -> PostAnswer {
        let path = format!("chats/{}/messages/new", self.room);
        let (status, body) = match self.post_form(&path, &[("text", text)]).await {
            Ok(answer) => answer,
            Err(e) => return PostAnswer::Failed(e.to_string()),
        };
        match status {
            StatusCode::OK => match serde_json::from_str::<Value>(&body) {
                Ok(Value::Object(answer)) => match answer.get("id") {
                    Some(Value::Null) | None => PostAnswer::Duplicate,
                    Some(id) => match id.as_u64() {
                        Some(id) => PostAnswer::Posted(id),
                        None => PostAnswer::Failed(format!("unexpected message id {id}")),
                    },
                },
                // An HTML page instead of JSON: logged out.
                _ => PostAnswer::SessionLost(html::error_text(&body)),
            },
            StatusCode::CONFLICT => {
                PostAnswer::Throttled(html::throttle_seconds(&body).map(Duration::from_secs))
            }
            StatusCode::NOT_FOUND => PostAnswer::Refused(html::error_text(&body)),
            StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                PostAnswer::SessionLost(format!("HTTP {status}: {}", html::error_text(&body)))
            }
            _ => PostAnswer::Failed(format!("HTTP {status}: {}", html::error_text(&body))),
        }
    }

    /// The room's last 100 messages and its event time.
    pub(crate) async fn history(&self) -> Result<History> {
        let path = format!("chats/{}/events", self.room);
        let fields = [("since", "0"), ("mode", "Messages"), ("msgCount", "100")];
        let (status, body) = self.post_form(&path, &fields).await?;
        let answer = self.json(&path, status, &body)?;
        let time = answer.get("time").and_then(Value::as_i64).unwrap_or(0);
        let events = answer
            .get("events")
            .and_then(Value::as_array)
            .map(|events| events.iter().filter_map(Event::from_json).collect())
            .unwrap_or_default();
        Ok(History { time, events })
    }

    /// The websocket address for the room (without the `?l=` part).
    pub(crate) async fn ws_auth(&self) -> Result<String> {
        let room = self.room.to_string();
        let (status, body) = self.post_form("ws-auth", &[("roomid", &room)]).await?;
        let answer = self.json("ws-auth", status, &body)?;
        answer
            .get("url")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| {
                StackExchangeError::Protocol(format!("ws-auth gave no url: {body:.200}"))
            })
    }

    /// The source of a message, for content the chat cut
    /// (`GET /message/<id>?plain=true`).
    pub(crate) async fn plain_source(&self, message_id: u64) -> Result<String> {
        self.get_text(&format!(
            "{}/message/{message_id}?plain=true",
            self.endpoints.chat
        ))
        .await
    }

    fn json(&self, path: &str, status: StatusCode, body: &str) -> Result<Value> {
        if status == StatusCode::NOT_FOUND {
            return Err(StackExchangeError::Refused {
                room: self.room,
                text: html::error_text(body),
            });
        }
        if !status.is_success() {
            return Err(StackExchangeError::Status {
                url: format!("{}/{path}", self.endpoints.chat),
                status: status.as_u16(),
                text: html::error_text(body),
            });
        }
        serde_json::from_str(body).map_err(|_| {
            StackExchangeError::Protocol(format!(
                "{path} did not answer JSON: {}",
                html::error_text(body)
            ))
        })
    }
}

fn http_error(e: reqwest::Error) -> StackExchangeError {
    StackExchangeError::Http(Box::new(e))
}

fn load_cookies(path: &Path) -> Result<CookieStore> {
    let file = fs::File::open(path).map_err(|e| StackExchangeError::CookieFile {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    cookie_store::serde::json::load_all(BufReader::new(file)).map_err(|e| {
        StackExchangeError::CookieFile {
            path: path.to_owned(),
            reason: e.to_string(),
        }
    })
}

/// Writes `data` to `path` through a temporary file, readable by the owner
/// only: the cookies log in as the account.
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    file.write_all(data)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)
}
