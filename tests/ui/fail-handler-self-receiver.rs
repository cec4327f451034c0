use socketscience::{handler, message};

#[message("ping")]
pub struct Ping {
    pub location: String,
}

pub struct Bot;

impl Bot {
    #[handler]
    fn on_ping(&self, ping: Ping) {
        let _ = ping;
    }
}

fn main() {}
