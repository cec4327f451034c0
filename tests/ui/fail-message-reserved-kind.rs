use socketscience::{handler, message};

#[message("_seq")]
pub struct Sequence {
    pub n: u64,
}

// Uses of the type do not cascade into more errors.
#[handler]
fn on_sequence(sequence: Sequence) {
    let _ = sequence.n;
}

fn main() {
    let _ = Sequence { n: 1 }.broadcast();
}
