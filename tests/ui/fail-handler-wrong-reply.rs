use socketscience::{handler, message};

#[message("where_are_you", reply = Location)]
pub struct WhereAreYou;

#[message("location")]
pub struct Location {
    pub name: String,
}

#[message("version")]
pub struct Version(pub String);

#[handler]
fn answer(_: WhereAreYou) -> Version {
    Version("1.0".into())
}

fn main() {}
