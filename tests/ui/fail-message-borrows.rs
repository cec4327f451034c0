use socketscience::message;

#[message("ping")]
pub struct Ping<'a> {
    pub location: &'a str,
}

fn main() {}
