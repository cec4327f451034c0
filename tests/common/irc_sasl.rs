//! A real SASL IRC network on loopback: InspIRCd 3 with Atheme services,
//! from Debian's `inspircd` and `atheme-services` (`scripts/test` installs
//! them when missing), linked as Libera-style networks are: the services
//! do SASL, the server tags each message with its sender's account
//! (IRCv3 `account-tag`). The configurations (`irc_sasl/`) come from the
//! arrangement known to work here; each [`SaslServer`] runs its own pair
//! on free ports in a temporary directory, killed on drop. Accounts are
//! registered through NickServ at test time ([`SaslServer::register`]).
//!
//! [`Options`] vary the pair: `tls` adds a TLS port whose certificate a
//! test CA signs (for `127.0.0.1`), where a client certificate logs in with
//! SASL EXTERNAL once its fingerprint is on the account's NickServ `CERT`
//! list ([`SaslServer::register_with_cert`]); `without_account_tag` leaves
//! out `m_ircv3_accounttag`, so the server offers SASL but no
//! `account-tag`.

use std::fs;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::test_ca::{CertFiles, TestCa};

const INSPIRCD_CONF: &str = include_str!("irc_sasl/inspircd.conf");
const ATHEME_CONF: &str = include_str!("irc_sasl/atheme.conf");
/// How long the pair may take to link (SASL is offered only then).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Settings of the pair that tests vary.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Also a TLS port ([`SaslServer::tls_addr`]), its certificate signed
    /// by a test CA ([`SaslServer::ca_file`]); client certificates are
    /// asked for, and their SHA-256 fingerprints passed to the services
    /// (SASL EXTERNAL).
    pub tls: bool,
    /// Leave out `m_ircv3_accounttag`: SASL is offered, `account-tag` not.
    pub without_account_tag: bool,
}

/// InspIRCd and Atheme, running and linked; killed on drop.
pub struct SaslServer {
    ircd: Child,
    services: Child,
    port: u16,
    tls: Option<(TestCa, u16)>,
    dir: PathBuf,
}

impl SaslServer {
    /// Starts the pair and waits until the server offers SASL.
    pub fn start() -> SaslServer {
        SaslServer::start_with(Options::default())
    }

