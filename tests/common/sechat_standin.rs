//! A stand-in for Stack Exchange chat, on loopback, for `tests/sechat.rs`
//! (feature `stackexchange`: it is built on axum).
//!
//! It speaks the protocol the open-source clients agree on, as the
//! transport must see it:
//! - login: `GET /users/login` (hidden `fkey`), `POST /users/login` (form:
//!   email, password, fkey) answering 302 with an `acct` cookie;
//!   `GET /chats/join/favorite` with the chat fkey and the top bar's
//!   `/users/<id>` link (a page without fkey while "read-only"). Logged
//!   out, the top bar has "log in" instead; either way the page lists
//!   recently active users elsewhere (`/users/<id>` links outside the top
//!   bar, as the chat's pages do): only the top bar's `.topbar-menu-links
//!   a` tells who is logged in (ChatExchange `Browser._load_user`, sochat4j
//!   `ChatClient.parseUserInfo`);
//! - posting: `POST /chats/<room>/messages/new` (form only: text, fkey),
//!   `{"id": N, "time": T}`; `{"id": null}` for a repeat of the account's
//!   previous text in the room within a short window (ChatExchange
//!   `Client._do_action_despite_throttling`: "Duplicate message?", it
//!   changes the text and tries again); 409 "You can perform this action
//!   again in N seconds" while the account is throttled (ChatExchange's
//!   `TOO_FAST_RE`, sochat4j's `RateLimit409Handler`; the throttle is the
//!   account's, so instances sharing it share it); 404 with the chat's
//!   words when the room does not exist, the account is blocked, or the
//!   room is in timeout (the texts sochat4j's `Room.sendMessage` lists:
//!   "The room does not exist, or you do not have permission", "Your
//!   account is blocked, ending in 5 hours", "The room is in timeout,
//!   ending in 58 seconds");
//! - receiving: `POST /chats/<room>/events` (the last messages and `time`),
//!   `POST /ws-auth` (`{"url": ...}`), a websocket that closes at once
//!   without the right `Origin`, pushes `{"r<room>": {"e": [...], "t": N,
//!   "d": N}}` frames (events of every room go to every socket, as keys),
//!   idle frames without `e`, a "user entered" event on connect;
//! - content: multi-line messages rendered `<div class='full'>a <br> b</div>`
//!   with entities escaped, `<div class='partial'>` (cut) past a length, the
//!   source from `GET /message/<id>?plain=true` (which, like any page of
//!   the site, can answer 503 for a while); a zero-width space inserted
//!   into every long run of characters.
//!
//! Tests steer it: throttle, read-only pages, blocked users, room
//! timeouts, failing source fetches, held, dropped or silent sockets,
//! edits, expired sessions; and read its counters.
//!
//! It is a stand-in built from the public clients' descriptions of the
//! protocol, not the live site.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

// tokio's clock (the system's, unless a test pauses it): a test on a paused
// clock sees the throttle, timeouts and repeat windows in its own time.
use tokio::time::Instant;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_TYPE, COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde_json::{json, Value};
use tokio::sync::{broadcast, watch};

type Fields = HashMap<String, String>;

/// What the stand-in counted.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    /// Login forms posted, and those that logged in.
    pub login_posts: u64,
    pub logins: u64,
    /// `chats/join/favorite` pages served.
    pub favorite_pages: u64,
    /// Pages served without an fkey (read-only).
    pub read_only_pages: u64,
    /// Posts accepted, per user.
    pub posts: HashMap<u64, u64>,
    /// 409 answers, with and without a wait in them.
    pub throttled: u64,
    pub throttled_unknown: u64,
    /// Posts that came before the wait a 409 announced to that login
    /// (session) was over.
    pub early_posts: u64,
    /// Posts dropped as a repeat of the previous text.
    pub duplicates: u64,
    /// Posts refused with 404.
    pub refused: u64,
    /// Requests refused for a missing or wrong fkey or login.
    pub unauthorised: u64,
    /// Websockets opened, and those refused for a missing `Origin`.
    pub sockets: u64,
    pub sockets_without_origin: u64,
    /// `chats/<room>/events` and `ws-auth` calls.
    pub history_calls: u64,
    pub ws_auths: u64,
    /// `/message/<id>?plain=true` answers.
    pub plain_fetches: u64,
    /// `/message/<id>?plain=true` requests answered 503.
    pub plain_failures: u64,
    /// Posts refused with 404 because the room is in timeout.
    pub timeout_refusals: u64,
    /// Posts answered 500 on purpose.
    pub failed_posts: u64,
}

