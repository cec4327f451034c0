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
//! ```
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
//! ```
//!
//! It runs until killed or until its stdin closes.

use std::process::ExitCode;
use std::time::Duration;

use socketscience::{Failover, IrcChat, Node, Role};

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
        .start()
        .await
        .map_err(|e| e.to_string())?;

    let mut roles = node.watch_role();
    println!("ROLE {}", role_name(*roles.borrow_and_update()));
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

    // Runs until stdin closes (or the process is killed).
    let _ = tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {
            sink.clear();
        }
    })
    .await;
    printer.abort();
    node.shutdown().await.map_err(|e| e.to_string())
}