    /// Starts the pair with `options` and waits until the server offers
    /// SASL.
    pub fn start_with(options: Options) -> SaslServer {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "socketscience-sasl-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        for sub in ["ircd-data", "ircd-logs", "atheme-data"] {
            fs::create_dir_all(dir.join(sub)).expect("create the network's directories");
        }
        let (port, link) = (free_port(), free_port());
        let tls = options
            .tls
            .then(|| (TestCa::new(&dir.join("ca")), free_port()));
        let tls_conf = match &tls {
            None => String::new(),
            Some((ca, tls_port)) => tls_config(ca, *tls_port),
        };
        let account_tag = if options.without_account_tag {
            "# m_ircv3_accounttag left out (Options::without_account_tag)"
        } else {
            "<module name=\"ircv3_accounttag\">"
        };
        let fill = |template: &str| {
            template
                .replace("@DIR@", &dir.display().to_string())
                .replace("@CLIENT_PORT@", &port.to_string())
                .replace("@LINK_PORT@", &link.to_string())
                .replace("@ACCOUNT_TAG@", account_tag)
                .replace("@TLS@", &tls_conf)
        };
        fs::write(dir.join("inspircd.conf"), fill(INSPIRCD_CONF)).expect("write inspircd.conf");
        fs::write(dir.join("atheme.conf"), fill(ATHEME_CONF)).expect("write atheme.conf");
        let log = |name: &str| fs::File::create(dir.join(name)).expect("create a log");
        let ircd = Command::new(binary("inspircd", "/usr/sbin/inspircd"))
            .arg("--config")
            .arg(dir.join("inspircd.conf"))
            .args(["--nofork", "--nopid", "--runasroot"])
            .stdin(Stdio::null())
            .stdout(log("inspircd.out"))
            .stderr(log("inspircd.err"))
            .spawn()
            .expect("run inspircd");
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", link)).is_err() {
            assert!(Instant::now() < deadline, "inspircd did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        let services = Command::new(binary("atheme-services", "/usr/bin/atheme-services"))
            .arg("-n")
            .arg("-c")
            .arg(dir.join("atheme.conf"))
            .arg("-D")
            .arg(dir.join("atheme-data"))
            .arg("-l")
            .arg(dir.join("atheme-data/atheme-main.log"))
            .arg("-p")
            .arg(dir.join("atheme-data/atheme.pid"))
            .stdin(Stdio::null())
            .stdout(log("atheme.out"))
            .stderr(log("atheme.err"))
            .spawn()
            .expect("run atheme-services");
        let server = SaslServer {
            ircd,
            services,
            port,
            tls,
            dir,
        };
        // `sasl` is advertised only once the services are linked.
        while !server.caps().contains("sasl") {
            assert!(
                Instant::now() < deadline,
                "the services did not link within {START_TIMEOUT:?}: {}",
                server.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// `127.0.0.1:PORT`, for `IrcChat::new`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT` of the TLS port (a server started with `tls`).
    pub fn tls_addr(&self) -> String {
        format!("127.0.0.1:{}", self.tls.as_ref().expect("a TLS server").1)
    }

    /// The test CA's certificate, for `IrcChat::tls_ca_file` (a server
    /// started with `tls`).
    pub fn ca_file(&self) -> PathBuf {
        self.tls.as_ref().expect("a TLS server").0.ca_file()
    }

    /// A client certificate the test CA signs (a server started with
    /// `tls`), for `IrcChat::sasl_external`.
    pub fn client_cert(&self, stem: &str, name: &str) -> CertFiles {
        self.tls
            .as_ref()
            .expect("a TLS server")
            .0
            .client(stem, name)
    }

    /// The server's `CAP LS` line, or empty.
    fn caps(&self) -> String {
        let Ok(mut client) = Client::connect(self.port) else {
            return String::new();
        };
        client.send("CAP LS 302");
        let caps = client
            .wait_for(|l| l.contains(" LS "), Duration::from_secs(3))
            .unwrap_or_default();
        client.send("QUIT");
        caps
    }

    /// Registers the services account `account` with `password` through
    /// NickServ, from a connection with the account's name as its nick.
    pub fn register(&self, account: &str, password: &str) {
        self.registered(account, password).send("QUIT");
    }

    /// Registers `account` as [`register`](Self::register) does, then puts
    /// the certificate `cert`'s SHA-256 fingerprint on its NickServ list
    /// (`CERT ADD`): a TLS client showing that certificate logs in to the
    /// account with SASL EXTERNAL.
    pub fn register_with_cert(&self, account: &str, password: &str, cert: &Path) {
        let fingerprint = TestCa::fingerprint(cert);
        let mut client = self.registered(account, password);
        client.send(&format!("PRIVMSG NickServ :CERT ADD {fingerprint}"));
        client
            .wait_for(
                // Atheme puts the fingerprint in bold (`\x02`).
                |l| l.contains("Added fingerprint") && l.contains(&fingerprint),
                Duration::from_secs(20),
            )
            .unwrap_or_else(|| {
                panic!(
                    "NickServ did not add the fingerprint {fingerprint} to {account}: {}",
                    self.logs()
                )
            });
        client.send("QUIT");
    }

    /// A connection that registered `account` (and so is logged in to it).
    fn registered(&self, account: &str, password: &str) -> Client {
        let mut client = Client::connect(self.port).expect("connect to register");
        client.send(&format!("NICK {account}"));
        client.send(&format!("USER {account} 0 * :{account}"));
        client
            .wait_for(
                |l| command(l) == "376" || command(l) == "422",
                START_TIMEOUT,
            )
            .unwrap_or_else(|| panic!("no welcome to register {account}: {}", self.logs()));
        client.send(&format!(
            "PRIVMSG NickServ :REGISTER {password} {account}@example.org"
        ));
        client
            .wait_for(|l| l.contains("is now registered"), Duration::from_secs(20))
            .unwrap_or_else(|| panic!("NickServ did not register {account}: {}", self.logs()));
        client
    }

    fn logs(&self) -> String {
        [
            "inspircd.out",
            "inspircd.err",
            "atheme.out",
            "atheme-data/atheme.log",
        ]
        .iter()
        .map(|f| {
            format!(
                "--- {f} ---\n{}",
                fs::read_to_string(self.dir.join(f)).unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
    }
}

impl Drop for SaslServer {
    fn drop(&mut self) {
        for child in [&mut self.services, &mut self.ircd] {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// InspIRCd's TLS port: GnuTLS with a server certificate for `127.0.0.1`,
/// asking for client certificates, whose SHA-256 fingerprints `m_sslinfo`
/// passes to the services.
fn tls_config(ca: &TestCa, port: u16) -> String {
    let cert = ca.server("ircd", &["127.0.0.1"]);
    format!(
        "<module name=\"ssl_gnutls\">\n<module name=\"sslinfo\">\n\
         <sslprofile name=\"Clients\" provider=\"gnutls\" certfile=\"{}\" keyfile=\"{}\" \
         dhfile=\"{}\" hash=\"sha256\" requestclientcert=\"yes\">\n\
         <bind address=\"127.0.0.1\" port=\"{port}\" type=\"clients\" sslprofile=\"Clients\">\n",
        cert.cert.display(),
        cert.key.display(),
        ca.dh_file().display()
    )
}

/// A raw IRC client for the helpers above.
struct Client {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(port: u16) -> std::io::Result<Client> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        let reader = BufReader::new(stream.try_clone()?);
        Ok(Client { stream, reader })
    }

    fn send(&mut self, line: &str) {
        let _ = self.stream.write_all(format!("{line}\r\n").as_bytes());
    }

    /// Reads lines (answering `PING`s) until one `pred` accepts.
    fn wait_for(&mut self, pred: impl Fn(&str) -> bool, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        let mut line = String::new();
        while Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            let _ = self
                .stream
                .set_read_timeout(Some(left.max(Duration::from_millis(10))));
            line.clear();
            match self.reader.read_line(&mut line) {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            let l = line.trim_end();
            if let Some(token) = l.strip_prefix("PING ") {
                self.send(&format!("PONG {token}"));
            }
            if pred(l) {
                return Some(l.to_owned());
            }
        }
        None
    }
}

/// The command word of a line (after tags and prefix).
fn command(line: &str) -> &str {
    line.split(' ')
        .find(|w| !w.starts_with('@') && !w.starts_with(':'))
        .unwrap_or("")
}

fn binary(name: &str, debian: &str) -> PathBuf {
    let path = PathBuf::from(debian);
    assert!(
        path.is_file(),
        "{name} is not installed: the SASL tests run InspIRCd and Atheme from Debian's \
         `inspircd` and `atheme-services` packages; run `scripts/test` (it installs what is \
         missing) or `apt-get install -y inspircd atheme-services`"
    );
    path
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
