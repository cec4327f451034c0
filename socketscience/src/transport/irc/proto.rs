//! The IRC protocol, as far as the transport speaks it: lines split as
//! RFC 2812 (with IRCv3 tags), RFC 1459 case mapping, lines written, and
//! the bytes read from the server split into bounded lines.

use tracing::debug;

use super::LINE_LIMIT;

/// The longest line read from the server: 512 bytes plus IRCv3 tags.
const MAX_INCOMING_LINE: usize = 8_191 + LINE_LIMIT;

/// One line from the server, split as RFC 2812 2.3.1 (with IRCv3 tags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct IrcLine<'a> {
    pub(super) tags: Option<&'a str>,
    pub(super) prefix: Option<&'a str>,
    pub(super) command: &'a str,
    pub(super) params: Vec<&'a str>,
}

impl<'a> IrcLine<'a> {
    /// Parses one line (without its line ending). `None` if it has no
    /// command; never panics.
    pub(super) fn parse(line: &'a str) -> Option<IrcLine<'a>> {
        let mut rest = line.trim_end_matches(['\r', '\n']).trim_start_matches(' ');
        let mut tags = None;
        if let Some(after) = rest.strip_prefix('@') {
            let (t, after) = after.split_once(' ')?;
            tags = Some(t);
            rest = after.trim_start_matches(' ');
        }
        let mut prefix = None;
        if let Some(after) = rest.strip_prefix(':') {
            let (p, after) = after.split_once(' ')?;
            prefix = Some(p);
            rest = after.trim_start_matches(' ');
        }
        let (command, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
        if command.is_empty() || !command.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        let mut params = Vec::new();
        loop {
            rest = rest.trim_start_matches(' ');
            if rest.is_empty() {
                break;
            }
            if let Some(trailing) = rest.strip_prefix(':') {
                params.push(trailing);
                break;
            }
            match rest.split_once(' ') {
                Some((param, after)) => {
                    params.push(param);
                    rest = after;
                }
                None => {
                    params.push(rest);
                    break;
                }
            }
        }
        Some(IrcLine {
            tags,
            prefix,
            command,
            params,
        })
    }

    /// The nick of the prefix (`nick!user@host`), if the prefix is a user's.
    pub(super) fn nick(&self) -> Option<&'a str> {
        let prefix = self.prefix?;
        let nick = prefix.split(['!', '@']).next().unwrap_or(prefix);
        (!nick.is_empty()).then_some(nick)
    }

    /// The value of the IRCv3 tag `key`, unescaped; `None` if the line
    /// does not carry it or carries it empty.
    pub(super) fn tag(&self, key: &str) -> Option<String> {
        let raw = self.tags?.split(';').find_map(|t| {
            let (k, v) = t.split_once('=').unwrap_or((t, ""));
            (k == key).then_some(v)
        })?;
        let mut value = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                value.push(c);
                continue;
            }
            match chars.next() {
                Some(':') => value.push(';'),
                Some('s') => value.push(' '),
                Some('r') => value.push('\r'),
                Some('n') => value.push('\n'),
                Some(other) => value.push(other),
                None => {}
            }
        }
        (!value.is_empty()).then_some(value)
    }

    pub(super) fn param(&self, i: usize) -> &'a str {
        self.params.get(i).copied().unwrap_or("")
    }

    pub(super) fn last(&self) -> &'a str {
        self.params.last().copied().unwrap_or("")
    }
}

/// Lowercases as RFC 1459 case mapping does (`[]\~` are the uppercase of
/// `{}|^`), which is what servers use for nicks and channels by default.
pub(super) fn irc_lower(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '[' => '{',
            ']' => '}',
            '\\' => '|',
            '~' => '^',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

pub(super) fn same_name(a: &str, b: &str) -> bool {
    a.len() == b.len() && irc_lower(a) == irc_lower(b)
}

/// Whether a server's reason for a kick, kill or disconnect says we flooded.
pub(super) fn is_flood_reason(reason: &str) -> bool {
    let reason = reason.to_ascii_lowercase();
    [
        "flood",
        "excess",
        "sendq",
        "recvq",
        "receive buffer",
        "throttl",
    ]
    .iter()
    .any(|w| reason.contains(w))
}

/// Splits the bytes read from the server into lines, bounded: a line
/// longer than [`MAX_INCOMING_LINE`] is dropped, not buffered.
#[derive(Debug, Default)]
pub(super) struct LineBuffer {
    pub(super) buf: Vec<u8>,
    /// Scanned so far without finding a line end.
    scanned: usize,
    /// Inside an overlong line: drop everything up to the next line end.
    discarding: bool,
}

impl LineBuffer {
    /// The next complete line, without its line ending.
    pub(super) fn next_line(&mut self) -> Option<String> {
        loop {
            match self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
                Some(at) => {
                    let end = self.scanned + at;
                    let line: Vec<u8> = self.buf.drain(..=end).collect();
                    self.scanned = 0;
                    if std::mem::take(&mut self.discarding) || line.len() > MAX_INCOMING_LINE + 2 {
                        debug!(
                            bytes = line.len(),
                            "dropped an overlong line from the IRC server"
                        );
                        continue;
                    }
                    let text = String::from_utf8_lossy(&line);
                    return Some(text.trim_end_matches(['\r', '\n']).to_owned());
                }
                None => {
                    if self.buf.len() > MAX_INCOMING_LINE + 2 {
                        self.buf.clear();
                        self.discarding = true;
                    }
                    self.scanned = self.buf.len();
                    return None;
                }
            }
        }
    }
}

