use socketscience::{handler, message};

#[message("ping")]
pub struct Ping {
    pub location: String,
}

#[derive(Debug)]
pub struct Failed;

#[handler]
fn on_ping(ping: Ping) -> Result<(), Failed> {
    let _ = ping;
    Err(Failed)
}

fn main() {}
