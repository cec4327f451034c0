use socketscience::data;

#[data]
fn location() {}

fn main() {}
