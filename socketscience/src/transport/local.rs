//! [`LocalChat`]: a chat room inside the process.

use std::sync::{Arc, Mutex};

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::error::Result;
use crate::transport::{BoxFuture, ChatMessage, Transport, TransportIo};

/// A chat room inside the process: the embedded default, for tests,
/// examples and single-host fleets.
///
/// Every member sees every message posted, its own included, in the order
/// the room received them, as on a real chat. Nodes that join one
/// `LocalChat` behave exactly as instances on different hosts sharing a
/// real room.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> socketscience::Result<()> {
/// use socketscience::{LocalChat, Node};
///
/// let chat = LocalChat::new();
/// let node = Node::builder("Henders/EC2").transport(chat.join("smokey")).start().await?;
/// chat.say("a human", "hello, bots"); // not a frame: counted, ignored
/// node.shutdown().await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct LocalChat {
    room: Arc<Mutex<Room>>,
    max_len: usize,
    throttle: Duration,
}

#[derive(Debug, Default)]
struct Room {
    members: Vec<mpsc::UnboundedSender<ChatMessage>>,
}

impl Default for LocalChat {
    fn default() -> Self {
        LocalChat::new()
    }
}

impl LocalChat {
    /// An empty room with no message length limit to speak of (1 MiB).
    pub fn new() -> LocalChat {
        LocalChat::with_max_message_len(1 << 20)
    }

    /// An empty room whose messages are at most `max_len` bytes, as a real
    /// chat's are; longer frames are then sent in chunks.
    pub fn with_max_message_len(max_len: usize) -> LocalChat {
        LocalChat {
            room: Arc::new(Mutex::new(Room::default())),
            max_len,
            throttle: Duration::ZERO,
        }
    }

    /// Lets each member post at most once per `interval`, as Stack Exchange
    /// chat throttles a busy account: envelopes wait in the nodes meanwhile
    /// and then share posts. Applies to members that join afterwards.
    pub fn throttle(mut self, interval: Duration) -> LocalChat {
        self.throttle = interval;
        self
    }

    /// Joins the room as chat account `account`: a transport for one node.
    pub fn join(&self, account: impl Into<String>) -> LocalTransport {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().members.push(tx);
        LocalTransport {
            chat: self.clone(),
            account: account.into(),
            rx,
        }
    }

    /// Everything posted in the room from now on, as it was posted: for
    /// tests and debugging. Dropping the receiver stops the copy.
    pub fn watch(&self) -> mpsc::UnboundedReceiver<ChatMessage> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().members.push(tx);
        rx
    }

    /// Posts `text` as `account`, as a person or another bot in the room
    /// would: every member sees it.
    pub fn say(&self, account: &str, text: &str) {
        self.post(ChatMessage::new(account, text));
    }

    fn post(&self, message: ChatMessage) {
        self.lock()
            .members
            .retain(|member| member.send(message.clone()).is_ok());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Room> {
        crate::sync::lock(&self.room)
    }
}

/// One member's connection to a [`LocalChat`].
#[derive(Debug)]
pub struct LocalTransport {
    chat: LocalChat,
    account: String,
    rx: mpsc::UnboundedReceiver<ChatMessage>,
}

impl Transport for LocalTransport {
    fn account(&self) -> &str {
        &self.account
    }

    fn max_message_len(&self) -> usize {
        self.chat.max_len
    }

    /// With a [`throttle`](LocalChat::throttle): one post per throttle
    /// interval.
    fn posts_per_minute(&self) -> Option<f64> {
        (!self.chat.throttle.is_zero()).then(|| 60.0 / self.chat.throttle.as_secs_f64())
    }

    fn run(self: Box<Self>, mut io: TransportIo) -> BoxFuture<Result<()>> {
        let LocalTransport {
            chat,
            account,
            mut rx,
        } = *self;
        let account: Arc<str> = account.into();
        Box::pin(async move {
            let mut ready_at = Instant::now();
            loop {
                // Posting waits for the throttle; reading never does. (No
                // timer when there is nothing to wait for: tokio's timer
                // rounds up to the next millisecond, which would stall
                // every post by up to 1 ms.)
                let next_post = async {
                    if ready_at > Instant::now() {
                        tokio::time::sleep_until(ready_at).await;
                    }
                    io.next_post().await
                };
                tokio::select! {
                    post = next_post => match post {
                        Some(text) => {
                            chat.post(ChatMessage { account: account.clone(), text: text.into() });
                            ready_at = Instant::now() + chat.throttle;
                        }
                        None => break,
                    },
                    Some(message) = rx.recv() => io.receive(message).await?,
                }
            }
            // Hand over what the room had already delivered: nothing queued is lost.
            while let Ok(message) = rx.try_recv() {
                io.receive(message).await?;
            }
            Ok(())
        })
    }
}
