//! `socketscience watch`: the fleet as the room shows it. A read-only node
//! (`NodeBuilder::read_only`: it posts nothing, never counts as a peer,
//! never votes) joins the room with the fleet's settings; the node frames,
//! trusts, checks and orders what it reads, as every node does, and tells
//! this module of each envelope it accepts (`NodeBuilder::observe`). This
//! module only counts and draws.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use socketscience::handlers::Observed;
use socketscience::peers::Peer;
use socketscience::wire::Value;
use socketscience::{IrcChat, Node, NodeBuilder, Role, Stats};

/// The environment variable with the Matrix password of `--user`.
#[cfg(feature = "matrix")]
pub const MATRIX_PASSWORD_VAR: &str = "SOCKETSCIENCE_MATRIX_PASSWORD";
/// The environment variable with a Matrix access token.
#[cfg(feature = "matrix")]
pub const MATRIX_TOKEN_VAR: &str = "SOCKETSCIENCE_MATRIX_TOKEN";
/// The environment variable with the Stack Exchange password of `--email`.
#[cfg(feature = "stackexchange")]
pub const STACKEXCHANGE_PASSWORD_VAR: &str = "SOCKETSCIENCE_STACKEXCHANGE_PASSWORD";

/// The options of `watch`.
#[derive(Debug, clap::Args)]
#[command(group(
    clap::ArgGroup::new("chat")
        .args(["irc", "matrix", "stackexchange"])
        .required(true)
        .multiple(false)
))]
pub struct WatchArgs {
    /// The IRC server, HOST:PORT.
    #[arg(
        long,
        value_name = "HOST:PORT",
        requires = "channel",
        help_heading = "IRC"
    )]
    irc: Option<String>,
    /// The fleet's channel.
    #[arg(long, value_name = "#NAME", conflicts_with_all = ["matrix", "stackexchange"], help_heading = "IRC")]
    channel: Option<String>,
    /// The nick to read the channel as (not one of the fleet's).
    #[arg(
        long,
        default_value = "socketscience-watch",
        conflicts_with_all = ["matrix", "stackexchange"],
        help_heading = "IRC"
    )]
    nick: String,
    /// Connect with TLS (verified against the usual roots).
    #[arg(long, conflicts_with_all = ["matrix", "stackexchange"], help_heading = "IRC")]
    tls: bool,
    /// Also trust the CAs in this PEM file (implies --tls).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["matrix", "stackexchange"], help_heading = "IRC")]
    tls_ca: Option<PathBuf>,
    /// The Matrix homeserver's address, such as https://matrix.example.org.
    /// Log in with --user and the password in SOCKETSCIENCE_MATRIX_PASSWORD,
    /// or with an access token in SOCKETSCIENCE_MATRIX_TOKEN.
    #[arg(long, value_name = "URL", requires = "room", help_heading = "Matrix")]
    matrix: Option<String>,
    /// The Matrix user to log in as (`smokey-watch` or
    /// `@smokey-watch:example.org`; best not one of the fleet's); its
    /// password is read from SOCKETSCIENCE_MATRIX_PASSWORD, never from the
    /// command line.
    #[arg(long, value_name = "USER", conflicts_with_all = ["irc", "stackexchange"], help_heading = "Matrix")]
    user: Option<String>,
    /// The Stack Exchange chat host: stackexchange.com, stackoverflow.com
    /// or meta.stackexchange.com (or the http:// address of a server
    /// speaking the chat's protocol, also its login host, such as a test
    /// stand-in). Log in with --email and the password in
    /// SOCKETSCIENCE_STACKEXCHANGE_PASSWORD, or with --cookie-file.
    #[arg(
        long,
        value_name = "HOST",
        requires = "room",
        help_heading = "Stack Exchange chat"
    )]
    stackexchange: Option<String>,
    /// The Stack Exchange login (email) to read the room as; its password
    /// is read from SOCKETSCIENCE_STACKEXCHANGE_PASSWORD, never from the
    /// command line.
    #[arg(
        long,
        value_name = "EMAIL",
        conflicts_with_all = ["irc", "matrix"],
        help_heading = "Stack Exchange chat"
    )]
    email: Option<String>,
    /// Stack Exchange login cookies, kept in this file (read if it exists,
    /// written after a login with --email): with a valid file no password
    /// is needed. Keep it as secret as one.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with_all = ["irc", "matrix"],
        help_heading = "Stack Exchange chat"
    )]
    cookie_file: Option<PathBuf>,
    /// The fleet's room: with --matrix its id or alias (`!abc:example.org`,
    /// `#smokey:example.org`), with --stackexchange its number (the N of
    /// chat.stackexchange.com/rooms/N).
    #[arg(long, value_name = "ROOM", conflicts_with = "irc")]
    room: Option<String>,
    /// The chat accounts of the fleet, `*` globs; repeatable. The account
    /// is what each chat says posted: on IRC the nick (`smokey-*`), on
    /// Matrix the full user id (`@smokey-*:example.org`), on Stack Exchange
    /// the numeric user id (`120914`; user names are not accounts). What is
    /// posted from other accounts is refused and counted.
    #[arg(long = "trust", value_name = "PATTERN", required = true)]
    trust: Vec<String>,
    /// The fleet's heartbeat interval, in milliseconds: an instance not
    /// heard for three is shown gone.
    #[arg(long, value_name = "MS", default_value_t = 30_000)]
    heartbeat: u64,
    /// Show an instance gone after this many milliseconds unheard
    /// [default: three heartbeats].
    #[arg(long, value_name = "MS")]
    peer_timeout: Option<u64>,
    /// Print each envelope decoded, as JSON.
    #[arg(long)]
    frames: bool,
    /// Print one line per change instead of redrawing the screen.
    #[arg(long)]
    plain: bool,
}

