use socketscience::{handler, message, Context};

#[message("ping")]
pub struct Ping {
    pub location: String,
}

#[handler]
fn sync_message(ping: Ping) {
    let _ = ping.location;
}

#[handler]
fn sync_context(ping: Ping, cx: Context) {
    let _ = (ping.location, cx.node().name().to_owned());
}

#[handler]
async fn async_message(ping: Ping) {
    tokio::task::yield_now().await;
    let _ = ping.location;
}

#[handler]
async fn async_context(ping: Ping, cx: Context) {
    tokio::task::yield_now().await;
    let _ = (ping.location, cx.sender().account().to_owned());
}

#[handler]
fn explicit_unit(ping: Ping) -> () {
    let _ = ping.location;
}

// Paths and patterns are fine.
#[handler]
fn qualified(crate::Ping { location }: crate::Ping, cx: socketscience::Context) {
    let _ = (location, cx);
}

fn main() {
    // The functions stay callable as written.
    sync_message(Ping {
        location: "Henders/EC2".into(),
    });
    explicit_unit(Ping {
        location: "Henders/EC2".into(),
    });
    let _ = (sync_context, async_message, async_context, qualified);
}
