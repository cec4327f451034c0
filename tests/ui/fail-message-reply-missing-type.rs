use socketscience::message;

#[message("where_are_you", reply =)]
pub struct WhereAreYou;

fn main() {}
