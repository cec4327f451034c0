//! Everything the integration tests share, as one module: each test binary
//! (`tests/NAME.rs`) says `mod common;` and uses what it needs (the Rust
//! book's convention; files below `tests/` are not test binaries).
//!
//! - here: in-process nodes on a [`LocalChat`] and what tests do with them
//!   (wait on stats, logs, frames made by hand, a recording chat);
//! - [`messages`]: the message types several tests share, declared once;
//! - [`presence_fleet`]: a fleet measured against its presence budget;
//! - [`python`]: Python SocketScience and SmokeDetector, run by `python3`;
//! - [`irc_server`]: a real ngIRCd; [`tcp_proxy`]: a proxy a test can cut;
//! - [`test_ca`]: certificates made at test time (TLS);
//! - [`processes`]: the examples run as OS processes;
//! - `sechat_standin` (feature `stackexchange`): the stand-in Stack
//!   Exchange chat server;
//! - `synapse` (feature `matrix`): a real Synapse.
//!
//! Each test binary uses only part of this module, so unused code is
//! allowed here, once for the whole module, rather than in each file.
#![allow(dead_code)]

pub mod irc_sasl;
pub mod irc_server;
pub mod messages;
pub mod presence_fleet;
pub mod processes;
pub mod python;
#[cfg(feature = "stackexchange")]
pub mod sechat_standin;
#[cfg(feature = "matrix")]
pub mod synapse;
pub mod tcp_proxy;
pub mod test_ca;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use socketscience::transport::BoxFuture;
use socketscience::transport::{LineMode, Transport, TransportIo};
use socketscience::{wire, Codec, LocalChat, Node, Stats};
use tokio::sync::Semaphore;

/// Waits until `pred` holds for the node's stats, or fails after 30 s.
pub async fn wait_for(node: &Node, what: &str, pred: impl Fn(&Stats) -> bool) -> Stats {
    for _ in 0..6_000 {
        let stats = node.stats();
        if pred(&stats) {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!(
        "{}: timed out waiting for {what}; stats: {:#?}",
        node.name(),
        node.stats()
    );
}

/// A node of the fleet account `smokey` in `chat`, not the process's
/// default (tests run in parallel).
pub async fn join(chat: &LocalChat, name: impl Into<String>) -> Node {
    Node::builder(name)
        .transport(chat.join("smokey"))
        .default_node(false)
        .start()
        .await
        .unwrap()
}

/// A list handlers append to.
#[derive(Clone)]
pub struct Log<T>(Arc<Mutex<Vec<T>>>);

impl<T> Default for Log<T> {
    fn default() -> Self {
        Log(Arc::new(Mutex::new(Vec::new())))
    }
}

impl<T: Clone> Log<T> {
    pub fn push(&self, value: T) {
        self.0.lock().unwrap().push(value);
    }
    pub fn items(&self) -> Vec<T> {
        self.0.lock().unwrap().clone()
    }
    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// The log lines written while a test runs, through a subscriber of this
/// thread: run the test on a current-thread runtime, so that the node's
/// tasks log here.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    /// Captures what this thread logs at `level` and above, until the
    /// guard is dropped.
    pub fn capture(level: tracing::Level) -> (LogCapture, tracing::subscriber::DefaultGuard) {
        let log = LogCapture::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (log, tracing::subscriber::set_default(subscriber))
    }

    /// Everything captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// What was captured so far, line by line.
    pub fn lines(&self) -> Vec<String> {
        self.text().lines().map(str::to_owned).collect()
    }
}

/// A frame around a body given as JSON text, as any sender could post it.
pub fn json_frame(body: &str) -> String {
    let mut b64 = String::new();
    wire::encode_base64(body.as_bytes(), &mut b64);
    let mut text = String::new();
    wire::write_frame(&mut text, wire::LineMode::Multi, 1234, &b64);
    text
}

/// Resident memory of this process, in bytes (Linux).
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

pub const CODECS: [Codec; 2] = [Codec::Json, Codec::MessagePack];

/// `future`'s output; fails the test, naming `what`, if it takes more than
/// 20 s (a hang, such as a lost wake-up), rather than hanging the suite.
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), future)
        .await
        .unwrap_or_else(|_| panic!("{what} took more than 20 s"))
}

/// A chat that keeps, in order, what the node posts (account `smokey`).
/// With a `gate`, it takes a post only for each permit the test adds.
pub struct RecordingChat {
    pub lines: LineMode,
    pub max_len: usize,
    pub gate: Option<Arc<Semaphore>>,
    pub posts: Log<String>,
}

impl Transport for RecordingChat {
    fn account(&self) -> &str {
        "smokey"
    }

    fn max_message_len(&self) -> usize {
        self.max_len
    }

    fn lines(&self) -> LineMode {
        self.lines
    }

    fn run(self: Box<Self>, mut io: TransportIo) -> BoxFuture<socketscience::Result<()>> {
        Box::pin(async move {
            loop {
                if let Some(gate) = &self.gate {
                    let permit = gate.acquire().await;
                    permit.expect("the gate stays open").forget();
                }
                match io.next_post().await {
                    Some(post) => self.posts.push(post),
                    None => return Ok(()),
                }
            }
        })
    }
}
