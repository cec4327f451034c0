//! A user crate with strict lints: what `#[message]` and `#[handler]`
//! generate must not trip them.
#![deny(
    missing_docs,
    dead_code,
    unused,
    unused_qualifications,
    unreachable_pub
)]
#![deny(missing_debug_implementations, trivial_casts, unused_results)]
#![deny(rust_2018_idioms, unsafe_code, single_use_lifetimes, unused_lifetimes)]

use socketscience::{handler, message};

/// Tells the fleet an instance is alive.
#[message("ping")]
#[derive(Debug)]
pub struct Ping {
    /// Where the instance runs.
    pub location: String,
}

/// The state of metasmoke.
#[message("metasmoke_state")]
#[derive(Debug)]
pub enum MetasmokeState {
    /// Reachable.
    Up,
    /// Unreachable.
    Down,
}

#[handler]
fn on_ping(ping: Ping) {
    let _ = ping.location;
}

#[handler]
async fn on_state(state: MetasmokeState) {
    let _ = matches!(state, MetasmokeState::Up | MetasmokeState::Down);
}

fn main() {
    let _ = Ping {
        location: "Henders/EC2".into(),
    }
    .broadcast();
    let _ = MetasmokeState::Down.broadcast();
    let _ = on_ping;
    let _ = on_state;
}
