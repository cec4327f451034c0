//! A real Matrix homeserver for tests: Synapse, from PyPI's
//! `matrix-synapse`, in the virtual environment `scripts/test` makes
//! (`.venv-synapse` at the repository's root; `SYNAPSE_PYTHON` names
//! another Python that has it).
//!
//! Each [`Synapse`] runs its own server on a free loopback port, from a
//! temporary directory: SQLite, no federation (`trusted_key_servers: []`),
//! presence off, one client listener, shared-secret registration, login
//! and join rate limits lifted (tests log in often), and the message rate
//! limit lifted unless a test sets it. It is killed when dropped; a
//! watchdog shell also kills it when the test process dies. Starting it
//! fails the test loudly when Synapse is missing; it never skips.

use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{json, Value};

/// How long the server may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// The server name: user ids are `@name:localhost`.
pub const SERVER_NAME: &str = "localhost";

/// Settings tests vary.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `rc_message` (messages a second, burst); lifted when `None`.
    pub rc_message: Option<(f64, u32)>,
}

/// A running Synapse.
pub struct Synapse {
    dir: PathBuf,
    port: u16,
    python: PathBuf,
    /// The watchdog shell: Synapse dies when its stdin closes.
    child: Option<(Child, ChildStdin)>,
    http: reqwest::Client,
}

/// The Python that has Synapse.
fn python() -> PathBuf {
    let python = match std::env::var_os("SYNAPSE_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-synapse/bin/python"),
    };
    let ok = Command::new(&python)
        .args(["-c", "import synapse"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "Synapse is not installed for {}: run scripts/test, or \
         `python3 -m venv .venv-synapse && .venv-synapse/bin/pip install matrix-synapse` \
         at the repository's root (or set SYNAPSE_PYTHON to a Python that has it)",
        python.display()
    );
    python
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("find a free port")
        .port()
}

const SHARED_SECRET: &str = "socketscience-test-registration";

fn config(dir: &Path, port: u16, options: &Options) -> String {
    let d = dir.display();
    let lifted = "{per_second: 10000, burst_count: 10000}";
    let rc_message = match options.rc_message {
        Some((rate, burst)) => format!("{{per_second: {rate}, burst_count: {burst}}}"),
        None => lifted.to_owned(),
    };
    format!(
        r#"server_name: "{SERVER_NAME}"
report_stats: false
pid_file: "{d}/homeserver.pid"
signing_key_path: "{d}/signing.key"
media_store_path: "{d}/media"
macaroon_secret_key: "socketscience-test-macaroon"
form_secret: "socketscience-test-form"
registration_shared_secret: "{SHARED_SECRET}"
enable_registration: false
trusted_key_servers: []
suppress_key_server_warning: true
presence:
  enabled: false
database:
  name: sqlite3
  args:
    database: "{d}/homeserver.db"
listeners:
  - port: {port}
    bind_addresses: ["127.0.0.1"]
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]
        compress: false
rc_login:
  address: {lifted}
  account: {lifted}
  failed_attempts: {lifted}
rc_registration: {lifted}
rc_joins:
  local: {lifted}
  remote: {lifted}
rc_message: {rc_message}
"#
    )
}

