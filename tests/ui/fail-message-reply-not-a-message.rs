use socketscience::message;

pub struct Location {
    pub name: String,
}

#[message("where_are_you", reply = Location)]
pub struct WhereAreYou;

fn main() {}
