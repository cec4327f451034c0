use std::fmt;

use socketscience::{handler, message, Context};

#[message("ping")]
pub struct Ping {
    pub location: String,
}

#[derive(Debug)]
pub struct MyError(String);

impl fmt::Display for MyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot serve: {}", self.0)
    }
}

#[handler]
fn sync_result(ping: Ping) -> Result<(), MyError> {
    if ping.location.is_empty() {
        return Err(MyError("no location".into()));
    }
    Ok(())
}

#[handler]
async fn async_result(ping: Ping, cx: Context) -> Result<(), MyError> {
    let _ = cx.node().name();
    Err(MyError(ping.location))
}

#[handler]
fn socketscience_result(ping: Ping) -> socketscience::Result<()> {
    let _ = ping;
    Ok(())
}

#[handler]
fn string_error(ping: Ping) -> Result<(), String> {
    Err(ping.location)
}

fn main() {
    assert!(sync_result(Ping {
        location: String::new()
    })
    .is_err());
    assert!(sync_result(Ping {
        location: "Henders/EC2".into()
    })
    .is_ok());
    let _ = (async_result, socketscience_result, string_error);
}
