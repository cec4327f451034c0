//! A real IRC daemon for tests: ngIRCd, from Debian's `ngircd` package
//! (`scripts/test` installs it when it is missing).
//!
//! Why ngIRCd: it is in Debian's main archive (Ergo is not: Debian's `ergo`
//! package is a quantum chemistry program), it is one small C binary that
//! starts in milliseconds from a ten-line config, runs in the foreground
//! with `-n` and logs to stderr, and it keeps real flood control in its
//! stock settings (3 commands or 256 bytes a second per client, then it
//! stops reading that client for a second).
//!
//! Each [`IrcServer`] runs its own daemon on a free loopback port with a
//! temporary config that changes nothing about flood control: it only lets
//! nicks be 30 characters long (the RFC default is 9), lifts the limit of 5
//! connections per IP (every test client comes from 127.0.0.1) and turns
//! off DNS, ident and PAM lookups. It is killed when dropped. Starting it
//! fails the test loudly; it never skips.

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::test_ca::{CertFiles, TestCa};

/// How long the daemon may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Settings of the daemon that tests vary.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The server password clients must send (`PASS`).
    pub password: Option<String>,
    /// TLS only (no plain port): a test CA made in the daemon's directory
    /// signs a certificate for `irc.socketscience.test` and `127.0.0.1`
    /// ([`IrcServer::ca_file`]).
    pub tls: bool,
}

/// A running ngIRCd, killed on drop.
#[derive(Debug)]
pub struct IrcServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    binary: PathBuf,
    options: Options,
    tls: Option<(TestCa, CertFiles)>,
}

impl IrcServer {
    /// Starts a daemon with the stock flood control.
    pub fn start() -> IrcServer {
        IrcServer::start_with(Options::default())
    }

    /// Starts a daemon with `options`.
    pub fn start_with(options: Options) -> IrcServer {
        let binary = find_ngircd();
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "socketscience-ngircd-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create the daemon's temporary directory");
        // The daemon drops root for `nobody`, which writes its pid file here.
        set_mode(&dir, 0o777);
        let tls = options.tls.then(|| {
            let ca = TestCa::new(&dir.join("ca"));
            let cert = ca.server("server", &["irc.socketscience.test", "127.0.0.1"]);
            (ca, cert)
        });
        let mut server = IrcServer {
            child: None,
            port: 0,
            dir,
            binary,
            options,
            tls,
        };
        // A free port can be taken between finding it and the daemon's
        // bind: try a few.
        for attempt in 1..=5 {
            server.port = free_port();
            server.write_config();
            match server.spawn() {
                Ok(()) => return server,
                Err(log) if log.contains("Can't bind") && attempt < 5 => continue,
                Err(log) => panic!(
                    "ngircd did not start on 127.0.0.1:{} (config {}):\n{log}",
                    server.port,
                    server.config_path().display()
                ),
            }
        }
        unreachable!()
    }

    /// `127.0.0.1:PORT`, for `IrcChat::new`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The test CA's certificate, for `IrcChat::tls_ca_file` (a TLS server).
    pub fn ca_file(&self) -> PathBuf {
        self.tls.as_ref().expect("a TLS server").0.ca_file()
    }

    /// Kills the daemon at once (SIGKILL): every client sees its
    /// connection drop, and what the daemon held in its buffers is lost.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the daemon again on the same port, after [`kill`](Self::kill).
    pub fn restart(&mut self) {
        self.kill();
        if let Err(log) = self.spawn() {
            panic!("ngircd did not restart on port {}:\n{log}", self.port);
        }
    }

    /// Everything the daemon logged, across restarts.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("ngircd.conf")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("ngircd.log")
    }

    fn write_config(&self) {
        let password = match &self.options.password {
            Some(p) => format!("\tPassword = {p}\n"),
            None => String::new(),
        };
        let (ports, ssl) = match &self.tls {
            None => (self.port.to_string(), String::new()),
            Some((ca, cert)) => (
                String::new(),
                format!(
                    "[SSL]\n\tCertFile = {}\n\tKeyFile = {}\n\tDHFile = {}\n\tPorts = {}\n",
                    cert.cert.display(),
                    cert.key.display(),
                    ca.dh_file().display(),
                    self.port
                ),
            ),
        };
        let config = format!(
            "[Global]\n\
             \tName = irc.socketscience.test\n\
             \tInfo = socketscience test server\n\
             \tAdminInfo1 = socketscience tests\n\
             \tAdminInfo2 = loopback only\n\
             \tAdminEMail = nobody@socketscience.test\n\
             \tListen = 127.0.0.1\n\
             \tPorts = {ports}\n\
             \tPidFile = {pid}\n\
             \tMotdPhrase = \"socketscience test server\"\n\
             {password}\
             [Limits]\n\
             \tMaxConnectionsIP = 0\n\
             \tMaxNickLength = 30\n\
             [Options]\n\
             \tPAM = no\n\
             \tDNS = no\n\
             \tIdent = no\n\
             {ssl}",
            pid = self.dir.join("ngircd.pid").display(),
        );
        fs::write(self.config_path(), config).expect("write the daemon's config");
    }

    /// Starts the daemon and waits until it accepts; on failure, its log.
    fn spawn(&mut self) -> Result<(), String> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the daemon's log");
        let start_of_run = log.metadata().map(|m| m.len()).unwrap_or(0) as usize;
        let child = Command::new(&self.binary)
            .arg("-n")
            .arg("-f")
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.binary.display()))?;
        self.child = Some(child);
        let addr: SocketAddr = self.addr().parse().expect("a socket address");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let log_path = self.log_path();
            let this_run = move || {
                let log = fs::read_to_string(&log_path).unwrap_or_default();
                log.get(start_of_run..).unwrap_or_default().to_owned()
            };
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!("ngircd exited with {status}:\n{}", this_run()));
                }
            }
            if this_run().contains("ready")
                && TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(format!(
                    "ngircd did not accept connections within {START_TIMEOUT:?}:\n{}",
                    this_run()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for IrcServer {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- ngircd log ({}) ---\n{}",
                self.log_path().display(),
                self.log()
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// The ngircd binary: on `PATH`, or where Debian puts it.
fn find_ngircd() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("ngircd"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(["/usr/sbin/ngircd", "/usr/local/sbin/ngircd"].map(PathBuf::from))
        .find(|p| is_executable(p))
        .unwrap_or_else(|| {
            panic!(
                "ngircd is not installed. The IRC tests run a real IRC daemon from Debian's \
                 `ngircd` package: run `scripts/test` (it installs what is missing) or \
                 `apt-get install -y ngircd`"
            )
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    let _ = fs::set_permissions(path, fs::Permissions::from_mode(mode));
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
