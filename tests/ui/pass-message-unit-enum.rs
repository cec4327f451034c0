use socketscience::{message, Message};

#[message("metasmoke_state")]
#[serde(rename_all = "lowercase")]
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MetasmokeState {
    Up,
    Down,
}

fn main() {
    assert_eq!(<MetasmokeState as Message>::KIND, "metasmoke_state");
    assert_ne!(MetasmokeState::Up, MetasmokeState::Down);
}
