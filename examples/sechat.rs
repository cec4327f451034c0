//! The beverage fleet on Stack Exchange chat: three instances, one chat
//! account, one room. A `!!/coffee` command reaching one instance is
//! broadcast as a `Beverage`, and every instance serves it.
//!
//! ```text
//! SECHAT_HOST=stackexchange.com      # or stackoverflow.com, meta.stackexchange.com
//! SECHAT_ROOM=1                      # a room the account may post in (a sandbox!)
//! SECHAT_EMAIL=bot@example.com       # the bot account's Stack Exchange login
//! SECHAT_PASSWORD=...                # (or only SECHAT_COOKIES, once it is saved)
//! SECHAT_COOKIES=sechat-cookies.json # optional: keep the login between runs
//! SECHAT_CODEC=msgpack               # optional: what Python SocketScience reads
//! cargo run --example sechat --features stackexchange
//! ```

use std::time::Duration;

use socketscience::{handler, message, Codec, Context, Node, StackExchangeChat};

#[message("beverage")]
#[derive(Debug, Clone)]
pub struct Beverage {
    pub message_id: u64,
    pub beverage_type: String,
}

#[handler]
fn serve(beverage: Beverage, cx: Context) {
    println!(
        "[{}] :{} *serves another {}* (sent by {} as user {})",
        cx.node().name(),
        beverage.message_id,
        beverage.beverage_type,
        cx.sender().instance().unwrap_or("a Python instance"),
        cx.sender().account(),
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

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn required(name: &str) -> String {
    env(name).unwrap_or_else(|| {
        eprintln!("set {name} (see the top of examples/sechat.rs)");
        std::process::exit(2)
    })
}

#[tokio::main]
async fn main() -> socketscience::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    let host = env("SECHAT_HOST").unwrap_or_else(|| "stackexchange.com".into());
    let room: u64 = required("SECHAT_ROOM").parse().unwrap_or_else(|_| {
        eprintln!("SECHAT_ROOM must be a room number");
        std::process::exit(2)
    });
    let codec = match env("SECHAT_CODEC").as_deref() {
        Some("msgpack" | "messagepack") => Codec::MessagePack,
        _ => Codec::Json,
    };

    let mut nodes = Vec::new();
    for name in ["Henders/EC2", "teward/vps", "Undo/laptop"] {
        // Each instance logs in on its own, as separate hosts would; all as
        // the one bot account.
        let mut chat = StackExchangeChat::builder(host.as_str(), room);
        if let (Some(email), Some(password)) = (env("SECHAT_EMAIL"), env("SECHAT_PASSWORD")) {
            chat = chat.credentials(email, password);
        }
        if let Some(cookies) = env("SECHAT_COOKIES") {
            chat = chat.cookie_file(cookies);
        }
        let chat = chat.connect().await?;
        println!(
            "{name}: logged in as {} (user {}) in room {}",
            chat.user_name(),
            chat.user_id(),
            chat.room()
        );
        nodes.push(
            Node::builder(name)
                .transport(chat)
                .codec(codec)
                .start()
                .await?,
        );
    }

    // The commands reach the first instance (the default node).
    on_command("!!/coffee", 42)?;
    on_command("!!/tea", 43)?;

    // Give the chat time to carry the posts to every instance.
    let expected = 2 * nodes.len() as u64;
    for _ in 0..300 {
        if nodes.iter().map(|n| n.stats().dispatched).sum::<u64>() >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for node in &nodes {
        node.shutdown().await?;
    }
    let served: u64 = nodes.iter().map(|n| n.stats().dispatched).sum();
    println!("{served} servings by {} instances", nodes.len());
    Ok(())
}
