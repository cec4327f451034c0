//! What the driver does with each line from the server: one function per
//! command or numeric reply, and the channel bookkeeping they share.

use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::{Conn, Driver, End, Phase, PING_TOKEN};
use crate::transport::irc::proto::{irc_lower, is_flood_reason, push_line, same_name, IrcLine};
use crate::transport::irc::{Sasl, LINE_LIMIT, MAX_ALTERNATE_NICKS};
use crate::transport::{ChatMessage, Transport};

impl Driver {
    /// Handles one line from the server. `Some` ends the connection.
    pub(super) async fn handle(
        &mut self,
        conn: &mut Conn,
        out: &mut Vec<u8>,
        line: &str,
    ) -> Option<End> {
        let now = Instant::now();
        conn.last_rx = now;
        let Some(msg) = IrcLine::parse(line) else {
            if !line.trim().is_empty() {
                debug!(line, "unreadable line from the IRC server");
            }
            return None;
        };
        let channel = self.cfg.channel.clone();
        let channel = channel.as_str();
        match msg.command.to_ascii_uppercase().as_str() {
            "PING" => push_line(out, &format!("PONG :{}", msg.last())),
            "PONG" => self.on_pong(conn, &msg, now),
            "PRIVMSG" if same_name(msg.param(0), channel) => self.on_privmsg(&msg).await,
            "001" => return self.on_welcome(conn, out, &msg, now),
            "CAP" => return self.on_cap(conn, out, &msg),
            "AUTHENTICATE" if msg.param(0) == "+" => self.on_authenticate(out),
            "900" => self.on_logged_in(&msg),
            // Logged in, or already.
            "903" | "907" => {
                conn.logged_in = true;
                push_line(out, "CAP END");
            }
            // Nick locked, login failed, too long, aborted, no such mechanism.
            "902" | "904" | "905" | "906" | "908" => return Some(self.sasl_refused(&msg)),
            // `421 nick CAP :Unknown command`: a server without CAP has no SASL.
            "421" if msg.param(1).eq_ignore_ascii_case("CAP") && self.cfg.sasl.is_some() => {
                return Some(End::Refused(format!(
                    "{} does not support IRCv3 capabilities, so it has no SASL login \
                     (IrcChat::sasl): it answered CAP with: {}",
                    self.cfg.server,
                    msg.last()
                )));
            }
            // Nick in use, or unavailable: try an alternate while registering.
            "433" | "436" | "437" if matches!(conn.phase, Phase::Registering { .. }) => {
                return self.on_nick_taken(conn, out);
            }
            "432" => return Some(self.on_nick_refused(conn, &msg)),
            "464" | "465" => {
                error!(node = %self.io.node_name(), reason = msg.last(), "the IRC server refuses us (password or ban)");
                conn.close_reason = Some(msg.last().to_owned());
            }
            "JOIN" if same_name(msg.param(0), channel) => self.on_join(conn, &msg, now),
            // `353 me = #channel :@op +voice nick`
            "353"
                if msg.params.len() >= 3 && same_name(msg.param(msg.params.len() - 2), channel) =>
            {
                self.on_names(conn, &msg);
            }
            "366"
                if same_name(msg.param(1), channel)
                    && matches!(conn.phase, Phase::Joining { .. }) =>
            {
                self.on_end_of_names(conn, now);
            }
            "PART" if same_name(msg.param(0), channel) => self.on_part(conn, &msg, now),
            "KICK" if same_name(msg.param(0), channel) => self.on_kick(conn, &msg, now),
            "QUIT" => self.on_quit(conn, &msg),
            "NICK" => self.on_nick(conn, &msg),
            "KILL" => {
                self.flood(msg.last());
                conn.close_reason = Some(format!("killed: {}", msg.last()));
            }
            "ERROR" => {
                self.flood(msg.last());
                conn.close_reason = Some(msg.last().to_owned());
            }
            // Cannot post to the channel (moderated, banned, not joined).
            "404" | "442" if same_name(msg.param(1), channel) && conn.phase == Phase::Ready => {
                let why = format!("the server refused a post: {}", msg.last());
                self.left_channel(conn, now, &why);
            }
            // Cannot join: full, invite only, banned, bad key, no such channel.
            "403" | "405" | "471" | "473" | "474" | "475" | "476" | "477"
                if matches!(conn.phase, Phase::Joining { .. }) =>
            {
                error!(node = %self.io.node_name(), channel = %self.cfg.channel, reason = msg.last(), "cannot join the IRC channel");
                let why = format!("cannot join: {}", msg.last());
                self.left_channel(conn, now, &why);
            }
            _ => {}
        }
        None
    }

