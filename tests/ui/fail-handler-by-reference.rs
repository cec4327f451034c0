use socketscience::{handler, message};

#[message("ping")]
pub struct Ping {
    pub location: String,
}

#[handler]
fn on_ping(ping: &Ping) {
    let _ = &ping.location;
}

fn main() {}
