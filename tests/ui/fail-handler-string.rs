use socketscience::handler;

// A standard type is not this crate's to mark `#[message]`: the error says
// to wrap it in a newtype.
#[handler]
fn on_text(text: String) {
    let _ = text;
}

#[handler]
async fn on_number(n: u64, cx: socketscience::Context) {
    let _ = (n, cx);
}

fn main() {}