impl Counts {
    pub fn posts_by(&self, user: u64) -> u64 {
        self.posts.get(&user).copied().unwrap_or(0)
    }
}

/// A user the chat's pages list as recently active, outside the top bar.
pub const ACTIVE_USER: u64 = 666;

/// A message in a room.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub id: u64,
    pub room: u64,
    pub user_id: u64,
    pub user_name: String,
    /// The source as stored (with the zero-width spaces the chat inserts).
    pub text: String,
    pub time: i64,
}

struct User {
    id: u64,
    name: String,
    email: String,
    password: String,
}

struct Session {
    user_id: u64,
    chat_fkey: String,
}

#[derive(Default)]
struct Inner {
    users: Vec<User>,
    sessions: HashMap<String, Session>,
    rooms: HashSet<u64>,
    blocked: HashSet<u64>,
    messages: Vec<StoredMessage>,
    next_id: u64,
    next_event: u64,
    time: i64,
    last_text: HashMap<(u64, u64), (String, Instant)>,
    repeat_window: Duration,
    room_timeout_until: HashMap<u64, Instant>,
    sources_fail_until: Option<Instant>,
    failing_posts: u32,
    throttle: Option<Duration>,
    allowed_at: HashMap<u64, Instant>,
    /// When the wait announced to a login (by `acct`) is over.
    promised_at: HashMap<String, Instant>,
    unknown_throttles: u32,
    read_only: u32,
    partial_over: usize,
    tokens: HashMap<String, u64>,
    counts: Counts,
}

struct Shared {
    inner: Mutex<Inner>,
    base: String,
    login_fkey: String,
    frames: broadcast::Sender<String>,
    kill: watch::Sender<u64>,
    freeze: watch::Sender<u64>,
    hold: watch::Sender<bool>,
    idle_every: Duration,
}

/// A running stand-in server; stops when dropped.
pub struct StandIn {
    shared: Arc<Shared>,
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn random_hex(n: usize) -> String {
    (0..n)
        .map(|_| char::from_digit(fastrand_u32() % 16, 16).unwrap())
        .collect()
}

fn fastrand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish() as u32
}

impl StandIn {
    /// Starts a stand-in on 127.0.0.1 (add users and rooms next); its
    /// websockets send an idle frame every 250 ms.
    pub async fn start() -> StandIn {
        StandIn::start_with_idle_frames(Duration::from_millis(250)).await
    }

