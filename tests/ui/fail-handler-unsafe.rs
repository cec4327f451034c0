use socketscience::{handler, message};

#[message("ping")]
#[derive(Debug, Clone)]
pub struct Ping(pub u32);

#[handler]
unsafe fn on_ping(ping: Ping) {
    let _ = ping;
}

fn main() {}
