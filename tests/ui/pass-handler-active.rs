//! `#[handler(active)]` takes every shape `#[handler]` takes, and a
//! node without failover refuses to start while one is in the program.

use socketscience::{handler, message, Context, Error, LocalChat, Node};

#[message("coffee")]
pub struct Coffee;

#[message("tea")]
pub struct Tea;

#[handler(active)]
fn serve(cup: Coffee) {
    let _ = cup;
}

#[handler(active)]
async fn serve_tea(cup: Tea, cx: Context) -> Result<(), String> {
    let _ = (cup, cx.node().name());
    Ok(())
}

#[handler(active,)]
fn trailing_comma(cup: Coffee, cx: Context) {
    let _ = (cup, cx);
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let chat = LocalChat::new();
        let err = Node::builder("alone")
            .transport(chat.join("smokey"))
            .start()
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidOption { option: "failover", .. }));
        assert!(err.to_string().contains("Failover::new()"), "{err}");
    });
}