    /// Starts a stand-in whose websockets send an idle frame (no events)
    /// every `idle_every`.
    pub async fn start_with_idle_frames(idle_every: Duration) -> StandIn {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the stand-in");
        let addr = listener.local_addr().unwrap();
        let (frames, _) = broadcast::channel(4096);
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                next_id: 1000,
                time: 1_700_000_000,
                partial_over: usize::MAX,
                repeat_window: Duration::from_secs(10),
                ..Inner::default()
            }),
            base: format!("http://{addr}"),
            login_fkey: random_hex(32),
            frames,
            kill: watch::channel(0).0,
            freeze: watch::channel(0).0,
            hold: watch::channel(false).0,
            idle_every,
        });
        let app = Router::new()
            .route(
                "/",
                get(|| async { Html("<html><body>home</body></html>") }),
            )
            .route("/users/login", get(login_page).post(login))
            .route("/chats/join/favorite", get(favorite))
            .route("/chats/{room}/events", post(events))
            .route("/chats/{room}/messages/new", post(new_message))
            .route("/ws-auth", post(ws_auth))
            .route("/events/{room}/{token}", get(socket))
            .route("/message/{id}", get(message_source))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("serve the stand-in");
        });
        StandIn { shared, addr, task }
    }

    /// `http://127.0.0.1:PORT`: both the chat and the login host.
    pub fn base(&self) -> String {
        self.shared.base.clone()
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap()
    }

    pub fn add_user(&self, id: u64, name: &str, email: &str, password: &str) {
        self.inner().users.push(User {
            id,
            name: name.into(),
            email: email.into(),
            password: password.into(),
        });
    }

    pub fn add_room(&self, room: u64) {
        self.inner().rooms.insert(room);
    }

    pub fn counts(&self) -> Counts {
        self.inner().counts.clone()
    }

    pub fn messages(&self, room: u64) -> Vec<StoredMessage> {
        self.inner()
            .messages
            .iter()
            .filter(|m| m.room == room)
            .cloned()
            .collect()
    }

    /// After each accepted post, a user must wait this long (409 otherwise).
    pub fn set_throttle(&self, interval: Option<Duration>) {
        self.inner().throttle = interval;
    }

    /// The next `n` posts get a 409 whose body gives no wait.
    pub fn throttle_unknown(&self, n: u32) {
        self.inner().unknown_throttles = n;
    }

    /// Multi-line messages longer than this are rendered cut.
    pub fn set_partial_over(&self, bytes: usize) {
        self.inner().partial_over = bytes;
    }

    /// The next `n` login and chat pages have no fkey (site read-only).
    pub fn read_only(&self, n: u32) {
        self.inner().read_only = n;
    }

    /// A repeat of the account's previous text in a room is refused when it
    /// comes within this long of it (default 10 s).
    pub fn set_repeat_window(&self, window: Duration) {
        self.inner().repeat_window = window;
    }

    /// The room is in timeout for this long: posts are refused with 404.
    pub fn timeout_room(&self, room: u64, duration: Duration) {
        self.inner()
            .room_timeout_until
            .insert(room, Instant::now() + duration);
    }

    /// The next `n` posts answer 500 (a server error).
    pub fn fail_posts(&self, n: u32) {
        self.inner().failing_posts = n;
    }

    /// `/message/<id>?plain=true` answers 503 for this long.
    pub fn fail_sources_for(&self, duration: Duration) {
        self.inner().sources_fail_until = Some(Instant::now() + duration);
    }

    /// The user may no longer post (404 with an explanation).
    pub fn block(&self, user: u64) {
        self.inner().blocked.insert(user);
    }

    /// Forgets every login: cookies and fkeys stop working.
    pub fn expire_sessions(&self) {
        self.inner().sessions.clear();
    }

    /// Posts `text` as `user` without HTTP, as a person in the room would.
    pub fn say(&self, room: u64, user: u64, name: &str, text: &str) -> u64 {
        let (frame, id) = {
            let mut inner = self.inner();
            store(&mut inner, room, user, name, text)
        };
        let _ = self.shared.frames.send(frame);
        id
    }

    /// Edits a message to the same text: an `event_type` 2 event.
    pub fn edit(&self, message_id: u64) {
        let frame = {
            let mut inner = self.inner();
            let partial_over = inner.partial_over;
            let Some(message) = inner.messages.iter().find(|m| m.id == message_id).cloned() else {
                return;
            };
            inner.next_event += 1;
            inner.time += 1;
            let event = event_json(&message, 2, inner.next_event, partial_over);
            room_frame(message.room, vec![event], inner.time)
        };
        let _ = self.shared.frames.send(frame);
    }

    /// Drops every open websocket at once, without a close frame.
    pub fn kill_sockets(&self) {
        self.shared.kill.send_modify(|g| *g += 1);
    }

    /// Every open websocket goes silent (open, but sends nothing more).
    pub fn freeze_sockets(&self) {
        self.shared.freeze.send_modify(|g| *g += 1);
    }

    /// While held, websocket handshakes wait.
    pub fn hold_sockets(&self, held: bool) {
        self.shared.hold.send_replace(held);
    }

    /// How many websockets are open now.
    pub fn open_sockets(&self) -> usize {
        self.shared.frames.receiver_count()
    }
}