    /// The answer to one of our `PING`s: it confirms every line posted
    /// before it.
    fn on_pong(&mut self, conn: &mut Conn, msg: &IrcLine<'_>, now: Instant) {
        let Some(id) = msg
            .last()
            .strip_prefix(PING_TOKEN)
            .and_then(|id| id.parse::<u64>().ok())
        else {
            return;
        };
        if conn.ping.is_some_and(|(out_id, _)| id >= out_id) {
            conn.ping = None;
        }
        for f in self.in_flight.iter_mut() {
            if f.cover > id {
                break;
            }
            f.confirmed.get_or_insert(now);
        }
    }

    /// A post in the channel: handed to the node with its sender's nick,
    /// or with SASL, with the account the server vouches for (empty, so
    /// untrusted, if none).
    async fn on_privmsg(&mut self, msg: &IrcLine<'_>) {
        let Some(nick) = msg.nick() else { return };
        let text = msg.param(1);
        let message = if self.cfg.sasl.is_some() {
            ChatMessage::new(msg.tag("account").unwrap_or_default(), text)
        } else {
            ChatMessage::new(nick, text)
        };
        if self.io.receive(message).await.is_err() {
            debug!("the node stopped taking chat messages");
        }
    }

    /// `001`, the welcome: registered, so join; `start` may return.
    fn on_welcome(
        &mut self,
        conn: &mut Conn,
        out: &mut Vec<u8>,
        msg: &IrcLine<'_>,
        now: Instant,
    ) -> Option<End> {
        if self.cfg.sasl.is_some() && !conn.logged_in {
            return Some(End::Refused(format!(
                "{} registered us without the SASL login (IrcChat::sasl); refusing to go on \
                 without it",
                self.cfg.server
            )));
        }
        if let Some(nick) = msg.params.first() {
            conn.nick = (*nick).to_owned();
        }
        {
            let mut status = self.status.lock();
            status.connections += 1;
            status.nick = Some(conn.nick.clone());
        }
        info!(node = %self.io.node_name(), server = %self.cfg.server, nick = %conn.nick, "registered with the IRC server");
        self.report(Ok(()));
        self.join(conn, out, now);
        None
    }

    /// Capability negotiation: ask for `echo-message` if offered, and with
    /// SASL for `sasl` and `account-tag` (refused if not offered), then
    /// log in or end.
    fn on_cap(&mut self, conn: &mut Conn, out: &mut Vec<u8>, msg: &IrcLine<'_>) -> Option<End> {
        let sub = msg.param(1).to_ascii_uppercase();
        let server = &self.cfg.server;
        match sub.as_str() {
            "LS" => {
                // `CAP * LS * :caps` continues; `CAP * LS :caps` ends.
                let more = msg.params.len() >= 4 && msg.param(2) == "*";
                conn.cap_ls.push_str(msg.last());
                conn.cap_ls.push(' ');
                if more {
                    return None;
                }
                // `name` or `name=value`.
                let offered = |name: &str| {
                    conn.cap_ls.split_whitespace().find_map(|c| {
                        let (cap, value) = c.split_once('=').unwrap_or((c, ""));
                        (cap == name).then_some(value)
                    })
                };
                let mut wanted = Vec::new();
                if let Some(sasl) = &self.cfg.sasl {
                    let mechanism = sasl.mechanism();
                    match offered("sasl") {
                        None => {
                            return Some(End::Refused(format!(
                                "{server} offers no SASL login (IrcChat::sasl): its \
                                 capabilities are `{}`",
                                conn.cap_ls.trim()
                            )))
                        }
                        Some(mechs)
                            if !mechs.is_empty()
                                && !mechs.split(',').any(|m| m.eq_ignore_ascii_case(mechanism)) =>
                        {
                            return Some(End::Refused(format!(
                                "{server} does not offer SASL {mechanism}, only {mechs}"
                            )))
                        }
                        Some(_) => {}
                    }
                    if offered("account-tag").is_none() {
                        return Some(End::Refused(format!(
                            "{server} does not offer the IRCv3 `account-tag` capability: \
                             with SASL, trust rests on the account the server tags each \
                             message with, and without the tag no message could be trusted; \
                             its capabilities are `{}`",
                            conn.cap_ls.trim()
                        )));
                    }
                    wanted.extend(["sasl", "account-tag"]);
                }
                if self.cfg.echo_message && offered("echo-message").is_some() {
                    wanted.push("echo-message");
                }
                if wanted.is_empty() {
                    push_line(out, "CAP END");
                } else {
                    push_line(out, &format!("CAP REQ :{}", wanted.join(" ")));
                }
            }
            "ACK" => {
                if msg.last().split_whitespace().any(|c| c == "echo-message") {
                    debug!("the IRC server echoes our messages (echo-message)");
                }
                match &self.cfg.sasl {
                    Some(sasl) if !conn.logged_in => {
                        push_line(out, &format!("AUTHENTICATE {}", sasl.mechanism()));
                    }
                    _ => push_line(out, "CAP END"),
                }
            }
            "NAK" if self.cfg.sasl.is_some() => {
                return Some(End::Refused(format!(
                    "{server} refused the capabilities SASL needs (`{}`)",
                    msg.last()
                )));
            }
            "NAK" => push_line(out, "CAP END"),
            _ => {}
        }
        None
    }

