use socketscience::{message, Error};

#[message("beverage")]
pub struct Beverage {
    pub message_id: u64,
    pub beverage_type: String,
}

/// A plain, sync function: no trait import, no node in hand.
fn on_command(command: &str, message_id: u64) -> socketscience::Result<()> {
    if let Some(drink) = command.strip_prefix("!!/") {
        Beverage {
            message_id,
            beverage_type: drink.to_owned(),
        }
        .broadcast()?;
    }
    Ok(())
}

fn main() {
    // No node runs in this program: the error says so.
    assert!(matches!(
        on_command("!!/coffee", 42),
        Err(Error::NoDefaultNode)
    ));
    assert!(on_command("hello", 43).is_ok());
}
