//! A chat command bot whose instances share the work: a `!!/coffee`
//! command arrives as an envelope, and exactly one live instance serves it
//! (`#[handler(shared)]`); if that instance dies before it confirmed the
//! job, another serves it, and says it is a takeover.
//!
//! Without options, three instances run in one process on a `LocalChat`;
//! the first relays the commands it reads from the chat:
//!
//! ```text
//! cargo run --example coffee_bot
//! ```
//!
//! With `--server`, one instance on IRC (run three, with other nicks and
//! names; `tests/irc_shared.rs` does, and posts the commands itself):
//!
//! ```text
//! cargo run --example coffee_bot -- --server 127.0.0.1:6667 --nick smokey-a --name a
//! ```
//!
//! Each instance prints `SERVED <n> <by> <takeover 0|1>` per coffee, and
//! `SHARING <k>` when it hears `k` other instances share the work. It runs
//! until its stdin closes (or SIGTERM, Ctrl-C).

use std::time::Duration;

use socketscience::{handler, message, Context, IrcChat, LocalChat, Node};

/// `!!/coffee <n>`, as the relay posts it.
#[message("coffee")]
pub struct Coffee {
    pub by: String,
    pub n: u64,
}

#[handler(shared)]
fn serve(cmd: Coffee, cx: Context) {
    let takeover = u8::from(cx.is_takeover()); // may have been served elsewhere
    println!(
        "SERVED {} {} {takeover} (for {})",
        cmd.n,
        cx.node().name(),
        cmd.by
    );
}

#[derive(clap::Parser)]
struct Args {
    #[arg(long)]
    server: Option<String>,
    #[arg(long, default_value = "smokey-coffee")]
    nick: String,
    #[arg(long, default_value = "#socketscience")]
    channel: String,
    #[arg(long)]
    name: Option<String>,
    /// Heartbeat interval, milliseconds.
    #[arg(long, default_value_t = 1_000)]
    heartbeat: u64,
}

#[tokio::main]
async fn main() -> socketscience::Result<()> {
    let args: Args = clap::Parser::parse();
    let heartbeat = Duration::from_millis(args.heartbeat);
    let Some(server) = args.server else {
        return local(heartbeat).await;
    };
    let chat = IrcChat::new(&server, &args.nick, &args.channel).send_rate(10.0, 10);
    let node = Node::builder(args.name.as_deref().unwrap_or(&args.nick))
        .transport(chat)
        .trust("smokey-*")
        .heartbeat(heartbeat)
        .start()
        .await?;
    let watcher = node.clone();
    tokio::spawn(async move {
        let mut last = usize::MAX;
        loop {
            let k = watcher
                .peers()
                .iter()
                .filter(|p| p.handles_shared("coffee"))
                .count();
            if k != last {
                println!("SHARING {k}");
                last = k;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let stdin_closed = tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {
            sink.clear();
        }
    });
    node.shutdown_on(async {
        tokio::select! {
            _ = stdin_closed => {}
            _ = socketscience::stop_signal() => {}
        }
    })
    .await
}

/// Three instances in one process; the first relays the commands.
async fn local(heartbeat: Duration) -> socketscience::Result<()> {
    let chat = LocalChat::new();
    let mut fleet = Vec::new();
    for name in ["Henders/EC2", "teward/vps", "Undo/laptop"] {
        let node = Node::builder(name)
            .transport(chat.join("smokey"))
            .heartbeat(heartbeat);
        fleet.push(node.default_node(false).start().await?);
    }
    // Each takes its share once it has heard the others.
    tokio::time::sleep(heartbeat * 3).await;
    for n in 1..=6 {
        fleet[0]
            .send(Coffee {
                by: "@Undo".into(),
                n,
            })
            .await?;
    }
    tokio::time::sleep(heartbeat).await;
    for node in &fleet {
        node.shutdown().await?;
    }
    Ok(())
}