    /// `AUTHENTICATE +`: the server waits for our SASL credentials. They
    /// go in 400-byte pieces (a last one of exactly 400 is followed by
    /// `+`), and are never logged.
    fn on_authenticate(&mut self, out: &mut Vec<u8>) {
        match &self.cfg.sasl {
            Some(Sasl::Plain { account, password }) => {
                // authzid NUL authcid NUL password (RFC 4616), authzid empty.
                let plain = format!("\0{account}\0{password}");
                let encoded = base64_simd::STANDARD.encode_to_string(plain.as_bytes());
                for piece in encoded.as_bytes().chunks(400) {
                    out.extend_from_slice(b"AUTHENTICATE ");
                    out.extend_from_slice(piece);
                    out.extend_from_slice(b"\r\n");
                }
                if encoded.len().is_multiple_of(400) {
                    push_line(out, "AUTHENTICATE +");
                }
            }
            // EXTERNAL: the certificate says who we are; no authzid.
            Some(Sasl::External { .. }) => push_line(out, "AUTHENTICATE +"),
            None => {}
        }
    }

    /// `900 nick nick!user@host account :You are now logged in as account`.
    fn on_logged_in(&mut self, msg: &IrcLine<'_>) {
        let account = msg.param(2).to_owned();
        info!(node = %self.io.node_name(), account = %account, "logged in with SASL");
        match &self.cfg.sasl {
            Some(Sasl::Plain { account: given, .. }) if *given != account => warn!(
                node = %self.io.node_name(),
                given = %given,
                account = %account,
                "the server spells the account otherwise than IrcChat::sasl: messages carry \
                 its spelling, so trust that (NodeBuilder::trust)"
            ),
            Some(Sasl::External { .. }) => info!(
                node = %self.io.node_name(),
                account = %account,
                "SASL EXTERNAL logged in: trust this account with NodeBuilder::trust"
            ),
            _ => {}
        }
        self.status.lock().account = Some(account);
    }

    /// A SASL failure numeric: the server's reason, and no connection
    /// without the login.
    fn sasl_refused(&self, msg: &IrcLine<'_>) -> End {
        let mechanism = self.cfg.sasl.as_ref().map_or("", |s| s.mechanism());
        let reason = if msg.command == "908" {
            format!("the server offers only the mechanisms {}", msg.param(1))
        } else {
            msg.last().to_owned()
        };
        End::Refused(format!(
            "the SASL {mechanism} login to {} was refused ({} {reason}); check the account \
             and password (IrcChat::sasl) or the certificate (IrcChat::sasl_external)",
            self.cfg.server, msg.command
        ))
    }

    /// The nick is taken while registering: the next alternate, or give up
    /// on this connection when they are all taken.
    fn on_nick_taken(&mut self, conn: &mut Conn, out: &mut Vec<u8>) -> Option<End> {
        conn.alternate += 1;
        if conn.alternate > MAX_ALTERNATE_NICKS {
            return Some(End::Lost(format!(
                "the nick {} and its alternates are taken",
                self.cfg.nick
            )));
        }
        conn.nick = format!("{}{}", self.cfg.nick, "_".repeat(conn.alternate));
        warn!(node = %self.io.node_name(), nick = %conn.nick, "nick taken; trying an alternate");
        push_line(out, &format!("NICK {}", conn.nick));
        None
    }

    /// `432`: the server refuses the nick itself.
    fn on_nick_refused(&mut self, conn: &Conn, msg: &IrcLine<'_>) -> End {
        error!(node = %self.io.node_name(), nick = %conn.nick, reason = msg.last(), "the IRC server refuses the nick");
        End::Lost(format!(
            "the server refuses the nick {}: {}",
            conn.nick,
            msg.last()
        ))
    }

    /// Someone joined our channel: us (the join went through) or a member.
    fn on_join(&mut self, conn: &mut Conn, msg: &IrcLine<'_>, now: Instant) {
        let Some(nick) = msg.nick() else { return };
        if same_name(nick, &conn.nick) {
            conn.members.clear();
            conn.joined = true;
            self.check_prefix(msg);
        } else {
            conn.members.insert(irc_lower(nick), nick.to_owned());
            self.publish_members(conn);
            if matches!(conn.phase, Phase::WaitingForPeers { .. }) && self.peers_back(conn) {
                self.ready(conn, now);
            }
        }
    }

