use socketscience::{handler, Message};

#[handler]
fn on_any<M: Message>(message: M) {
    let _ = message;
}

fn main() {}