pub const WATCH_ABOUT: &str = "\
Watch a fleet from its room on IRC (--irc), Matrix (--matrix) or Stack Exchange chat \
(--stackexchange): every instance heard (account, session, role and election term, when \
last heard), envelopes per kind and chat posts in the last minute, and per sender the envelopes \
missed, repaired and lost. It joins the room read-only: it posts nothing (no heartbeat, no repair \
request, no vote), so it never counts as a peer or takes part in an election. It reads as a node \
does: envelopes from accounts not matched by --trust, and, with a secret in SOCKETSCIENCE_SECRET, \
unsigned or badly signed ones, are refused and counted (REFUSED).

The screen is redrawn every second; with --plain, one line is printed per change instead \
(JOINED, ROLE, LEFT, LOST, REFUSED), for logs and scripts. With --frames, each envelope is printed \
as JSON ({\"from\", \"account\", \"seq\", \"messages\": {kind: value}}).

It reads the room through an account of its own, best not one of the fleet's: on IRC the --nick \
it joins as; on Matrix a user (--user, with its password in SOCKETSCIENCE_MATRIX_PASSWORD) or an \
access token (SOCKETSCIENCE_MATRIX_TOKEN); on Stack Exchange chat a login (--email, with its \
password in SOCKETSCIENCE_STACKEXCHANGE_PASSWORD) or saved cookies (--cookie-file). Passwords are \
never taken on the command line. --trust names the fleet's accounts as each chat reports them: \
IRC nicks, Matrix full user ids (@smokey-*:example.org), Stack Exchange numeric user ids.

Stop it with Ctrl-C.";

pub const WATCH_EXAMPLES: &str = "\
Examples:
  socketscience watch --irc irc.libera.chat:6697 --tls --channel '#smokey' --trust 'smokey-*'
  SOCKETSCIENCE_SECRET=... socketscience watch --irc 127.0.0.1:6667 --channel '#smokey' \\
      --trust 'smokey-*' --heartbeat 1000 --plain --frames
  SOCKETSCIENCE_MATRIX_PASSWORD=... socketscience watch --matrix https://matrix.example.org \\
      --room '#smokey:example.org' --user smokey-watch --trust '@smokey-*:example.org'
  SOCKETSCIENCE_STACKEXCHANGE_PASSWORD=... socketscience watch --stackexchange stackexchange.com \\
      --room 11540 --email watch@example.com --trust 120914";

/// How many decoded envelopes the screen keeps.
const FRAMES_SHOWN: usize = 8;
const MINUTE: Duration = Duration::from_secs(60);
/// Senders listed at most (their names come from the room, as the node's
/// own tables): past it the least recently heard goes.
const MAX_SENDERS: usize = 4_096;
/// How long a sender not heard stays listed.
const SENDER_KEPT: Duration = Duration::from_secs(3_600);

/// What one sender's envelopes showed.
#[derive(Debug)]
struct SenderLine {
    /// One past the last sequence number delivered.
    next: Option<u64>,
    envelopes: u64,
    repaired: u64,
    lost: u64,
    /// When it was last heard.
    last: Instant,
}

/// What the observer saw.
#[derive(Debug, Default)]
struct Board {
    /// When each kind's envelopes arrived, within the last minute.
    kinds: BTreeMap<String, VecDeque<Instant>>,
    senders: BTreeMap<String, SenderLine>,
    /// Decoded envelopes not yet shown or printed.
    frames: VecDeque<String>,
}

impl Board {
    fn observed(&mut self, e: &Observed<'_>, frames: bool) {
        let sender = e.sender();
        let who = sender.instance().unwrap_or(sender.account()).to_owned();
        let now = Instant::now();
        if !self.senders.contains_key(&who) && self.senders.len() >= MAX_SENDERS {
            let oldest = self.senders.iter().min_by_key(|(_, l)| l.last);
            if let Some(oldest) = oldest.map(|(w, _)| w.clone()) {
                self.senders.remove(&oldest);
            }
        }
        let line = self.senders.entry(who.clone()).or_insert(SenderLine {
            next: None,
            envelopes: 0,
            repaired: 0,
            lost: 0,
            last: now,
        });
        line.last = now;
        let count = e.count();
        line.envelopes += count;
        if e.repaired() {
            line.repaired += count;
        }
        if let Some(seq) = e.seq() {
            // The node delivers each sender's envelopes in order, holding
            // what comes early: a jump is a range it gave up (lost); a step
            // back, a new session (a restart).
            if let Some(next) = line.next {
                if seq > next {
                    line.lost = line.lost.saturating_add(seq - next);
                }
            }
            line.next = Some(seq.saturating_add(count));
        }
        for (kind, _) in e.messages() {
            if !kind.starts_with('_') {
                self.kinds
                    .entry(kind.to_owned())
                    .or_default()
                    .push_back(now);
            }
        }
        if frames {
            let text = |s: &str| Value::String(s.to_owned());
            let messages = e
                .messages()
                .map(|(kind, raw)| {
                    let value = raw
                        .decode::<Value>()
                        .unwrap_or_else(|err| text(&format!("<unreadable: {err}>")));
                    (text(kind), value)
                })
                .collect();
            let mut fields = vec![
                (text("from"), text(&who)),
                (text("account"), text(sender.account())),
                (
                    text("seq"),
                    e.seq().map_or(Value::Null, |s| Value::Int(s.into())),
                ),
            ];
            if count > 1 {
                fields.push((text("count"), Value::Int(count.into())));
            }
            if e.repaired() {
                fields.push((text("repaired"), Value::Bool(true)));
            }
            fields.push((text("messages"), Value::Map(messages)));
            self.frames.push_back(Value::Map(fields).to_string());
        }
    }

    /// Forgets the traffic older than a minute (and the kinds without
    /// any), and the senders not heard for [`SENDER_KEPT`].
    fn expire(&mut self, now: Instant) {
        self.kinds.retain(|_, times| {
            while times
                .front()
                .is_some_and(|t| now.duration_since(*t) > MINUTE)
            {
                times.pop_front();
            }
            !times.is_empty()
        });
        self.senders
            .retain(|_, line| now.duration_since(line.last) <= SENDER_KEPT);
    }
}

fn role_name(role: Option<Role>) -> &'static str {
    match role {
        Some(Role::Active) => "active",
        Some(Role::Standby) => "standby",
        None => "-",
    }
}

/// The refusals shown, by counter name.
fn refused(stats: &Stats) -> String {
    const SHOWN: &[&str] = &[
        "untrusted",
        "unsigned",
        "bad_signature",
        "stale",
        "replayed",
        "malformed",
    ];
    stats
        .iter()
        .filter(|(name, _, _)| SHOWN.contains(name))
        .map(|(name, value, _)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `watch` until Ctrl-C or SIGTERM.
pub fn watch(args: WatchArgs) -> Result<ExitCode, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(run(args))
}

/// Where `watch` reads: for the screen's title and for errors.
#[derive(Debug)]
struct Place {
    /// The channel or room.
    room: String,
    /// The IRC server, Matrix homeserver or Stack Exchange chat host.
    server: String,
}

/// A secret from the environment; unset or empty is none.
#[cfg(any(feature = "matrix", feature = "stackexchange"))]
fn env_secret(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The one place the chat is made from the options: a node builder with
/// it as transport, and where it reads. Matrix and Stack Exchange chat log
/// in and join here; IRC connects when the node starts.
async fn join(args: &WatchArgs) -> Result<(NodeBuilder, Place), String> {
    if let Some(server) = &args.irc {
        // clap requires --channel with --irc.
        let channel = args.channel.clone().unwrap_or_default();
        let mut chat = IrcChat::new(server, &args.nick, &channel);
        if args.tls {
            chat = chat.tls();
        }
        if let Some(ca) = &args.tls_ca {
            chat = chat.tls_ca_file(ca);
        }
        let node = Node::builder(format!("watch/{}", args.nick)).transport(chat);
        let place = Place {
            room: channel,
            server: server.clone(),
        };
        return Ok((node, place));
    }
    // clap requires --room with --matrix and --stackexchange.
    let room = args.room.clone().unwrap_or_default();
    match (&args.matrix, &args.stackexchange) {
        (Some(homeserver), _) => join_matrix(args, homeserver, room).await,
        (_, Some(host)) => join_stackexchange(args, host, room).await,
        _ => Err("give one of --irc, --matrix and --stackexchange".into()),
    }
}

/// The error of a flag whose chat this build left out.
#[cfg(not(all(feature = "matrix", feature = "stackexchange")))]
fn left_out(flag: &str, feature: &str) -> String {
    format!(
        "{flag}: this socketscience was built without the `{feature}` feature; \
         `cargo install socketscience-cli` (default features) has every chat, \
         or add `--features {feature}`"
    )
}

#[cfg(feature = "matrix")]
async fn join_matrix(
    args: &WatchArgs,
    homeserver: &str,
    room: String,
) -> Result<(NodeBuilder, Place), String> {
    use socketscience::matrix::MatrixError;
    let place = Place {
        room,
        server: homeserver.to_owned(),
    };
    let here = format!("Matrix room {} on {}", place.room, place.server);
    let token = env_secret(MATRIX_TOKEN_VAR);
    let mut chat = socketscience::MatrixChat::builder(homeserver, place.room.as_str());
    match (&args.user, env_secret(MATRIX_PASSWORD_VAR)) {
        (Some(user), Some(password)) => chat = chat.credentials(user, password),
        (Some(user), None) if token.is_none() => {
            return Err(format!(
                "cannot read {here}: set {MATRIX_PASSWORD_VAR} to the password of {user} \
                 (or {MATRIX_TOKEN_VAR} to an access token); passwords are not taken on \
                 the command line"
            ))
        }
        (None, _) if token.is_none() => {
            return Err(format!(
                "cannot read {here}: watch needs a Matrix account; give --user USER and set \
                 {MATRIX_PASSWORD_VAR} to its password, or set {MATRIX_TOKEN_VAR} to an \
                 access token"
            ))
        }
        _ => {}
    }
    if let Some(token) = token {
        chat = chat.access_token(token);
    }
    let chat = chat.connect().await.map_err(|e| {
        let hint = match transport_error::<MatrixError>(&e) {
            Some(MatrixError::Login { .. }) => {
                format!("; check --user and {MATRIX_PASSWORD_VAR}")
            }
            Some(MatrixError::TokenRefused { .. }) => format!(
                "; set a new token in {MATRIX_TOKEN_VAR}, or give --user and \
                 {MATRIX_PASSWORD_VAR}"
            ),
            Some(MatrixError::Room { .. }) => {
                "; check --room, and that the user may join the room".into()
            }
            _ => String::new(),
        };
        format!("cannot join {here}: {e}{hint}")
    })?;
    let node = Node::builder(format!("watch/{}", chat.user_id())).transport(chat);
    Ok((node, place))
}

#[cfg(not(feature = "matrix"))]
async fn join_matrix(_: &WatchArgs, _: &str, _: String) -> Result<(NodeBuilder, Place), String> {
    Err(left_out("--matrix", "matrix"))
}

#[cfg(feature = "stackexchange")]
async fn join_stackexchange(
    args: &WatchArgs,
    host: &str,
    room: String,
) -> Result<(NodeBuilder, Place), String> {
    use socketscience::stackexchange::StackExchangeError;
    let number: u64 = room.trim().parse().map_err(|_| {
        format!(
            "--room {room}: a Stack Exchange chat room is a number (the N of \
             https://chat.stackexchange.com/rooms/N)"
        )
    })?;
    let place = Place {
        room: format!("room {number}"),
        server: host.to_owned(),
    };
    let here = format!("Stack Exchange chat {} on {}", place.room, place.server);
    let mut chat = socketscience::StackExchangeChat::builder(host, number);
    // An address with a scheme or a port is a server of its own (such as
    // a stand-in), its own login host; a site name maps to the real hosts.
    let url = host.trim().trim_end_matches('/');
    if url.starts_with("http://") || url.trim_start_matches("https://").contains(':') {
        chat = chat.base_urls(url, url);
    }
    match (&args.email, env_secret(STACKEXCHANGE_PASSWORD_VAR)) {
        (Some(email), Some(password)) => chat = chat.credentials(email, password),
        (Some(email), None) => {
            return Err(format!(
                "cannot read {here}: set {STACKEXCHANGE_PASSWORD_VAR} to the password of \
                 {email}; passwords are not taken on the command line"
            ))
        }
        (None, _) if args.cookie_file.is_none() => {
            return Err(format!(
                "cannot read {here}: watch needs a Stack Exchange account; give --email EMAIL \
                 and set {STACKEXCHANGE_PASSWORD_VAR} to its password, or --cookie-file FILE \
                 with a saved login"
            ))
        }
        _ => {}
    }
    if let Some(file) = &args.cookie_file {
        chat = chat.cookie_file(file);
    }
    // The transport keeps trying while the site cannot be reached (its
    // warnings go to logs watch does not print).
    eprintln!("socketscience: logging in to {here}; it tries again while the chat cannot be reached (Ctrl-C stops)");
    let chat = chat.connect().await.map_err(|e| {
        let hint = match transport_error::<StackExchangeError>(&e) {
            Some(StackExchangeError::Login(_)) => {
                format!("; check --email and {STACKEXCHANGE_PASSWORD_VAR} (or the cookie file)")
            }
            Some(StackExchangeError::Unavailable { .. }) => {
                "; check --stackexchange, or try again later".into()
            }
            Some(StackExchangeError::Refused { .. }) => {
                "; check --room, and that the account may read the room".into()
            }
            _ => String::new(),
        };
        format!("cannot join {here}: {e}{hint}")
    })?;
    let node = Node::builder(format!("watch/{}", chat.user_id())).transport(chat);
    Ok((node, place))
}

#[cfg(not(feature = "stackexchange"))]
async fn join_stackexchange(
    _: &WatchArgs,
    _: &str,
    _: String,
) -> Result<(NodeBuilder, Place), String> {
    Err(left_out("--stackexchange", "stackexchange"))
}

/// The transport's own error inside a node error, if it is an `E`.
#[cfg(any(feature = "matrix", feature = "stackexchange"))]
fn transport_error<E: std::error::Error + 'static>(e: &socketscience::Error) -> Option<&E> {
    match e {
        socketscience::Error::Transport(inner) => inner.downcast_ref::<E>(),
        _ => None,
    }
}

async fn run(args: WatchArgs) -> Result<ExitCode, String> {
    let (builder, place) = join(&args).await?;
    let board = Arc::new(Mutex::new(Board::default()));
    let mut builder = builder
        .read_only()
        .default_node(false)
        .heartbeat(Duration::from_millis(args.heartbeat))
        .observe({
            let board = board.clone();
            let frames = args.frames;
            move |e| lock(&board).observed(e, frames)
        });
    if let Some(ms) = args.peer_timeout {
        builder = builder.peer_timeout(Duration::from_millis(ms));
    }
    for pattern in &args.trust {
        builder = builder.trust(pattern);
    }
    let node = builder
        .start()
        .await
        .map_err(|e| format!("cannot join {} on {}: {e}", place.room, place.server))?;
    let started = Instant::now();
    let mut posts: VecDeque<(Instant, u64)> = VecDeque::new();
    let mut shown: HashMap<String, (u64, Option<Role>, Option<u64>)> = HashMap::new();
    let mut lost_shown: HashMap<String, u64> = HashMap::new();
    let mut refused_shown = String::new();
    let mut recent: VecDeque<String> = VecDeque::new();
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    let stop = socketscience::stop_signal();
    tokio::pin!(stop);
    let mut out = io::stdout();
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = &mut stop => break,
        }
        let now = Instant::now();
        let stats = node.stats();
        posts.push_back((now, stats.received));
        while posts
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > MINUTE)
        {
            posts.pop_front();
        }
        let posts_minute = stats.received - posts.front().map_or(0, |(_, n)| *n);
        let mut peers = node.peers();
        peers.sort_by(|a, b| a.instance().cmp(b.instance()));
        let mut board = lock(&board);
        board.expire(now);
        let frames: Vec<String> = board.frames.drain(..).collect();
        let result = if args.plain {
            let mut lines = Vec::new();
            for frame in &frames {
                lines.push(format!("FRAME {frame}"));
            }
            plain_changes(&peers, &mut shown, &mut lines);
            lost_shown.retain(|who, _| board.senders.contains_key(who));
            for (who, line) in &board.senders {
                let before = lost_shown.insert(who.clone(), line.lost).unwrap_or(0);
                if line.lost > before {
                    lines.push(format!(
                        "LOST {who} {} (in all {})",
                        line.lost - before,
                        line.lost
                    ));
                }
            }
            let refusals = refused(&stats);
            if refusals != refused_shown {
                lines.push(format!("REFUSED {refusals}"));
                refused_shown = refusals;
            }
            lines.iter().try_for_each(|l| writeln!(out, "{l}"))
        } else {
            recent.extend(frames);
            while recent.len() > FRAMES_SHOWN {
                recent.pop_front();
            }
            let screen = screen(
                &place,
                &peers,
                &board,
                &stats,
                posts_minute,
                started,
                args.frames.then_some(&recent),
            );
            write!(out, "\x1b[H\x1b[2J{screen}")
        };
        drop(board);
        if let Err(e) = result.and_then(|()| out.flush()) {
            if e.kind() == io::ErrorKind::BrokenPipe {
                break;
            }
            return Err(e.to_string());
        }
    }
    let _ = node.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