/// Stores a message; its frame for the sockets and its id.
fn store(inner: &mut Inner, room: u64, user: u64, name: &str, text: &str) -> (String, u64) {
    inner.next_id += 1;
    inner.next_event += 1;
    inner.time += 1;
    let message = StoredMessage {
        id: inner.next_id,
        room,
        user_id: user,
        user_name: name.into(),
        text: insert_zero_width(text),
        time: inner.time,
    };
    let event = event_json(&message, 1, inner.next_event, inner.partial_over);
    inner.messages.push(message);
    (room_frame(room, vec![event], inner.time), inner.next_id)
}

/// The chat breaks long runs of characters with U+200B.
fn insert_zero_width(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 50);
    let mut run = 0;
    for c in text.chars() {
        if c.is_whitespace() {
            run = 0;
        } else {
            run += 1;
            if run > 100 {
                out.push('\u{200B}');
                run = 1;
            }
        }
        out.push(c);
    }
    out
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Renders a source as event `content`.
fn render(text: &str, partial_over: usize) -> String {
    if !text.contains('\n') {
        return escape(text);
    }
    let (class, shown) = if text.len() > partial_over {
        let mut end = partial_over;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        ("partial", &text[..end])
    } else {
        ("full", text)
    };
    let lines: Vec<String> = shown.split('\n').map(escape).collect();
    format!("<div class='{class}'>{}</div>", lines.join(" <br> "))
}

fn event_json(message: &StoredMessage, event_type: u64, id: u64, partial_over: usize) -> Value {
    json!({
        "event_type": event_type,
        "time_stamp": message.time,
        "content": render(&message.text, partial_over),
        "id": id,
        "user_id": message.user_id,
        "user_name": message.user_name,
        "room_id": message.room,
        "room_name": "Sandbox",
        "message_id": message.id,
    })
}

