use socketscience::{handler, message};

#[message("coffee")]
pub struct Coffee;

// A handler has one mode.
#[handler(active, active)]
fn serve(cup: Coffee) {
    let _ = cup;
}

fn main() {}
