use socketscience::{handler, message, Context};

#[message("ping")]
pub struct Ping {
    pub location: String,
}

#[handler]
fn on_ping(cx: Context, ping: Ping) {
    let _ = (cx, ping);
}

fn main() {}
