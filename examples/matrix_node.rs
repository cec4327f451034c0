//! One instance of a fleet on Matrix: it logs in (or resumes from its
//! state file), joins the room, broadcasts `--count` notes, and exits once
//! it has dispatched `--expect` notes of the fleet (its own included).
//!
//! ```text
//! cargo run --features matrix --example matrix_node -- \
//!     --homeserver http://127.0.0.1:8008 --room '#smokey:localhost' \
//!     --user smokey-henders --password hunter2 --state henders.json \
//!     --name Henders/EC2 --count 5 --expect 15
//! ```
//!
//! Run one per host (or terminal), each with its own `--user`, `--name`
//! and `--state`. Everything it dispatches is printed one line each:
//!
//! ```text
//! READY user=@smokey-henders:localhost room=!abc:localhost
//! DISPATCH Henders/EC2 0
//! DISPATCH teward/vps 0
//! ...
//! DONE dispatched=15 posts=3 own_echoes=5 untrusted=0 history_gaps=0
//! ```
//!
//! Options (times in milliseconds):
//!
//! ```text
//! --homeserver URL     the homeserver (required)
//! --room ROOM          room id (!abc:server) or alias (#name:server) (required)
//! --user USER          user name or full user id, to log in
//! --password PASS      its password
//! --token TOKEN        an access token instead of a login
//! --state FILE         the state file (device, token, sync position)
//! --name NAME          this instance's name (default: the user)
//! --trust PATTERN      trusted user ids, `*` globs; repeatable (default: own account)
//! --count N            notes to broadcast (default 5)
//! --interval MS        pause between two notes (default 0)
//! --expect N           notes to dispatch before exiting (default: count)
//! --timeout MS         give up (exit 1) after this long (default 300000)
//! ```

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use socketscience::{message, Context, MatrixChat, Node};

/// What each instance broadcasts.
#[message("fleet_note")]
#[derive(Debug, Clone)]
pub struct FleetNote {
    pub index: u64,
    pub text: String,
}

/// The options above.
#[derive(clap::Parser)]
struct Args {
    #[arg(long)]
    homeserver: String,
    #[arg(long)]
    room: String,
    #[arg(long)]
    user: Option<String>,
    #[arg(long)]
    password: Option<String>,
    #[arg(long)]
    token: Option<String>,
    #[arg(long)]
    state: Option<String>,
    /// Default: the user.
    #[arg(long, default_value = "")]
    name: String,
    #[arg(long)]
    trust: Vec<String>,
    #[arg(long, default_value_t = 5)]
    count: u64,
    #[arg(long, default_value = "0", value_parser = ms)]
    interval: Duration,
    #[arg(long)]
    expect: Option<u64>,
    #[arg(long, default_value = "300000", value_parser = ms)]
    timeout: Duration,
}

/// A time in milliseconds.
fn ms(v: &str) -> Result<Duration, std::num::ParseIntError> {
    v.parse().map(Duration::from_millis)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let mut args = <Args as clap::Parser>::parse();
    if args.name.is_empty() {
        match &args.user {
            Some(user) => args.name = user.clone(),
            None => {
                eprintln!("matrix_node: --name NAME is required with --token");
                return ExitCode::from(2);
            }
        }
    }
    match tokio::time::timeout(args.timeout, run(&args)).await {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("matrix_node {}: {e}", args.name);
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!(
                "matrix_node {}: timed out after {:?}",
                args.name, args.timeout
            );
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> Result<(), String> {
    let mut chat = MatrixChat::builder(&args.homeserver, &args.room);
    if let (Some(user), Some(password)) = (&args.user, &args.password) {
        chat = chat.credentials(user, password);
    }
    if let Some(token) = &args.token {
        chat = chat.access_token(token);
    }
    if let Some(state) = &args.state {
        chat = chat.state_file(state);
    }
    let chat = chat.connect().await.map_err(|e| e.to_string())?;
    println!("READY user={} room={}", chat.user_id(), chat.room_id());
    let mut builder = Node::builder(&args.name).transport(chat);
    for pattern in &args.trust {
        builder = builder.trust(pattern);
    }
    let node = builder.start().await.map_err(|e| e.to_string())?;

    let dispatched = Arc::new(AtomicU64::new(0));
    node.register({
        let dispatched = dispatched.clone();
        move |note: FleetNote, cx: Context| {
            let from = cx.sender().instance().unwrap_or(cx.sender().account());
            println!("DISPATCH {from} {}", note.index);
            dispatched.fetch_add(1, Ordering::SeqCst);
        }
    });

    for index in 0..args.count {
        node.send(FleetNote {
            index,
            text: String::new(),
        })
        .await
        .map_err(|e| e.to_string())?;
        if !args.interval.is_zero() {
            tokio::time::sleep(args.interval).await;
        }
    }
    let expect = args.expect.unwrap_or(args.count);
    // Until every envelope expected ran, or SIGTERM or Ctrl-C.
    let all_ran = async {
        while dispatched.load(Ordering::SeqCst) < expect {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::select! {
        _ = all_ran => {}
        _ = socketscience::stop_signal() => {}
    }
    let shutdown = node.shutdown().await;
    let stats = node.stats();
    println!(
        "DONE dispatched={} posts={} own_echoes={} untrusted={} history_gaps={}",
        dispatched.load(Ordering::SeqCst),
        stats.posts,
        stats.own_echoes,
        stats.untrusted,
        stats.history_gaps
    );
    shutdown.map_err(|e| e.to_string())
}
