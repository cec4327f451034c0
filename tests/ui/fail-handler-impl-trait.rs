use socketscience::{handler, Message};

#[handler]
fn on_any(message: impl Message) {
    let _ = message;
}

fn main() {}
