use socketscience::message;

#[message("")]
pub struct Ping {
    pub location: String,
}

fn main() {}
