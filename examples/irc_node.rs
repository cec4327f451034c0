//! One instance of a fleet on IRC: it joins a channel, waits for its peers,
//! broadcasts `--count` notes, and exits once it has dispatched every note
//! of the fleet (its own included).
//!
//! ```text
//! cargo run --example irc_node -- --server 127.0.0.1:6667 --nick smokey-henders \
//!     --name Henders/EC2 --peers smokey-teward,smokey-undo --count 5
//! ```
//!
//! Run one per host (or terminal), each with its own `--nick` and `--name`
//! and the others' nicks in `--peers`. Everything it dispatches is printed
//! one line each, for people and for the fleet tests:
//!
//! ```text
//! READY nick=smokey-henders members=smokey-teward,smokey-undo
//! DISPATCH Henders/EC2 0
//! DISPATCH teward/vps 0
//! ...
//! DONE dispatched=15 connections=1 posted=4 resent=0 duplicates=0 own_echoes=0 ...
//! ```
//!
//! (`all_ms` in `DONE`: from the first send to the last dispatch.)
//!
//! Options (times in milliseconds):
//!
//! ```text
//! --server HOST:PORT     the IRC server (required)
//! --nick NICK            this instance's nick (required)
//! --channel '#NAME'      the channel (default #socketscience)
//! --name NAME            this instance's name (default: the nick)
//! --trust PATTERN        trusted nicks, `*` globs; repeatable (default smokey-*)
//! --peers A,B            nicks to wait for before sending (default none)
//! --count N              notes to broadcast (default 5)
//! --interval MS          pause between two notes (default 0)
//! --payload BYTES        text carried by each note (default 0)
//! --expect N             notes to dispatch before exiting (default (peers+1)*count)
//! --password PASS        the server password
//! --tls                  connect with TLS (verified against the usual roots)
//! --tls-ca FILE          also trust the CAs in this PEM file (implies --tls)
//! --sasl-account NAME    log in with SASL PLAIN as NAME (password from the
//!                        environment: SOCKETSCIENCE_SASL_PASSWORD); trust
//!                        then matches accounts, not nicks
//! --rate LINES_PER_SEC   send rate (default 1)
//! --burst LINES          send burst (default 5)
//! --backoff-max MS       longest reconnect delay (default 60000)
//! --settle MS            settle time of the resend window (default 3000)
//! --timeout MS           give up (exit 1) after this long (default 300000)
//! --heartbeat MS         heartbeat interval (default: the library's, 30000)
//! --repair-window MS     repair window (default: the library's, 5000)
//! --first-index N        the first note's index (default 0)
//! --pings                send SmokeDetector's `ping` ({location, timestamp},
//!                        the time as a float) instead of notes; each sender's
//!                        pings are numbered in the order they arrive, and a
//!                        timestamp not after the last one is printed as
//!                        `DISORDER`
//! --wait-stdin           once every note is dispatched (`ALL` is printed),
//!                        stay in the room (to answer repair requests) until
//!                        stdin closes, then shut down
//! --metrics ADDR         serve the node's counters and gauges for Prometheus
//!                        at http://ADDR/metrics (feature `metrics` of
//!                        socketscience, metrics-exporter-prometheus)
//! ```

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use socketscience::{message, Context, IrcChat, Node};

/// What each instance broadcasts.
#[message("fleet_note")]
#[derive(Debug, Clone)]
pub struct FleetNote {
    pub index: u64,
    pub text: String,
}

