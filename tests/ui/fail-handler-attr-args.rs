use socketscience::{handler, message};

#[message("ping")]
pub struct Ping {
    pub location: String,
}

#[handler("ping")]
fn on_ping(ping: Ping) {
    let _ = ping;
}

fn main() {}