impl Synapse {
    /// Starts a server and waits until it answers.
    pub async fn start(options: Options) -> Synapse {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let python = python();
        let dir = std::env::temp_dir().join(format!(
            "socketscience-synapse-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("media")).expect("create the Synapse directory");
        let port = free_port();
        std::fs::write(dir.join("homeserver.yaml"), config(&dir, port, &options))
            .expect("write the Synapse config");
        // A fixed signing key: nothing federates.
        std::fs::write(
            dir.join("signing.key"),
            "ed25519 a_test BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc\n",
        )
        .expect("write the signing key");
        let mut synapse = Synapse {
            dir,
            port,
            python,
            child: None,
            http: reqwest::Client::new(),
        };
        synapse.spawn().await;
        synapse
    }

    /// The homeserver's address.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("homeserver.log"))
            .expect("open the Synapse log");
        let mut child = Command::new("sh")
            .args([
                "-c",
                // Synapse dies when the test process (stdin's writer) does.
                r#""$0" -m synapse.app.homeserver -c "$1" </dev/null & pid=$!; cat >/dev/null; kill -9 $pid; wait $pid"#,
            ])
            .arg(&self.python)
            .arg(self.dir.join("homeserver.yaml"))
            .current_dir(&self.dir)
            .stdin(Stdio::piped())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start Synapse");
        let stdin = child.stdin.take().expect("piped stdin");
        self.child = Some((child, stdin));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let url = format!("{}/_matrix/client/versions", self.url());
            if let Ok(answer) = self.http.get(&url).send().await {
                if answer.status().is_success() {
                    return;
                }
            }
            if let Some((child, _)) = &mut self.child {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "Synapse exited ({status}) while starting:\n{}",
                        self.log_tail()
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "Synapse did not answer within {START_TIMEOUT:?}:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The end of the server's log.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("homeserver.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Kills the server at once (SIGKILL: no clean shutdown).
    pub fn kill(&mut self) {
        if let Some((mut child, mut stdin)) = self.child.take() {
            let _ = stdin.flush();
            drop(stdin);
            let _ = child.wait();
        }
    }

    /// Starts the killed server again, same port and database.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "kill it first");
        self.spawn().await;
    }

    /// Registers a user through shared-secret registration; returns its
    /// access token.
    pub async fn register(&self, user: &str, password: &str, admin: bool) -> String {
        let url = format!("{}/_synapse/admin/v1/register", self.url());
        let nonce: Value = self
            .http
            .get(&url)
            .send()
            .await
            .expect("get a registration nonce")
            .json()
            .await
            .expect("nonce JSON");
        let nonce = nonce["nonce"].as_str().expect("a nonce").to_owned();
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(SHARED_SECRET.as_bytes()).unwrap();
        mac.update(nonce.as_bytes());
        mac.update(b"\0");
        mac.update(user.as_bytes());
        mac.update(b"\0");
        mac.update(password.as_bytes());
        mac.update(b"\0");
        mac.update(if admin {
            b"admin".as_slice()
        } else {
            b"notadmin"
        });
        let mac: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let answer = self
            .http
            .post(&url)
            .json(&json!({
                "nonce": nonce,
                "username": user,
                "password": password,
                "admin": admin,
                "mac": mac,
            }))
            .send()
            .await
            .expect("register");
        let status = answer.status();
        let body: Value = answer.json().await.expect("registration JSON");
        assert!(status.is_success(), "registering {user}: {status} {body}");
        body["access_token"].as_str().expect("a token").to_owned()
    }

    /// Creates a public room with the alias `#alias:localhost` as the user
    /// of `token`; returns the room id.
    pub async fn create_room(&self, token: &str, alias: &str) -> String {
        let answer = self
            .http
            .post(format!("{}/_matrix/client/v3/createRoom", self.url()))
            .bearer_auth(token)
            .json(&json!({ "room_alias_name": alias, "preset": "public_chat" }))
            .send()
            .await
            .expect("create the room");
        let status = answer.status();
        let body: Value = answer.json().await.expect("createRoom JSON");
        assert!(status.is_success(), "creating #{alias}: {status} {body}");
        body["room_id"].as_str().expect("a room id").to_owned()
    }

    /// Posts a text as the user of `token` (an `m.text` message), as any
    /// client could.
    pub async fn post_as(&self, token: &str, room_id: &str, txn: &str, text: &str) {
        let answer = self
            .http
            .put(format!(
                "{}/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{txn}",
                self.url()
            ))
            .bearer_auth(token)
            .json(&json!({ "msgtype": "m.text", "body": text }))
            .send()
            .await
            .expect("post");
        assert!(answer.status().is_success(), "post: {}", answer.status());
    }

    /// Logs the user of `token` out (its token stops working).
    pub async fn log_out(&self, token: &str) {
        let answer = self
            .http
            .post(format!("{}/_matrix/client/v3/logout", self.url()))
            .bearer_auth(token)
            .json(&json!({}))
            .send()
            .await
            .expect("log out");
        assert!(answer.status().is_success(), "logout: {}", answer.status());
    }

    /// A fresh file name in the server's directory (for state files).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Synapse {
    fn drop(&mut self) {
        self.kill();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
