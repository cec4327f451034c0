use socketscience::{handler, message};

#[message("coffee")]
pub struct Coffee;

// The mode is right; the shape is not: the same errors as `#[handler]`.
#[handler(active)]
fn serve(cup: &Coffee) {
    let _ = cup;
}

fn main() {}