/// Appends `line` and its CR LF to what is to be written.
pub(super) fn push_line(out: &mut Vec<u8>, line: &str) {
    out.extend_from_slice(line.as_bytes());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_shapes_servers_send() {
        let m = IrcLine::parse(":nick!user@host PRIVMSG #chan :hello there").unwrap();
        assert_eq!(m.prefix, Some("nick!user@host"));
        assert_eq!(m.nick(), Some("nick"));
        assert_eq!(m.command, "PRIVMSG");
        assert_eq!(m.params, ["#chan", "hello there"]);

        let m = IrcLine::parse("PING :irc.example.net").unwrap();
        assert_eq!(
            (m.prefix, m.command, m.params.as_slice()),
            (None, "PING", &["irc.example.net"][..])
        );

        let m =
            IrcLine::parse("@time=2024-01-01T00:00:00Z;msgid=x :s 353 me = #c :@op +v plain\r\n")
                .unwrap();
        assert_eq!(m.tags, Some("time=2024-01-01T00:00:00Z;msgid=x"));
        assert_eq!(m.command, "353");
        assert_eq!(m.params, ["me", "=", "#c", "@op +v plain"]);

        // Extra spaces, a trailing that starts with ':' and is empty.
        let m = IrcLine::parse(":s  001   me  :").unwrap();
        assert_eq!(m.params, ["me", ""]);
        let m = IrcLine::parse(":n!u@h PRIVMSG #c ::colon").unwrap();
        assert_eq!(m.params, ["#c", ":colon"]);
        // No trailing marker: the last middle parameter.
        let m = IrcLine::parse(":n!u@h JOIN #c").unwrap();
        assert_eq!((m.nick(), m.params.as_slice()), (Some("n"), &["#c"][..]));
        // A server prefix has no nick part to speak of, but reads as one.
        let m = IrcLine::parse(":irc.example.net NOTICE * :hi").unwrap();
        assert_eq!(m.nick(), Some("irc.example.net"));
        // Frames keep their control characters.
        let m = IrcLine::parse(":a!b@c PRIVMSG #c :\u{2}1234QUJD\u{3}").unwrap();
        assert_eq!(m.params[1], "\u{2}1234QUJD\u{3}");
    }

    #[test]
    fn refuses_lines_without_a_command_and_never_panics() {
        for line in [
            "",
            " ",
            ":prefix-only",
            "@tags-only",
            "@t :p",
            ":p :x",
            "Ä",
            "PRIV MSG",
            ":x !cmd a",
        ] {
            let parsed = IrcLine::parse(line);
            assert!(parsed.is_none_or(|m| !m.command.is_empty()), "{line:?}");
        }
        assert!(IrcLine::parse(":p !x").is_none());
        // Arbitrary bytes as lossy text.
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..2_000 {
            let len = rng.usize(0..64);
            let bytes: Vec<u8> = (0..len)
                .map(|_| *rng.choice(b" :@!#\r\nAZaz09\x01\x02").unwrap())
                .collect();
            let line = String::from_utf8_lossy(&bytes);
            let _ = IrcLine::parse(&line);
        }
    }

    #[test]
    fn tags_are_found_and_unescaped() {
        let m = IrcLine::parse("@time=x;account=smokey :n!u@h PRIVMSG #c :hi").unwrap();
        assert_eq!(m.tag("account").as_deref(), Some("smokey"));
        assert_eq!(m.tag("acc"), None);
        let m = IrcLine::parse(r"@account=a\sb\:c\\d;x :n!u@h PRIVMSG #c :hi").unwrap();
        assert_eq!(m.tag("account").as_deref(), Some("a b;c\\d"));
        assert_eq!(m.tag("x"), None);
        let m = IrcLine::parse("@account= :n!u@h PRIVMSG #c :hi").unwrap();
        assert_eq!(m.tag("account"), None);
        assert_eq!(
            IrcLine::parse(":n!u@h PRIVMSG #c :hi")
                .unwrap()
                .tag("account"),
            None
        );
    }

    #[test]
    fn case_mapping_is_rfc1459() {
        assert_eq!(irc_lower("Smokey[A]\\~"), "smokey{a}|^");
        assert!(same_name("#SmOkEy", "#smokey"));
        assert!(!same_name("#smokey", "#smokey2"));
    }

    #[test]
    fn line_buffer_splits_and_bounds_lines() {
        let mut lines = LineBuffer::default();
        lines.buf.extend_from_slice(b"PING :a\r\nPING :b\npartial");
        assert_eq!(lines.next_line().as_deref(), Some("PING :a"));
        assert_eq!(lines.next_line().as_deref(), Some("PING :b"));
        assert_eq!(lines.next_line(), None);
        lines.buf.extend_from_slice(b" line\r\n");
        assert_eq!(lines.next_line().as_deref(), Some("partial line"));

        // An overlong line is dropped, in pieces, and what follows is read.
        lines
            .buf
            .extend(std::iter::repeat_n(b'x', MAX_INCOMING_LINE + 10));
        assert_eq!(lines.next_line(), None);
        assert!(lines.buf.is_empty());
        lines.buf.extend_from_slice(b"xxxx\r\nPING :c\r\n");
        assert_eq!(lines.next_line().as_deref(), Some("PING :c"));
        // Invalid UTF-8 is replaced, not refused.
        lines.buf.extend_from_slice(b"PRIVMSG #c :\xff\r\n");
        assert_eq!(lines.next_line().as_deref(), Some("PRIVMSG #c :\u{fffd}"));
    }

    #[test]
    fn flood_reasons_are_recognised() {
        for reason in [
            "Excess Flood",
            "Max SendQ exceeded",
            "Receive buffer space exhausted",
            "flooding",
        ] {
            assert!(is_flood_reason(reason), "{reason}");
        }
        for reason in [
            "Ping timeout: 120 seconds",
            "Client closed connection",
            "Server going down",
        ] {
            assert!(!is_flood_reason(reason), "{reason}");
        }
    }
}
