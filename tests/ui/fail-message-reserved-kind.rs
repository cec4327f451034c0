use socketscience::message;

#[message("_seq")]
pub struct Sequence {
    pub n: u64,
}

fn main() {}
