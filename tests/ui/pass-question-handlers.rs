use socketscience::{handler, message, Context};
use socketscience::ask::Question;

#[message("where_are_you", reply = Location)]
pub struct WhereAreYou;

#[message("location")]
pub struct Location {
    pub name: String,
}

#[handler]
fn plain(_: WhereAreYou, cx: Context) -> Location {
    Location { name: cx.node().name().into() }
}

#[handler]
fn maybe(_: WhereAreYou) -> Option<Location> {
    None
}

#[handler]
async fn fallible(_: WhereAreYou) -> Result<Location, String> {
    Err("not here".into())
}

#[handler]
async fn fallible_maybe(_: WhereAreYou, _cx: Context) -> socketscience::Result<Option<Location>> {
    Ok(None)
}

/// A question's handler may also answer nothing at all.
#[handler]
fn silent(_: WhereAreYou) {}

fn kind<Q: Question>() -> &'static str {
    <Q::Reply as socketscience::Message>::KIND
}

fn main() {
    assert_eq!(kind::<WhereAreYou>(), "location");
    let _ = (plain, maybe, fallible, fallible_maybe, silent);
}
