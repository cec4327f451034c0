use socketscience::message;

#[message(kind = "ping")]
pub struct Ping {
    pub location: String,
}

fn main() {}
