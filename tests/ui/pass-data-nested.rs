// A message holding `#[data]` types compiles without serde in scope: the
// derive `#[data]` adds goes through socketscience's own serde, and
// `#[serde(...)]` attributes on the nested types keep working.
use socketscience::{data, message, Message};

// A local module named like the crate does not capture the expansion.
#[allow(dead_code)]
mod serde {}

#[data]
#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    #[serde(rename = "where")]
    pub host: String,
    pub region: Region,
}

#[data]
#[serde(rename_all = "lowercase")]
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Region {
    Eu,
    Us,
}

#[data]
pub struct Pair<T>(pub T, pub T);

#[data]
pub struct Marker;

#[message("located")]
pub struct Located {
    pub location: Location,
    pub span: Pair<Region>,
    pub marker: Marker,
}

fn main() {
    let located = Located {
        location: Location {
            host: "Henders/EC2".into(),
            region: Region::Eu,
        },
        span: Pair(Region::Eu, Region::Us),
        marker: Marker,
    };
    assert_eq!(<Located as Message>::KIND, "located");
    assert_eq!(located.location.region, Region::Eu);
    assert_eq!(located.span.1, Region::Us);
}
