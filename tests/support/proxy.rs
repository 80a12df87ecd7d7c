//! A TCP proxy the tests control, to cut a store off and bring it back, or to make it
//! slow, without touching the store: connections to `address` are forwarded to the
//! target while the proxy is open; while it is closed every connection is cut at once.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running proxy; it stops accepting when dropped.
pub struct Proxy {
    /// Where clients connect.
    pub address: SocketAddr,
    state: Arc<State>,
}

struct State {
    open: AtomicBool,
    stopped: AtomicBool,
    /// Connections still to be answered `429 Too Many Requests` instead of forwarded.
    throttled: AtomicU64,
    /// Milliseconds to wait before forwarding each chunk from the client.
    delay_ms: AtomicU64,
    connections: Mutex<Vec<TcpStream>>,
}

impl Proxy {
    /// Forwards to `target`, open from the start when `open`.
    pub fn start(target: SocketAddr, open: bool) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let state = Arc::new(State {
            open: AtomicBool::new(open),
            stopped: AtomicBool::new(false),
            throttled: AtomicU64::new(0),
            delay_ms: AtomicU64::new(0),
            connections: Mutex::new(Vec::new()),
        });
        let shared = state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if shared.stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                if shared.throttled.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(1)).is_ok() {
                    std::thread::spawn(move || answer_too_many_requests(client));
                    continue;
                }
                if !shared.open.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                {
                    let mut connections = shared.connections.lock().unwrap();
                    connections.push(client.try_clone().unwrap());
                    connections.push(server.try_clone().unwrap());
                }
                pump(client.try_clone().unwrap(), server.try_clone().unwrap(), shared.clone(), true);
                pump(server, client, shared.clone(), false);
            }
        });
        Proxy { address, state }
    }

    /// The target is reachable again.
    pub fn open(&self) {
        self.state.open.store(true, Ordering::SeqCst);
    }

    /// Cuts every connection and refuses new ones until [`Proxy::open`].
    pub fn close(&self) {
        self.state.open.store(false, Ordering::SeqCst);
        for connection in self.state.connections.lock().unwrap().drain(..) {
            let _ = connection.shutdown(Shutdown::Both);
        }
    }

    /// Answers the next `requests` HTTP requests `429 Too Many Requests` itself, as an
    /// overloaded cluster would; open connections are cut first so that the client
    /// sends its next requests on new ones.
    pub fn throttle(&self, requests: u64) {
        self.state.throttled.store(requests, Ordering::SeqCst);
        for connection in self.state.connections.lock().unwrap().drain(..) {
            let _ = connection.shutdown(Shutdown::Both);
        }
    }

    /// Delays every chunk a client sends by `delay`: a slow store.
    pub fn slow_down(&self, delay: Duration) {
        self.state.delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stopped.store(true, Ordering::SeqCst);
        self.close();
        let _ = TcpStream::connect(self.address);
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, state: Arc<State>, delayed: bool) {
    std::thread::spawn(move || {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let read = match from.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(read) => read,
            };
            let delay = state.delay_ms.load(Ordering::SeqCst);
            if delayed && delay > 0 {
                std::thread::sleep(Duration::from_millis(delay));
            }
            if !state.open.load(Ordering::SeqCst) || to.write_all(&buffer[..read]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

/// Reads one HTTP request head and answers 429, closing the connection.
fn answer_too_many_requests(mut client: TcpStream) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buffer = [0u8; 4096];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        match client.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(read) => head.extend_from_slice(&buffer[..read]),
        }
    }
    let body = r#"{"error":{"type":"es_rejected_execution_exception","reason":"rejected by the test proxy"},"status":429}"#;
    let _ = write!(
        client,
        "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.shutdown(Shutdown::Both);
}
