// This crate has no `serde` dependency and imports nothing of serde: the
// derive that `#[message]` adds goes through socketscience's own serde.
use socketscience::{message, Message};

// A local module named like the crate does not capture the expansion.
#[allow(dead_code)]
mod serde {}

#[message("ping")]
pub struct Ping {
    #[serde(rename = "where")]
    pub location: String,
}

fn main() {
    let ping = Ping {
        location: "Henders/EC2".into(),
    };
    assert_eq!(<Ping as Message>::KIND, "ping");
    assert!(!ping.location.is_empty());
}
