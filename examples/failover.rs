//! One instance of a fleet that elects one active instance through an IRC
//! channel: it prints its role whenever it changes, and its peers with
//! their roles whenever those change. Kill the active one (`kill -9`) and
//! another takes over within the lease and a heartbeat; start it again and
//! it comes back as a standby.
//!
//! ```text
//! cargo run --example failover -- --server 127.0.0.1:6667 --nick smokey-henders \
//!     --name Henders/EC2 --priority 10
//! cargo run --example failover -- --server 127.0.0.1:6667 --nick smokey-teward \
//!     --name teward/vps --priority 5
//! ```
//!
//! Each line it prints (stdout), for people and for `tests/irc_failover.rs`:
//!
//! ```text
//! ROLE standby                      at start, and at every change
//! PEERS teward/vps=standby,Undo/laptop=active
//! ROLE active
//! TOKEN 7                           its fencing token, at every change (`none` while standby)
//! WRITE 7                           with --write-every: a write to a fenced service, with the token
//! EVENT joined teward/vps 1.4.2     each peer event (`Node::peer_events`): joined, left,
//! EVENT changed-role teward/vps     changed-role, changed-meta, changed-kinds; with the
//!                                   peer's version (its meta) on joined and changed-meta
//! NOTE Undo/laptop hello            an `upgrade_note` it ran (this build's type: text only)
//! TALLY Undo/laptop 3               an `upgrade_tally` it ran (this build's type: `n: u64`)
//! MISMATCH upgrade_tally Undo/laptop bad=1 unknown=0   after `mismatches` on stdin
//! ```
//!
//! It answers `fleet_status` questions with its name and version, and
//! takes commands on stdin, one per line: `note TEXT` and `tally N`
//! broadcast those messages; `version V` changes its meta (`Node::set_meta`);
//! `mismatches` prints what it could not use
//! (`Node::mismatches`). `tests/irc_coordination.rs` plays a newer build of
//! the two message types against it.
//!
//! Options (times in milliseconds):
//!
//! ```text
//! --server HOST:PORT     the IRC server (required)
//! --nick NICK            this instance's nick (required)
//! --channel '#NAME'      the channel (default #socketscience)
//! --name NAME            this instance's name (default: the nick)
//! --trust PATTERN        trusted nicks, `*` globs (default smokey-*)
//! --priority N           this instance's priority (default 0)
//! --heartbeat MS         heartbeat interval (default 30000)
//! --lease MS             the lease (default three heartbeats)
//! --quorum N             instances to hear, itself included, to be active (default 1)
//! --rate LINES_PER_SEC   send rate (default 2)
//! --write-every MS       while active, print a WRITE line with the token this often
//! --version V            the version it says in its meta (default 1.0.0)
//! ```
//!
//! It runs until killed or until its stdin closes.

use std::process::ExitCode;
use std::time::Duration;

use socketscience::peers::{PeerChange, PeerEvent};
use socketscience::{message, Context, Failover, IrcChat, Node, Role};

/// What an instance says about itself in its heartbeats (its meta).
#[socketscience::data]
pub struct Build {
    pub version: String,
}

/// A question every instance answers: who and which version.
#[message("fleet_status", reply = Status)]
pub struct StatusPlease;

/// The answer to [`StatusPlease`].
#[message("fleet_status_reply")]
pub struct Status {
    pub instance: String,
    pub version: String,
}

/// A note to the fleet: this build's type (a newer one adds a field).
#[message("upgrade_note")]
pub struct Note {
    pub text: String,
}

/// A count: this build's type (a newer one made `n` a string).
#[message("upgrade_tally")]
pub struct Tally {
    pub n: u64,
}

/// How an instance is named in the lines it prints.
fn sender_name(cx: &Context) -> String {
    let sender = cx.sender();
    sender.instance().unwrap_or(sender.account()).to_owned()
}

/// The line a peer event prints.
fn event_line(event: &PeerEvent) -> String {
    let peer = event.peer();
    let version = || {
        peer.meta::<Build>()
            .map_or_else(|| "-".to_owned(), |b| b.version)
    };
    match event {
        PeerEvent::Joined(_) => format!("EVENT joined {} {}", peer.instance(), version()),
        PeerEvent::Left(_) => format!("EVENT left {}", peer.instance()),
        PeerEvent::Changed { change, .. } => match change {
            PeerChange::Role => format!("EVENT changed-role {}", peer.instance()),
            PeerChange::Meta => format!("EVENT changed-meta {} {}", peer.instance(), version()),
            PeerChange::Kinds => format!("EVENT changed-kinds {}", peer.instance()),
            _ => format!("EVENT changed {}", peer.instance()),
        },
        _ => format!("EVENT other {}", peer.instance()),
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Active => "active",
        Role::Standby => "standby",
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("failover: {e}\n(see the top of examples/failover.rs for the options)");
            ExitCode::FAILURE
        }
    }
}

