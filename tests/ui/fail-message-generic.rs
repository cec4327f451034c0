use socketscience::message;

#[message("wrapped")]
pub struct Wrapped<T> {
    pub value: T,
}

fn main() {}
