use socketscience::handler;

pub struct Ping {
    pub location: String,
}

#[handler]
fn on_ping(ping: Ping) {
    let _ = ping;
}

fn main() {}
