use socketscience::{handler, message};

#[message("ping")]
pub struct Ping {
    pub location: String,
}

#[handler]
fn on_ping(ping: Ping, verbose: bool) {
    let _ = (ping, verbose);
}

fn main() {}
