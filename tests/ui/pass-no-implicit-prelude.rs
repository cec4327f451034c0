// The expansions name everything by absolute path: they compile without
// the prelude and next to local items named like std's.
//
// Not covered: a `(M, Context)` handler. Its expansion checks the second
// parameter with a local trait carrying `#[diagnostic::on_unimplemented]`,
// and rustc cannot resolve the `diagnostic::` attribute namespace (nor any
// tool attribute, e.g. `rustfmt::skip`) under `#![no_implicit_prelude]`.
#![no_implicit_prelude]

use ::socketscience::{handler, message};
use ::std::string::String;

#[allow(dead_code)]
struct Result;
#[allow(dead_code)]
struct Box;
#[allow(dead_code)]
mod core {}

#[message("ping")]
pub struct Ping {
    pub location: String,
}

#[message("state")]
pub enum State {
    Up,
    Down,
}

#[handler]
fn on_ping(ping: Ping) {
    let _ = ping.location;
}

#[handler]
async fn on_state(state: State) -> ::std::result::Result<(), String> {
    let _ = ::std::matches!(state, State::Up | State::Down);
    ::std::result::Result::Ok(())
}

fn main() {
    ::std::assert_eq!(<Ping as ::socketscience::Message>::KIND, "ping");
    let _ = (on_ping, on_state);
}