/// The options above.
#[derive(clap::Parser)]
struct Args {
    #[arg(long)]
    server: String,
    #[arg(long)]
    nick: String,
    #[arg(long, default_value = "#socketscience")]
    channel: String,
    /// Default: the nick.
    #[arg(long)]
    name: Option<String>,
    #[arg(long, default_value = "smokey-*")]
    trust: String,
    #[arg(long, default_value_t = 0)]
    priority: i64,
    #[arg(long, default_value_t = 30_000)]
    heartbeat: u64,
    #[arg(long)]
    lease: Option<u64>,
    #[arg(long, default_value_t = 1)]
    quorum: u64,
    #[arg(long, default_value_t = 2.0)]
    rate: f64,
    #[arg(long)]
    write_every: Option<u64>,
    #[arg(long, default_value = "1.0.0")]
    version: String,
}

async fn run() -> Result<(), String> {
    let Args {
        server,
        nick,
        channel,
        name,
        trust,
        priority,
        heartbeat,
        lease,
        quorum,
        rate,
        write_every,
        version,
    } = clap::Parser::parse();
    let name = name.unwrap_or_else(|| nick.clone());

    let mut failover = Failover::new().priority(priority).quorum(quorum as usize);
    if let Some(lease) = lease {
        failover = failover.lease(Duration::from_millis(lease));
    }
    let chat = IrcChat::new(&server, &nick, &channel).send_rate(rate, 5);
    let node = Node::builder(&name)
        .transport(chat)
        .trust(trust)
        .heartbeat(Duration::from_millis(heartbeat))
        .failover(failover)
        .meta(Build {
            version: version.clone(),
        })
        .start()
        .await
        .map_err(|e| e.to_string())?;
    node.answer({
        let (name, version) = (name.clone(), version.clone());
        move |_: StatusPlease, _cx: Context| Status {
            instance: name.clone(),
            version: version.clone(),
        }
    });
    node.register(|note: Note, cx: Context| println!("NOTE {} {}", sender_name(&cx), note.text));
    node.register(|tally: Tally, cx: Context| println!("TALLY {} {}", sender_name(&cx), tally.n));
    let event_printer = {
        let mut events = node.peer_events();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                println!("{}", event_line(&event));
            }
        })
    };

    let mut roles = node.watch_role();
    println!("ROLE {}", role_name(*roles.borrow_and_update()));
    let token_printer = {
        let mut tokens = node.watch_fencing_token();
        tokio::spawn(async move {
            loop {
                match *tokens.borrow_and_update() {
                    Some(token) => println!("TOKEN {token}"),
                    None => println!("TOKEN none"),
                }
                if tokens.changed().await.is_err() {
                    return;
                }
            }
        })
    };
    // A stand-in for writes to a service that refuses stale tokens (the
    // test plays the service).
    let writer = write_every.map(|every| {
        let node = node.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_millis(every));
            loop {
                ticks.tick().await;
                if let Some(token) = node.fencing_token() {
                    println!("WRITE {token}");
                }
            }
        })
    });
    let printer = {
        let node = node.clone();
        tokio::spawn(async move {
            let mut last_peers = String::new();
            let mut ticks = tokio::time::interval(Duration::from_millis(200));
            loop {
                tokio::select! {
                    changed = roles.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        println!("ROLE {}", role_name(*roles.borrow_and_update()));
                    }
                    _ = ticks.tick() => {}
                }
                // Peers and their roles, when they change.
                let mut peers: Vec<String> = node
                    .peers()
                    .iter()
                    .map(|p| format!("{}={}", p.instance(), p.role().map_or("unknown", role_name)))
                    .collect();
                peers.sort();
                let peers = peers.join(",");
                if peers != last_peers {
                    println!("PEERS {peers}");
                    last_peers = peers;
                }
            }
        })
    };

    // Runs until stdin closes, SIGTERM or Ctrl-C (or the process is killed),
    // following the commands it reads.
    let (commands, mut to_run) = tokio::sync::mpsc::unbounded_channel::<String>();
    let stdin_closed = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
            let _ = commands.send(line.trim().to_owned());
            line.clear();
        }
    });
    let commander = {
        let node = node.clone();
        tokio::spawn(async move {
            while let Some(command) = to_run.recv().await {
                let sent = match command.split_once(' ') {
                    Some(("note", text)) => node.send(Note { text: text.into() }).await,
                    Some(("version", v)) => node.set_meta(Build { version: v.into() }),
                    Some(("tally", n)) => match n.parse() {
                        Ok(n) => node.send(Tally { n }).await,
                        Err(_) => {
                            eprintln!("tally: not a number: {n}");
                            Ok(())
                        }
                    },
                    _ if command == "mismatches" => {
                        for m in node.mismatches() {
                            println!(
                                "MISMATCH {} {} bad={} unknown={}",
                                m.kind, m.sender, m.bad_values, m.unknown
                            );
                        }
                        println!("MISMATCHES END");
                        Ok(())
                    }
                    _ => {
                        eprintln!("unknown command: {command}");
                        Ok(())
                    }
                };
                if let Err(e) = sent {
                    eprintln!("{command}: {e}");
                }
            }
        })
    };
    let result = node
        .shutdown_on(async {
            tokio::select! {
                _ = stdin_closed => {}
                _ = socketscience::stop_signal() => {}
            }
        })
        .await;
    printer.abort();
    token_printer.abort();
    event_printer.abort();
    commander.abort();
    if let Some(writer) = writer {
        writer.abort();
    }
    result.map_err(|e| e.to_string())
}