    /// `353`, part of the names list: members of the channel.
    fn on_names(&mut self, conn: &mut Conn, msg: &IrcLine<'_>) {
        for name in msg.last().split_whitespace() {
            let nick = name
                .split('!')
                .next()
                .unwrap_or(name)
                .trim_start_matches(['@', '+', '%', '&', '~', '!', '.']);
            if !nick.is_empty() && !same_name(nick, &conn.nick) {
                conn.members.insert(irc_lower(nick), nick.to_owned());
            }
        }
        self.publish_members(conn);
    }

    /// `366`, the end of the names list: in the channel; post once the
    /// peers of before the outage are back.
    fn on_end_of_names(&mut self, conn: &mut Conn, now: Instant) {
        conn.joined = true;
        self.publish_members(conn);
        if self.peers_back(conn) {
            self.ready(conn, now);
        } else {
            info!(
                node = %self.io.node_name(),
                waiting_for = ?self.peers_before.values().collect::<Vec<_>>(),
                "rejoined; waiting for the peers of before the outage"
            );
            conn.phase = Phase::WaitingForPeers {
                deadline: now + self.cfg.peer_wait,
            };
        }
    }

    /// Someone left our channel: us, or a member.
    fn on_part(&mut self, conn: &mut Conn, msg: &IrcLine<'_>, now: Instant) {
        let Some(nick) = msg.nick() else { return };
        if same_name(nick, &conn.nick) {
            self.left_channel(conn, now, "parted");
        } else {
            conn.members.remove(&irc_lower(nick));
            self.publish_members(conn);
        }
    }

    /// Someone was kicked from our channel: us (slow down if for flooding),
    /// or a member.
    fn on_kick(&mut self, conn: &mut Conn, msg: &IrcLine<'_>, now: Instant) {
        let target = msg.param(1);
        if same_name(target, &conn.nick) {
            let reason = msg.param(2).to_owned();
            self.flood(&reason);
            self.left_channel(conn, now, &format!("kicked: {reason}"));
        } else {
            conn.members.remove(&irc_lower(target));
            self.publish_members(conn);
        }
    }

    /// A member left the server.
    fn on_quit(&mut self, conn: &mut Conn, msg: &IrcLine<'_>) {
        if let Some(nick) = msg.nick() {
            conn.members.remove(&irc_lower(nick));
            self.publish_members(conn);
        }
    }

    /// Someone changed nick: us, or a member.
    fn on_nick(&mut self, conn: &mut Conn, msg: &IrcLine<'_>) {
        let Some(old) = msg.nick() else { return };
        let new = msg.param(0);
        if same_name(old, &conn.nick) {
            conn.nick = new.to_owned();
            self.status.lock().nick = Some(conn.nick.clone());
        } else if conn.members.remove(&irc_lower(old)).is_some() {
            conn.members.insert(irc_lower(new), new.to_owned());
            self.publish_members(conn);
        }
    }

    /// Left the channel without disconnecting (kicked, or refused a post):
    /// what was in flight goes again after rejoining.
    fn left_channel(&mut self, conn: &mut Conn, now: Instant, why: &str) {
        if conn.joined {
            self.peers_before = conn.members.clone();
        }
        conn.joined = false;
        conn.members.clear();
        {
            let mut status = self.status.lock();
            status.joined = false;
            status.members.clear();
        }
        self.requeue(now);
        let delay = conn.rejoin.next_delay();
        warn!(node = %self.io.node_name(), channel = %self.cfg.channel, why, rejoin_in = ?delay, "not in the IRC channel");
        conn.phase = Phase::Rejoining { at: now + delay };
    }

    /// Halves the send rate if `reason` says we flooded.
    fn flood(&mut self, reason: &str) {
        if is_flood_reason(reason) {
            let rate = self.bucket.slow_down(Instant::now());
            self.status.lock().flood_slowdowns += 1;
            warn!(node = %self.io.node_name(), reason, lines_per_second = rate, "the IRC server says we flooded: slowing down");
        }
    }

    /// Whether everyone who was in the channel before the outage is back.
    fn peers_back(&self, conn: &Conn) -> bool {
        self.peers_before
            .keys()
            .all(|k| conn.members.contains_key(k))
    }

    fn publish_members(&self, conn: &Conn) {
        self.status.lock().members = conn.members.clone();
    }

    /// Warns if the prefix the server shows for us is longer than allowed for.
    fn check_prefix(&self, msg: &IrcLine<'_>) {
        let Some(prefix) = msg.prefix else { return };
        let relayed =
            1 + prefix.len() + " PRIVMSG ".len() + self.cfg.channel.len() + " :".len() + 2;
        if relayed + self.cfg.max_message_len() > LINE_LIMIT {
            warn!(
                node = %self.io.node_name(),
                prefix,
                max_host_len = self.cfg.max_host_len,
                "the server's prefix for us is longer than allowed for: long posts may be cut; \
                 raise IrcChat::max_host_len"
            );
        }
    }
}
