//! A small TCP proxy for tests: it forwards connections to an upstream
//! address until the test severs it (every connection through it is cut and
//! new ones are refused) and forwards again once the test restores it. It
//! stands for an instance's own network failing while the chat server and
//! the other instances stay up.

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running proxy; it stops when dropped.
pub struct TcpProxy {
    port: u16,
    shared: Arc<Shared>,
    accept: Option<std::thread::JoinHandle<()>>,
}

struct Shared {
    open: AtomicBool,
    stop: AtomicBool,
    /// Both sockets of every forwarded connection, to cut them.
    connections: Mutex<Vec<TcpStream>>,
    accepted: AtomicU32,
    refused: AtomicU32,
}

impl TcpProxy {
    /// Listens on a free loopback port, forwarding to `upstream`.
    pub fn start(upstream: &str) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener.set_nonblocking(true).expect("nonblocking accept");
        let port = listener.local_addr().expect("the proxy's address").port();
        let shared = Arc::new(Shared {
            open: AtomicBool::new(true),
            stop: AtomicBool::new(false),
            connections: Mutex::new(Vec::new()),
            accepted: AtomicU32::new(0),
            refused: AtomicU32::new(0),
        });
        let upstream = upstream.to_owned();
        let accept = std::thread::spawn({
            let shared = shared.clone();
            move || {
                while !shared.stop.load(Ordering::SeqCst) {
                    let client = match listener.accept() {
                        Ok((client, _)) => client,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(10));
                            continue;
                        }
                        Err(e) => panic!("the proxy cannot accept: {e}"),
                    };
                    if !shared.open.load(Ordering::SeqCst) {
                        shared.refused.fetch_add(1, Ordering::SeqCst);
                        let _ = client.shutdown(Shutdown::Both);
                        continue;
                    }
                    let Ok(server) = TcpStream::connect(&upstream) else {
                        let _ = client.shutdown(Shutdown::Both);
                        continue;
                    };
                    let _ = client.set_nonblocking(false);
                    shared.accepted.fetch_add(1, Ordering::SeqCst);
                    {
                        let mut connections = shared.connections.lock().unwrap();
                        connections.push(client.try_clone().expect("clone a socket"));
                        connections.push(server.try_clone().expect("clone a socket"));
                    }
                    pipe(
                        client.try_clone().expect("clone"),
                        server.try_clone().expect("clone"),
                    );
                    pipe(server, client);
                }
            }
        });
        TcpProxy {
            port,
            shared,
            accept: Some(accept),
        }
    }

    /// The address to connect to instead of the upstream one.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Cuts every connection through the proxy and refuses new ones.
    pub fn sever(&self) {
        self.shared.open.store(false, Ordering::SeqCst);
        for socket in self.shared.connections.lock().unwrap().drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }

    /// Forwards new connections again.
    pub fn restore(&self) {
        self.shared.open.store(true, Ordering::SeqCst);
    }

    /// Connections forwarded so far.
    pub fn accepted(&self) -> u32 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections refused while severed.
    pub fn refused(&self) -> u32 {
        self.shared.refused.load(Ordering::SeqCst)
    }
}

/// Copies `from` to `to` on a thread until either side closes.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 << 10];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.sever();
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}
