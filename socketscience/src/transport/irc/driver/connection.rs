//! One connection of the driver, from connecting to its end: TCP (or TLS
//! over it), registration (`CAP LS`, `PASS`, `NICK`, `USER`), joining the
//! channel, and the loop that reads the server's lines, writes what is
//! queued and takes posts from the node, until the connection ends.

use std::collections::BTreeMap;

use tokio::io::{AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout, Instant};
use tracing::info;

use super::{
    far_future, Conn, Driver, End, Phase, Stream, CLOSE_CHECK, REGISTRATION_TIMEOUT, STABLE_AFTER,
    WRITE_AHEAD,
};
use crate::transport::backoff::Backoff;
use crate::transport::irc::proto::{push_line, LineBuffer};
use crate::transport::irc::tls::{Tls, TlsFailure};

impl Driver {
    /// One connection, from connecting to its end.
    pub(super) async fn connection(&mut self) -> End {
        let server = self.cfg.server.clone();
        let connect = timeout(
            self.cfg.connect_timeout,
            open(server.clone(), self.tls.clone()),
        );
        tokio::pin!(connect);
        let stream = loop {
            let pull = self.may_take();
            let give_up = self.shutdown_by.unwrap_or_else(far_future);
            let check = Instant::now() + CLOSE_CHECK;
            tokio::select! {
                result = &mut connect => match result {
                    Ok(Ok(stream)) => break stream,
                    Ok(Err(end)) => return end,
                    Err(_) => return End::Lost(format!("connecting to {server} timed out")),
                },
                post = self.io.next_post(), if pull => self.accept_post(post),
                _ = sleep_until(give_up) => return End::GaveUp,
                _ = sleep_until(check), if !pull => {}
            }
        };
        let (mut reader, mut writer) = tokio::io::split(stream);
        let now = Instant::now();
        let mut conn = Conn {
            phase: Phase::Registering {
                deadline: now + REGISTRATION_TIMEOUT,
            },
            nick: self.cfg.nick.clone(),
            alternate: 0,
            cap_ls: String::new(),
            members: BTreeMap::new(),
            joined: false,
            last_rx: now,
            ping: None,
            last_confirm_ping: None,
            ready_since: None,
            rejoin: Backoff::new(self.cfg.backoff_initial, self.cfg.backoff_max),
            close_reason: None,
            logged_in: false,
        };
        // TLS holds what was written until it is flushed.
        let mut unflushed = false;
        let mut out: Vec<u8> = Vec::with_capacity(2 * WRITE_AHEAD);
        self.register(&conn, &mut out);
        let mut lines = LineBuffer::default();
        let end = loop {
            let now = Instant::now();
            if let Some(end) = self.tick(&mut conn, &mut out, now) {
                break end;
            }
            let wake = self.next_wake(&mut conn, now);
            let pull = self.may_take() && (self.node_closing() || self.may_pull(&conn, &out, now));
            tokio::select! {
                read = reader.read_buf(&mut lines.buf) => match read {
                    Ok(0) => break self.closed(&conn, "the server closed the connection".into()),
                    Ok(_) => {
                        let mut ended = None;
                        while let Some(line) = lines.next_line() {
                            if let Some(end) = self.handle(&mut conn, &mut out, &line).await {
                                ended = Some(end);
                                break;
                            }
                        }
                        if let Some(end) = ended {
                            break end;
                        }
                    }
                    Err(e) => break self.closed(&conn, format!("read error: {e}")),
                },
                written = write_or_flush(&mut writer, &out), if !out.is_empty() || unflushed => {
                    match written {
                        Ok(Some(0)) => {
                            break self.closed(&conn, "the server stopped taking data".into());
                        }
                        Ok(Some(n)) => {
                            out.drain(..n);
                            unflushed = true;
                        }
                        Ok(None) => unflushed = false,
                        Err(e) => break self.closed(&conn, format!("write error: {e}")),
                    }
                }
                post = self.io.next_post(), if pull => self.accept_post(post),
                _ = sleep_until(wake) => {}
            }
        };
        if matches!(end, End::Done) {
            let _ = writer.shutdown().await;
        }
        if conn.joined {
            self.peers_before = conn.members.clone();
        }
        if conn
            .ready_since
            .is_some_and(|at| at.elapsed() >= STABLE_AFTER)
        {
            self.backoff.reset();
        }
        end
    }

    /// The connection closed: done if we were quitting, else lost.
    fn closed(&self, conn: &Conn, what: String) -> End {
        if matches!(conn.phase, Phase::Quitting { .. }) {
            return End::Done;
        }
        End::Lost(match &conn.close_reason {
            Some(reason) => format!("{what}: {reason}"),
            None => what,
        })
    }

    fn register(&self, conn: &Conn, out: &mut Vec<u8>) {
        if self.cfg.echo_message || self.cfg.sasl.is_some() {
            // Servers without CAP answer 421 and register us anyway.
            push_line(out, "CAP LS 302");
        }
        if let Some(password) = &self.cfg.password {
            push_line(out, &format!("PASS {password}"));
        }
        push_line(out, &format!("NICK {}", conn.nick));
        push_line(
            out,
            &format!("USER {} 0 * :{}", self.cfg.username, self.cfg.realname),
        );
    }

    pub(super) fn join(&self, conn: &mut Conn, out: &mut Vec<u8>, now: Instant) {
        match &self.cfg.channel_key {
            Some(key) => push_line(out, &format!("JOIN {} {key}", self.cfg.channel)),
            None => push_line(out, &format!("JOIN {}", self.cfg.channel)),
        }
        conn.phase = Phase::Joining {
            deadline: now + REGISTRATION_TIMEOUT,
        };
    }

    pub(super) fn ready(&mut self, conn: &mut Conn, now: Instant) {
        conn.phase = Phase::Ready;
        conn.ready_since.get_or_insert(now);
        conn.rejoin.reset();
        self.status.lock().joined = true;
        info!(
            node = %self.io.node_name(),
            nick = %conn.nick,
            channel = %self.cfg.channel,
            members = conn.members.len(),
            to_resend = self.resend.len(),
            "in the IRC channel"
        );
    }
}

/// Writes some of `out`, or, once it is all written, flushes (TLS holds
/// the last bytes until then): `None` when flushed.
async fn write_or_flush<W: AsyncWrite + Unpin>(
    writer: &mut W,
    out: &[u8],
) -> std::io::Result<Option<usize>> {
    if out.is_empty() {
        writer.flush().await.map(|()| None)
    } else {
        writer.write(out).await.map(Some)
    }
}

/// Connects to `server`, with TLS if given. A certificate that does not
/// verify is [`End::Refused`]; everything else [`End::Lost`].
async fn open(server: String, tls: Option<Tls>) -> std::result::Result<Box<dyn Stream>, End> {
    let tcp = TcpStream::connect(server.as_str())
        .await
        .map_err(|e| End::Lost(format!("cannot connect to {server}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    match tls {
        None => Ok(Box::new(tcp)),
        Some(tls) => match tls.connect(tcp).await {
            Ok(stream) => Ok(Box::new(stream)),
            Err(TlsFailure::Certificate(why)) => Err(End::Refused(why)),
            Err(TlsFailure::Io(why)) => Err(End::Lost(why)),
        },
    }
}
