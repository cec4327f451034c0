use socketscience::{message, Message};

#[message("ping")]
#[derive(Debug, Clone, PartialEq)]
pub struct Ping {
    pub location: String,
    pub timestamp: f64,
}

fn main() {
    assert_eq!(<Ping as Message>::KIND, "ping");
    let ping = Ping {
        location: "Henders/EC2".into(),
        timestamp: 1.0,
    };
    assert_eq!(ping.clone(), ping);
}
