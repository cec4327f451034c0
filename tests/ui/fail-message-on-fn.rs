use socketscience::message;

#[message("ping")]
pub fn ping() {}

fn main() {}
