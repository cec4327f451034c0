use socketscience::handler;

#[handler]
fn on_nothing() {}

fn main() {}
