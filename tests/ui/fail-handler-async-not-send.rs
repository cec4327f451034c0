use std::rc::Rc;

use socketscience::{handler, message};

#[message("ping")]
pub struct Ping {
    pub location: String,
}

async fn log(line: String) {
    let _ = line;
}

#[handler]
async fn on_ping(ping: Ping) {
    let shared = Rc::new(ping.location);
    log(shared.to_string()).await;
    let _ = shared;
}

fn main() {}
