//! Three instances of a bot share one chat room. A `!!/coffee` command
//! arriving at one of them is broadcast as a `Beverage` message, and every
//! instance, the sender included, serves it. Then `!!/tea`.
//!
//! ```text
//! cargo run --example beverage                        # in-process room (LocalChat)
//! cargo run --example beverage -- --irc 127.0.0.1:6667 # the same three on an IRC server
//! ```

use std::time::Duration;

use socketscience::{handler, message, Context, IrcChat, LocalChat, Node};

#[message("beverage")]
#[derive(Debug, Clone)]
pub struct Beverage {
    pub message_id: u64,
    pub beverage_type: String,
}

#[handler]
fn serve(beverage: Beverage, cx: Context) {
    println!(
        "[{}] :{} *serves another {}*",
        cx.node().name(),
        beverage.message_id,
        beverage.beverage_type
    );
}

/// What a bot does with a chat command addressed to it.
fn on_command(command: &str, message_id: u64) -> socketscience::Result<()> {
    if let Some(drink) = command.strip_prefix("!!/") {
        Beverage {
            message_id,
            beverage_type: drink.to_owned(),
        }
        .broadcast()?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> socketscience::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();

    let names = ["Henders/EC2", "teward/vps", "Undo/laptop"];
    let mut nodes = Vec::new();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => {
            let chat = LocalChat::new();
            for name in names {
                // One chat account for the whole fleet, as SmokeDetector has.
                nodes.push(
                    Node::builder(name)
                        .transport(chat.join("smokey"))
                        .start()
                        .await?,
                );
            }
        }
        [flag, server] if flag == "--irc" => {
            // On IRC each instance has its own nick; trust them by pattern.
            let nicks: Vec<String> = (0..names.len()).map(|i| format!("smokey-bev{i}")).collect();
            let mut statuses = Vec::new();
            for (name, nick) in names.iter().zip(&nicks) {
                let chat = IrcChat::new(server.as_str(), nick.as_str(), "#beverage");
                statuses.push(chat.status());
                let node = Node::builder(*name).transport(chat).trust("smokey-bev*");
                nodes.push(node.start().await?);
            }
            // Posts reach only who is in the channel: wait for all three.
            for (i, status) in statuses.iter().enumerate() {
                let others: Vec<&String> = nicks.iter().filter(|n| **n != nicks[i]).collect();
                if !status
                    .wait_for_members(&others, Duration::from_secs(30))
                    .await
                {
                    eprintln!("not every instance joined #beverage on {server} within 30 s");
                    std::process::exit(1);
                }
            }
        }
        _ => {
            eprintln!("usage: beverage [--irc HOST:PORT]");
            std::process::exit(2);
        }
    }

    // The commands reach the first instance (the default node).
    on_command("!!/coffee", 42)?;
    on_command("!!/tea", 43)?;

    // Let every instance serve both drinks, then shut down (the sender
    // first: it posts what is queued).
    for node in &nodes {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while node.stats().dispatched < 2 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for node in &nodes {
        node.shutdown().await?;
    }
    let served: u64 = nodes.iter().map(|n| n.stats().dispatched).sum();
    println!("{served} servings by {} instances", nodes.len());
    Ok(())
}
