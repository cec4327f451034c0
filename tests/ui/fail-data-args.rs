use socketscience::data;

#[data("location")]
pub struct Location {
    pub host: String,
}

fn main() {}
