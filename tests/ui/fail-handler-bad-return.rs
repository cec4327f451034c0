use socketscience::{handler, message};

#[message("ping")]
pub struct Ping {
    pub location: String,
}

#[handler]
fn on_ping(ping: Ping) -> bool {
    !ping.location.is_empty()
}

fn main() {}
