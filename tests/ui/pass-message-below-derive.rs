use socketscience::{message, Message};

// `#[message]` below other attributes works too.
#[derive(Debug, Clone, PartialEq)]
#[message("ping")]
pub struct Ping {
    pub location: String,
}

fn main() {
    assert_eq!(<Ping as Message>::KIND, "ping");
    let ping = Ping {
        location: "Henders/EC2".into(),
    };
    assert_eq!(ping.clone(), ping);
}
