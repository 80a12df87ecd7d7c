//! A local HTTP server that replays recorded API answers, for the API sources' tests:
//! per path a steady answer plus one-shot answers served first, and a log of every
//! request (method, path, query, headers) to assert on. HTTP/1.1, one request per
//! connection, on 127.0.0.1 with a free port; stopped when dropped.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One recorded answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Close the connection after this many body bytes (a truncated answer).
    pub cut_after: Option<usize>,
}

impl Answer {
    /// A JSON answer.
    pub fn json(status: u16, body: &str) -> Self {
        Self { status, headers: vec![("content-type".into(), "application/json".into())], body: body.as_bytes().to_vec(), cut_after: None }
    }

    /// The same answer with one more header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// One request the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    /// A query parameter's (still encoded) value.
    pub fn param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| pair.strip_prefix(&format!("{name}=")).map(str::to_owned))
    }

    /// A header's value (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(header, _)| header.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }
}

#[derive(Default)]
struct Script {
    steady: HashMap<String, Answer>,
    once: HashMap<String, VecDeque<Answer>>,
    received: Vec<Received>,
}

/// The running server.
pub struct ReplayServer {
    pub port: u16,
    script: Arc<Mutex<Script>>,
    stop: Arc<AtomicBool>,
}

impl ReplayServer {
    /// Starts serving; unknown paths answer 404 `{"detail":"Not Found"}`.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let script = Arc::new(Mutex::new(Script::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (serving, stopping) = (script.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let script = serving.clone();
                std::thread::spawn(move || handle(stream, &script));
            }
        });
        Self { port, script, stop }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The answer to `path` from now on (after any one-shot answers). `path` may
    /// carry one query condition, `/query?function=GLOBAL_QUOTE`: such an answer is
    /// given to the requests whose query has that parameter, before plain-path ones.
    pub fn serve(&self, path: &str, answer: Answer) {
        self.script.lock().unwrap().steady.insert(path.to_owned(), answer);
    }

    /// An answer to `path` served once, before the steady one.
    pub fn once(&self, path: &str, answer: Answer) {
        self.script.lock().unwrap().once.entry(path.to_owned()).or_default().push_back(answer);
    }

    /// Every request received for `path`, in order.
    pub fn received(&self, path: &str) -> Vec<Received> {
        self.script.lock().unwrap().received.iter().filter(|request| request.path == path).cloned().collect()
    }

    /// Every request received.
    pub fn all_received(&self) -> Vec<Received> {
        self.script.lock().unwrap().received.clone()
    }
}

impl Drop for ReplayServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn handle(stream: TcpStream, script: &Mutex<Script>) {
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() || line.is_empty() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or("").to_owned(), parts.next().unwrap_or("").to_owned());
    let mut headers = Vec::new();
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.trim_end().split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    let (path, query) = target.split_once('?').map_or((target.clone(), String::new()), |(path, query)| (path.to_owned(), query.to_owned()));
    let answer = {
        let mut script = script.lock().unwrap();
        script.received.push(Received { method, path: path.clone(), query: query.clone(), headers, body });
        let conditioned = |key: &String| {
            key.split_once('?').is_some_and(|(key_path, condition)| key_path == path && query.split('&').any(|pair| pair == condition))
        };
        let once_key = script.once.iter().find(|(key, answers)| conditioned(key) && !answers.is_empty()).map(|(key, _)| key.clone());
        let steady_key = script.steady.keys().find(|key| conditioned(key)).cloned();
        let once = once_key.or_else(|| Some(path.clone())).and_then(|key| script.once.get_mut(&key).and_then(VecDeque::pop_front));
        let steady = steady_key.and_then(|key| script.steady.get(&key).cloned()).or_else(|| script.steady.get(&path).cloned());
        once.or(steady).unwrap_or_else(|| Answer::json(404, r#"{"detail":"Not Found"}"#))
    };
    let mut stream = stream;
    let mut head = format!("HTTP/1.1 {} Answer\r\ncontent-length: {}\r\nconnection: close\r\n", answer.status, answer.body.len());
    for (name, value) in &answer.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let sent = answer.cut_after.unwrap_or(answer.body.len()).min(answer.body.len());
    let _ = stream.write_all(&answer.body[..sent]);
    let _ = stream.flush();
}
