use socketscience::{handler, message, Context};

#[message("ping")]
pub struct Ping {
    pub location: String,
}

#[handler]
fn on_ping(ping: Ping, cx: Context, verbose: bool) {
    let _ = (ping, cx, verbose);
}

fn main() {}
