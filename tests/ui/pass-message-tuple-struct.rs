use socketscience::{message, Message};

#[message("position")]
#[derive(Debug, Clone, PartialEq)]
pub struct Position(pub String, pub u32);

#[message("reboot")]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reboot;

fn main() {
    assert_eq!(<Position as Message>::KIND, "position");
    assert_eq!(<Reboot as Message>::KIND, "reboot");
    let p = Position("Henders/EC2".into(), 3);
    assert_eq!(p.1, 3);
}