fn room_frame(room: u64, events: Vec<Value>, time: i64) -> String {
    json!({ format!("r{room}"): { "e": events, "t": time, "d": 1 } }).to_string()
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// The logged-in user of a request: (acct, user id, chat fkey).
fn session(inner: &Inner, headers: &HeaderMap) -> Option<(String, u64, String)> {
    let acct = cookie(headers, "acct")?;
    let session = inner.sessions.get(&acct)?;
    Some((acct, session.user_id, session.chat_fkey.clone()))
}

/// The user of a chat request with the right fkey (counted if none).
fn authorised(inner: &mut Inner, headers: &HeaderMap, fields: &Fields) -> Option<u64> {
    match session(inner, headers) {
        Some((_, user, fkey)) if fields.get("fkey") == Some(&fkey) => Some(user),
        _ => {
            inner.counts.unauthorised += 1;
            None
        }
    }
}

fn forbidden() -> Response {
    (StatusCode::FORBIDDEN, "fkey or login invalid").into_response()
}

fn take_read_only(inner: &mut Inner) -> bool {
    if inner.read_only > 0 {
        inner.read_only -= 1;
        inner.counts.read_only_pages += 1;
        true
    } else {
        false
    }
}

async fn login_page(State(shared): State<Arc<Shared>>) -> Html<String> {
    let mut inner = shared.inner.lock().unwrap();
    if take_read_only(&mut inner) {
        return Html("<html><body><p>This site is in read-only mode.</p></body></html>".into());
    }
    Html(format!(
        r#"<html><body><form id="login-form" action="/users/login" method="POST">
        <input type="hidden" name="fkey" value="{}">
        <input type="email" name="email"><input type="password" name="password">
        </form></body></html>"#,
        shared.login_fkey
    ))
}

async fn login(State(shared): State<Arc<Shared>>, Form(fields): Form<Fields>) -> Response {
    let mut inner = shared.inner.lock().unwrap();
    inner.counts.login_posts += 1;
    let user = inner
        .users
        .iter()
        .find(|u| {
            Some(&u.email) == fields.get("email") && Some(&u.password) == fields.get("password")
        })
        .map(|u| u.id);
    let (Some(user), true) = (user, fields.get("fkey") == Some(&shared.login_fkey)) else {
        return Html("<html><body><p>The email or password is incorrect.</p></body></html>")
            .into_response();
    };
    inner.counts.logins += 1;
    let acct = format!("t={}&s={}", random_hex(16), random_hex(16));
    inner.sessions.insert(
        acct.clone(),
        Session {
            user_id: user,
            chat_fkey: random_hex(32),
        },
    );
    (
        StatusCode::FOUND,
        [
            (LOCATION, "/".to_owned()),
            (
                SET_COOKIE,
                format!("acct={acct}; path=/; max-age=31536000; HttpOnly"),
            ),
        ],
    )
        .into_response()
}

async fn favorite(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Html<String> {
    let mut inner = shared.inner.lock().unwrap();
    inner.counts.favorite_pages += 1;
    if take_read_only(&mut inner) {
        return Html("<html><body><p>Chat is in read-only mode.</p></body></html>".into());
    }
    // The chat's pages list recently active users, outside the top bar.
    let active = format!(
        r#"<div id="sidebar"><h3>recently active</h3><ul>
        <li><a href="/users/{ACTIVE_USER}/a-regular" title="a regular">a regular</a></li>
        </ul></div>"#
    );
    match session(&inner, &headers) {
        Some((_, user, fkey)) => {
            let name = inner
                .users
                .iter()
                .find(|u| u.id == user)
                .map(|u| u.name.clone())
                .unwrap_or_default();
            Html(format!(
                r#"<html><body><div id="topbar"><div class="topbar-menu-links">
                <a href="/users/{user}/{slug}" title="{name}">{name}</a>
                <a href="/rooms">all rooms</a></div></div>
                {active}
                <input id="fkey" name="fkey" type="hidden" value="{fkey}" />
                </body></html>"#,
                slug = name.to_lowercase(),
            ))
        }
        // Logged out: "log in" in the top bar (and an fkey all the same).
        None => Html(format!(
            r#"<html><body><div id="topbar"><div class="topbar-menu-links">
            <a href="/users/login">log in</a></div></div>
            {active}
            <input id="fkey" name="fkey" type="hidden" value="{}" />
            </body></html>"#,
            random_hex(32)
        )),
    }
}

async fn events(
    State(shared): State<Arc<Shared>>,
    Path(room): Path<u64>,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Response {
    let mut inner = shared.inner.lock().unwrap();
    if authorised(&mut inner, &headers, &fields).is_none() {
        return forbidden();
    }
    inner.counts.history_calls += 1;
    if !inner.rooms.contains(&room) {
        return (
            StatusCode::NOT_FOUND,
            "The room does not exist, or you do not have permission",
        )
            .into_response();
    }
    let count: usize = fields
        .get("msgCount")
        .and_then(|c| c.parse().ok())
        .unwrap_or(100);
    let in_room: Vec<&StoredMessage> = inner.messages.iter().filter(|m| m.room == room).collect();
    let events: Vec<Value> = in_room[in_room.len().saturating_sub(count)..]
        .iter()
        .map(|m| event_json(m, 1, m.id, inner.partial_over))
        .collect();
    Json(json!({ "events": events, "time": inner.time, "sync": inner.time, "ms": 0 }))
        .into_response()
}

async fn new_message(
    State(shared): State<Arc<Shared>>,
    Path(room): Path<u64>,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Response {
    let frame;
    let answer;
    {
        let mut inner = shared.inner.lock().unwrap();
        let Some(user) = authorised(&mut inner, &headers, &fields) else {
            return forbidden();
        };
        if !inner.rooms.contains(&room) {
            inner.counts.refused += 1;
            return (
                StatusCode::NOT_FOUND,
                "The room does not exist, or you do not have permission",
            )
                .into_response();
        }
        if inner.blocked.contains(&user) {
            inner.counts.refused += 1;
            return (
                StatusCode::NOT_FOUND,
                "Your account is blocked, ending in 5 hours",
            )
                .into_response();
        }
        if inner.failing_posts > 0 {
            inner.failing_posts -= 1;
            inner.counts.failed_posts += 1;
            return (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response();
        }
        let now = Instant::now();
        // sochat4j `Room.sendMessage`: "The room is in timeout, ending in 58
        // seconds" comes as a 404, like a ban or a missing room.
        if let Some(&until) = inner.room_timeout_until.get(&room) {
            if now < until {
                let seconds = (until - now).as_secs_f64().ceil().max(1.0) as u64;
                inner.counts.timeout_refusals += 1;
                return (
                    StatusCode::NOT_FOUND,
                    format!("The room is in timeout, ending in {seconds} seconds"),
                )
                    .into_response();
            }
        }
        let acct = cookie(&headers, "acct").unwrap_or_default();
        if inner.promised_at.get(&acct).is_some_and(|&t| now < t) {
            inner.counts.early_posts += 1;
        }
        if inner.unknown_throttles > 0 {
            inner.unknown_throttles -= 1;
            inner.counts.throttled_unknown += 1;
            return (StatusCode::CONFLICT, "Slow down!").into_response();
        }
        // The account's throttle (ChatExchange `TOO_FAST_RE`, sochat4j
        // `RateLimit409Handler`): 409 with the seconds left, rounded up.
        if let Some(&allowed) = inner.allowed_at.get(&user) {
            if now < allowed {
                let seconds = (allowed - now).as_secs_f64().ceil().max(1.0) as u64;
                inner
                    .promised_at
                    .insert(acct, now + Duration::from_secs(seconds));
                inner.counts.throttled += 1;
                return (
                    StatusCode::CONFLICT,
                    [(CONTENT_TYPE, "text/plain; charset=utf-8")],
                    format!("You can perform this action again in {seconds} seconds"),
                )
                    .into_response();
            }
        }
        let text = fields.get("text").cloned().unwrap_or_default();
        if text.trim().is_empty() {
            return (StatusCode::BAD_REQUEST, "empty message").into_response();
        }
        // A repeat of the account's previous text: `{"id": null}`
        // (ChatExchange: "Duplicate message?").
        let window = inner.repeat_window;
        if inner
            .last_text
            .get(&(room, user))
            .is_some_and(|(last, at)| *last == text && now.duration_since(*at) < window)
        {
            inner.counts.duplicates += 1;
            return Json(json!({ "id": null, "time": null })).into_response();
        }
        inner.last_text.insert((room, user), (text.clone(), now));
        if let Some(interval) = inner.throttle {
            inner.allowed_at.insert(user, now + interval);
        }
        *inner.counts.posts.entry(user).or_default() += 1;
        let name = inner
            .users
            .iter()
            .find(|u| u.id == user)
            .map(|u| u.name.clone())
            .unwrap_or_default();
        let (f, id) = store(&mut inner, room, user, &name, &text);
        frame = f;
        answer = json!({ "id": id, "time": inner.time });
    }
    let _ = shared.frames.send(frame);
    Json(answer).into_response()
}

async fn ws_auth(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Response {
    let mut inner = shared.inner.lock().unwrap();
    if authorised(&mut inner, &headers, &fields).is_none() {
        return forbidden();
    }
    inner.counts.ws_auths += 1;
    let Some(room) = fields.get("roomid").and_then(|r| r.parse::<u64>().ok()) else {
        return (StatusCode::BAD_REQUEST, "roomid").into_response();
    };
    let token = random_hex(32);
    inner.tokens.insert(token.clone(), room);
    let url = format!(
        "{}/events/{room}/{token}",
        shared.base.replacen("http://", "ws://", 1)
    );
    Json(json!({ "url": url })).into_response()
}

async fn socket(
    State(shared): State<Arc<Shared>>,
    Path((room, token)): Path<(u64, String)>,
    Query(query): Query<Fields>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let mut hold = shared.hold.subscribe();
    let _ = hold.wait_for(|held| !held).await;
    let origin_ok = headers.get(ORIGIN).and_then(|o| o.to_str().ok()) == Some(shared.base.as_str());
    {
        let mut inner = shared.inner.lock().unwrap();
        if inner.tokens.remove(&token) != Some(room) || !query.contains_key("l") {
            return (StatusCode::NOT_FOUND, "no such socket").into_response();
        }
        if origin_ok {
            inner.counts.sockets += 1;
        } else {
            inner.counts.sockets_without_origin += 1;
        }
    }
    upgrade.on_upgrade(move |socket| serve_socket(shared, room, socket, origin_ok))
}

async fn serve_socket(shared: Arc<Shared>, room: u64, mut socket: WebSocket, origin_ok: bool) {
    if !origin_ok {
        // What the real server does without the `Origin` header.
        let _ = socket.send(Message::Close(None)).await;
        return;
    }
    let mut frames = shared.frames.subscribe();
    let mut kill = shared.kill.subscribe();
    let mut freeze = shared.freeze.subscribe();
    let mut frozen = false;
    // Someone entered the room: an event the transport must ignore.
    {
        let mut inner = shared.inner.lock().unwrap();
        inner.next_event += 1;
        let event = json!({ "event_type": 3, "time_stamp": inner.time, "id": inner.next_event,
            "user_id": 1, "user_name": "someone", "room_id": room, "room_name": "Sandbox" });
        let _ = shared
            .frames
            .send(room_frame(room, vec![event], inner.time));
    }
    let mut idle = tokio::time::interval(shared.idle_every);
    loop {
        tokio::select! {
            _ = kill.changed() => return, // dropped: no close frame
            _ = freeze.changed() => frozen = true,
            frame = frames.recv() => match frame {
                Ok(frame) if !frozen => {
                    if socket.send(Message::Text(frame.into())).await.is_err() {
                        return;
                    }
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = idle.tick() => if !frozen {
                let time = shared.inner.lock().unwrap().time;
                let frame = json!({ format!("r{room}"): { "t": time, "d": 0 } }).to_string();
                if socket.send(Message::Text(frame.into())).await.is_err() {
                    return;
                }
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

async fn message_source(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<u64>,
    Query(query): Query<Fields>,
) -> Response {
    let mut inner = shared.inner.lock().unwrap();
    let Some(message) = inner.messages.iter().find(|m| m.id == id).cloned() else {
        return (StatusCode::NOT_FOUND, "no such message").into_response();
    };
    if query.get("plain").map(String::as_str) == Some("true") {
        if inner
            .sources_fail_until
            .is_some_and(|until| Instant::now() < until)
        {
            inner.counts.plain_failures += 1;
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Html("<html><body><h1>Service Unavailable</h1></body></html>"),
            )
                .into_response();
        }
        inner.counts.plain_fetches += 1;
        ([(CONTENT_TYPE, "text/plain; charset=utf-8")], message.text).into_response()
    } else {
        Html(render(&message.text, usize::MAX)).into_response()
    }
}
