// This crate has no `serde` dependency and imports nothing of serde: the
// derive `#[message]` adds goes through socketscience's own serde.
#![no_implicit_prelude]

use ::socketscience::message;
use ::std::string::String;

#[message("ping")]
pub struct Ping {
    pub location: String,
}

// A local item named like the crate must not capture the expansion.
#[allow(dead_code)]
mod serde {}

fn main() {
    let ping = Ping { location: ::std::string::ToString::to_string("Henders/EC2") };
    ::std::assert_eq!(<Ping as ::socketscience::Message>::KIND, "ping");
    ::std::assert!(!ping.location.is_empty());
}
