use socketscience::{handler, message};

#[message("coffee")]
pub struct Coffee;

// A misspelt mode, and an argument with a value: both reported at once.
#[handler(activ, active = true)]
fn serve(cup: Coffee) {
    let _ = cup;
}

fn main() {}
