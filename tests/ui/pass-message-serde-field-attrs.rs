use socketscience::{message, Message};

#[message("status")]
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    #[serde(rename = "where")]
    pub location: String,
    #[serde(default)]
    pub standby: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

fn main() {
    assert_eq!(<Status as Message>::KIND, "status");
    let s = Status {
        location: "Henders/EC2".into(),
        standby: false,
        note: None,
    };
    assert!(!s.standby && s.note.is_none() && !s.location.is_empty());
}
