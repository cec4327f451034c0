//! [`IrcChat`] as a [`Transport`]: what it tells the node (its account,
//! the text budget of a line, single-line frames), the checks of its
//! settings before the node starts, and the driver it runs.

use super::driver::Driver;
use super::{IrcChat, Sasl, LINE_LIMIT};
use crate::error::{Error, Result};
use crate::transport::{BoxFuture, Transport, TransportIo};
use crate::wire::LineMode;

fn valid_nick(nick: &str) -> bool {
    let special = |b: u8| b"[]\\`_^{|}".contains(&b);
    let mut bytes = nick.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || special(b))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'-' || special(b))
}

fn valid_channel(channel: &str) -> bool {
    channel.len() > 1
        && channel.starts_with(['#', '&'])
        && !channel.contains([' ', ',', '\x07', '\r', '\n', '\0'])
}

impl Transport for IrcChat {
    /// The nick; with [`sasl`](IrcChat::sasl), the account; with
    /// [`sasl_external`](IrcChat::sasl_external), none (empty: trusted by
    /// no default).
    fn account(&self) -> &str {
        match &self.sasl {
            None => &self.nick,
            Some(Sasl::Plain { account, .. }) => account,
            Some(Sasl::External { .. }) => "",
        }
    }

    /// Always: `start` fails on what reconnecting cannot mend (a
    /// certificate, a login).
    fn connects_before_start(&self) -> bool {
        true
    }

    /// Each connection has its own nick.
    fn account_per_instance(&self) -> bool {
        true
    }

    fn max_message_len(&self) -> usize {
        LINE_LIMIT.saturating_sub(self.overhead())
    }

    fn lines(&self) -> LineMode {
        LineMode::Single
    }

    /// Every setting, before the node starts: `start` fails with
    /// [`Error::InvalidOption`] naming the `IrcChat` method to change.
    fn check(&self) -> Result<()> {
        let invalid =
            |option: &'static str, reason: String| Err(Error::InvalidOption { option, reason });
        let bad_char = |s: &str| s.contains(['\r', '\n', '\0']);
        if self.server.is_empty() || bad_char(&self.server) {
            return invalid(
                "IrcChat::new",
                format!(
                    "the server address {:?} is not a host and port: give one such as \
                     \"irc.example.net:6667\"",
                    self.server
                ),
            );
        }
        if !valid_nick(&self.nick) {
            return invalid(
                "IrcChat::new",
                format!(
                    "the nick {:?} is not a valid IRC nick: give one that starts with a \
                     letter or one of `[]\\`_^{{|}}`, then letters, digits, `-` or those",
                    self.nick
                ),
            );
        }
        if !valid_channel(&self.channel) {
            return invalid(
                "IrcChat::new",
                format!(
                    "the channel {:?} is not a channel name: give one that starts with \
                     `#` or `&` and has no space, comma or control character",
                    self.channel
                ),
            );
        }
        if self.username.is_empty()
            || !self
                .username
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'@')
        {
            return invalid(
                "IrcChat::username",
                format!(
                    "the user name {:?} must be printable ASCII without a space or `@`",
                    self.username
                ),
            );
        }
        for (option, what, value) in [
            ("IrcChat::password", "password", self.password.as_deref()),
            (
                "IrcChat::channel_key",
                "channel key",
                self.channel_key.as_deref(),
            ),
            (
                "IrcChat::realname",
                "real name",
                Some(self.realname.as_str()),
            ),
        ] {
            if value.is_some_and(|v| bad_char(v) || (what != "real name" && v.contains(' '))) {
                let allowed = if what == "real name" {
                    "a line break"
                } else {
                    "a space or a line break"
                };
                return invalid(option, format!("the {what} must not hold {allowed}"));
            }
        }
        match &self.sasl {
            Some(Sasl::Plain { account, password })
                if account.is_empty()
                    || password.is_empty()
                    || bad_char(account)
                    || account.contains(' ') =>
            {
                return invalid(
                    "IrcChat::sasl",
                    "the account and the password must not be empty, and the account must \
                     not hold a space or a line break"
                        .into(),
                );
            }
            Some(Sasl::External { .. }) if !self.tls => {
                return invalid(
                    "IrcChat::sasl_external",
                    "SASL EXTERNAL logs in with the TLS client certificate: call \
                     IrcChat::tls too"
                        .into(),
                );
            }
            _ => {}
        }
        if !(self.rate.is_finite() && self.rate > 0.0) || self.burst == 0 {
            return invalid(
                "IrcChat::send_rate",
                format!(
                    "send_rate({}, {}): the rate must be above 0 and the burst at least 1",
                    self.rate, self.burst
                ),
            );
        }
        if self.resend_window == 0 {
            return invalid("IrcChat::resend_window", "it must be at least 1".into());
        }
        if self.backoff_initial.is_zero() || self.backoff_max < self.backoff_initial {
            return invalid(
                "IrcChat::reconnect_backoff",
                format!(
                    "reconnect_backoff({:?}, {:?}): initial must be above 0 and max at \
                     least initial",
                    self.backoff_initial, self.backoff_max
                ),
            );
        }
        Ok(())
    }

    fn run(self: Box<Self>, io: TransportIo) -> BoxFuture<Result<()>> {
        Box::pin(async move { Driver::new(*self, io).run().await })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::transport::irc::MAX_ALTERNATE_NICKS;

    #[test]
    fn the_text_budget_leaves_room_for_the_relayed_prefix() {
        let chat = IrcChat::new("127.0.0.1:6667", "smokey-henders", "#smokey");
        let text = chat.max_message_len();
        let nick = format!("smokey-henders{}", "_".repeat(MAX_ALTERNATE_NICKS));
        let relayed = format!(
            ":{nick}!~socketsci@{} PRIVMSG #smokey :{}\r\n",
            "h".repeat(63),
            "x".repeat(text)
        );
        assert_eq!(relayed.len(), LINE_LIMIT);
        assert_eq!(
            IrcChat::new("s:1", "n", "#c")
                .max_host_len(10)
                .max_message_len(),
            LINE_LIMIT - ":n___!~socketsci@ PRIVMSG #c :\r\n".len() - 10
        );
    }

    #[test]
    fn settings_are_checked() {
        let ok = || IrcChat::new("127.0.0.1:6667", "smokey-a", "#smokey");
        assert!(ok().check().is_ok());
        assert!(ok().password("sekrit").channel_key("k").check().is_ok());
        for bad in [
            IrcChat::new("", "smokey", "#c"),
            IrcChat::new("h:1", "", "#c"),
            IrcChat::new("h:1", "1smokey", "#c"),
            IrcChat::new("h:1", "smo key", "#c"),
            IrcChat::new("h:1", "smokey", "smokey"),
            IrcChat::new("h:1", "smokey", "#a,#b"),
            ok().password("two words"),
            ok().send_rate(0.0, 5),
            ok().send_rate(f64::NAN, 5),
            ok().send_rate(1.0, 0),
            ok().resend_window(0),
            ok().username("a@b"),
            ok().reconnect_backoff(Duration::ZERO, Duration::from_secs(1)),
        ] {
            let err = bad.check().expect_err(&format!("{bad:?}"));
            assert!(
                matches!(
                    err,
                    Error::InvalidOption { option, .. } if option.starts_with("IrcChat::")
                ),
                "{err}"
            );
        }
    }
}
