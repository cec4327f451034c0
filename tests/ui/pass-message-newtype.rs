use socketscience::{message, Message};

#[message("heartbeat")]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Heartbeat(pub f64);

fn main() {
    assert_eq!(<Heartbeat as Message>::KIND, "heartbeat");
    assert_eq!(Heartbeat(12.5).0, 12.5);
}
