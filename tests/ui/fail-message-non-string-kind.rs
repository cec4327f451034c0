use socketscience::message;

#[message(ping)]
pub struct Ping {
    pub location: String,
}

fn main() {}