fn lock(board: &Mutex<Board>) -> std::sync::MutexGuard<'_, Board> {
    board
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `--plain`: the instances that joined, changed role or term, or left.
fn plain_changes(
    peers: &[Peer],
    shown: &mut HashMap<String, (u64, Option<Role>, Option<u64>)>,
    lines: &mut Vec<String>,
) {
    for p in peers {
        let now = (p.session(), p.role(), p.term());
        match shown.insert(p.instance().to_owned(), now) {
            Some(before) if before.0 == now.0 => {
                if before != now {
                    lines.push(format!(
                        "ROLE {} {} term={}",
                        p.instance(),
                        role_name(p.role()),
                        p.term().map_or("-".into(), |t| t.to_string())
                    ));
                }
            }
            _ => lines.push(format!(
                "JOINED {} account={} session={:016x} role={} term={}",
                p.instance(),
                p.account(),
                p.session(),
                role_name(p.role()),
                p.term().map_or("-".into(), |t| t.to_string())
            )),
        }
    }
    shown.retain(|instance, _| {
        let here = peers.iter().any(|p| p.instance() == instance);
        if !here {
            lines.push(format!("LEFT {instance}"));
        }
        here
    });
}

/// The screen, redrawn every second.
fn screen(
    place: &Place,
    peers: &[Peer],
    board: &Board,
    stats: &Stats,
    posts_minute: u64,
    started: Instant,
    frames: Option<&VecDeque<String>>,
) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "socketscience watch: {} on {}, read-only (posts nothing); up {}s",
        place.room,
        place.server,
        started.elapsed().as_secs()
    );
    let active = peers
        .iter()
        .find(|p| p.role() == Some(Role::Active))
        .map_or("none heard", |p| p.instance());
    let _ = writeln!(s, "\nINSTANCES {} heard, active: {active}", peers.len());
    let _ = writeln!(
        s,
        "  {:<20} {:<20} {:<16} {:<8} {:>5} {:>10}",
        "INSTANCE", "ACCOUNT", "SESSION", "ROLE", "TERM", "LAST HEARD"
    );
    let now = tokio::time::Instant::now();
    for p in peers {
        let _ = writeln!(
            s,
            "  {:<20} {:<20} {:016x} {:<8} {:>5} {:>9.1}s",
            p.instance(),
            p.account(),
            p.session(),
            role_name(p.role()),
            p.term().map_or("-".into(), |t| t.to_string()),
            now.saturating_duration_since(p.last_heard()).as_secs_f64()
        );
    }
    let _ = writeln!(s, "\nTRAFFIC posts in the last minute: {posts_minute}");
    let _ = writeln!(s, "  {:<30} {:>12}", "KIND", "ENVELOPES/MIN");
    for (kind, times) in &board.kinds {
        let _ = writeln!(s, "  {kind:<30} {:>12}", times.len());
    }
    let _ = writeln!(
        s,
        "\nSENDERS\n  {:<20} {:>10} {:>8} {:>9} {:>6}",
        "SENDER", "ENVELOPES", "MISSED", "REPAIRED", "LOST"
    );
    for (who, line) in &board.senders {
        let _ = writeln!(
            s,
            "  {who:<20} {:>10} {:>8} {:>9} {:>6}",
            line.envelopes,
            line.repaired + line.lost,
            line.repaired,
            line.lost
        );
    }
    let _ = writeln!(s, "\nREFUSED {}", refused(stats));
    if let Some(frames) = frames {
        let _ = writeln!(s, "\nFRAMES (latest {FRAMES_SHOWN})");
        for frame in frames {
            let _ = writeln!(s, "  {frame}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_board_forgets_quiet_kinds_and_senders() {
        let mut board = Board::default();
        let t0 = Instant::now();
        board.kinds.insert("ping".into(), VecDeque::from([t0]));
        board.senders.insert(
            "Henders/EC2".into(),
            SenderLine {
                next: Some(1),
                envelopes: 1,
                repaired: 0,
                lost: 0,
                last: t0,
            },
        );
        board.expire(t0 + MINUTE + Duration::from_secs(1));
        assert!(board.kinds.is_empty(), "{board:?}");
        assert_eq!(board.senders.len(), 1);
        board.expire(t0 + SENDER_KEPT + Duration::from_secs(1));
        assert!(board.senders.is_empty(), "{board:?}");
    }
}