/// SmokeDetector's ping (`--pings`).
#[message("ping")]
#[derive(Debug, Clone)]
pub struct Ping {
    pub location: String,
    pub timestamp: f64,
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
    #[arg(long, default_value = "")]
    name: String,
    #[arg(long, default_value = "smokey-*")]
    trust: Vec<String>,
    #[arg(long, value_delimiter = ',')]
    peers: Vec<String>,
    #[arg(long, default_value_t = 5)]
    count: u64,
    #[arg(long, default_value = "0", value_parser = ms)]
    interval: Duration,
    #[arg(long, default_value_t = 0)]
    payload: usize,
    #[arg(long)]
    expect: Option<u64>,
    #[arg(long)]
    password: Option<String>,
    #[arg(long)]
    tls: bool,
    #[arg(long)]
    tls_ca: Option<std::path::PathBuf>,
    #[arg(long)]
    sasl_account: Option<String>,
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    #[arg(long, default_value_t = 5)]
    burst: u32,
    #[arg(long, default_value = "60000", value_parser = ms)]
    backoff_max: Duration,
    #[arg(long, default_value = "3000", value_parser = ms)]
    settle: Duration,
    #[arg(long, default_value = "300000", value_parser = ms)]
    timeout: Duration,
    #[arg(long, value_parser = ms)]
    heartbeat: Option<Duration>,
    #[arg(long, value_parser = ms)]
    repair_window: Option<Duration>,
    #[arg(long, default_value_t = 0)]
    first_index: u64,
    #[arg(long)]
    wait_stdin: bool,
    #[arg(long)]
    pings: bool,
    #[arg(long)]
    metrics: Option<std::net::SocketAddr>,
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
        args.name = args.nick.clone();
    }
    match tokio::time::timeout(args.timeout, run(&args)).await {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("irc_node {}: {e}", args.name);
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("irc_node {}: timed out after {:?}", args.name, args.timeout);
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> Result<(), String> {
    if let Some(addr) = args.metrics {
        // The node publishes through the `metrics` facade; this exporter
        // serves what it records over HTTP.
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .install()
            .map_err(|e| format!("cannot serve metrics at {addr}: {e}"))?;
    }
    let mut chat = IrcChat::new(&args.server, &args.nick, &args.channel)
        .send_rate(args.rate, args.burst)
        .reconnect_backoff(
            Duration::from_millis(250).min(args.backoff_max),
            args.backoff_max,
        )
        .settle_time(args.settle);
    if let Some(password) = &args.password {
        chat = chat.password(password);
    }
    if args.tls {
        chat = chat.tls();
    }
    if let Some(ca) = &args.tls_ca {
        chat = chat.tls_ca_file(ca);
    }
    if let Some(account) = &args.sasl_account {
        let password = std::env::var("SOCKETSCIENCE_SASL_PASSWORD")
            .map_err(|_| "--sasl-account needs SOCKETSCIENCE_SASL_PASSWORD".to_owned())?;
        chat = chat.sasl(account, password);
    }
    let status = chat.status();
    let mut builder = Node::builder(&args.name).transport(chat);
    for pattern in &args.trust {
        builder = builder.trust(pattern);
    }
    if let Some(interval) = args.heartbeat {
        builder = builder.heartbeat(interval);
    }
    if let Some(window) = args.repair_window {
        builder = builder.repair_window(window);
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

    node.register({
        let dispatched = dispatched.clone();
        let last = std::sync::Mutex::new(HashMap::<String, (u64, f64)>::new());
        move |ping: Ping, cx: Context| {
            let from = cx.sender().instance().unwrap_or(cx.sender().account());
            let mut last = last.lock().unwrap();
            let (n, ts) = last.entry(from.to_owned()).or_insert((0, f64::MIN));
            if ping.timestamp <= *ts {
                println!("DISORDER {from} {} after {}", ping.timestamp, *ts);
            }
            println!("DISPATCH {from} {n}");
            (*n, *ts) = (*n + 1, ping.timestamp);
            dispatched.fetch_add(1, Ordering::SeqCst);
        }
    });

    // Posts reach only those in the channel: wait for the fleet.
    while !status
        .wait_for_members(&args.peers, Duration::from_secs(5))
        .await
    {
        eprintln!(
            "irc_node {}: waiting for {:?} (in the channel: {:?})",
            args.name,
            args.peers,
            status.members()
        );
    }
    println!(
        "READY nick={} members={}",
        status.nick().unwrap_or_default(),
        status.members().join(",")
    );

    let text = "x".repeat(args.payload);
    let started = std::time::Instant::now();
    let mut last = 0.0;
    for index in args.first_index..args.first_index + args.count {
        if args.pings {
            // `time.time()`, strictly increasing.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            last = if now > last { now } else { last + 1e-6 };
            node.send(Ping {
                location: args.name.clone(),
                timestamp: last,
            })
            .await
        } else {
            node.send(FleetNote {
                index,
                text: text.clone(),
            })
            .await
        }
        .map_err(|e| e.to_string())?;
        if !args.interval.is_zero() {
            tokio::time::sleep(args.interval).await;
        }
    }

    let expect = args
        .expect
        .unwrap_or((args.peers.len() as u64 + 1) * args.count);
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
    let all_ms = started.elapsed().as_millis();
    if args.wait_stdin {
        println!("ALL dispatched={}", dispatched.load(Ordering::SeqCst));
        // Stays in the room, answering repair requests, until told to go.
        let stdin_closed = tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
        });
        tokio::select! {
            _ = stdin_closed => {}
            _ = socketscience::stop_signal() => {}
        }
    }
    // Posts what is still queued and waits for the server to confirm it.
    let shutdown = node.shutdown().await;
    let stats = node.stats();
    println!(
        "DONE dispatched={} connections={} posted={} resent={} duplicates={} own_echoes={} \
         lost={} repaired={} repair_posts={} heartbeats={} all_ms={all_ms}",
        dispatched.load(Ordering::SeqCst),
        status.connections(),
        status.lines_posted(),
        status.lines_resent(),
        stats.duplicates,
        stats.own_echoes,
        stats.lost,
        stats.repaired,
        stats.repair_posts,
        stats.heartbeats
    );
    shutdown.map_err(|e| e.to_string())
}
