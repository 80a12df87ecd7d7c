//! A CQL (Cassandra protocol v4) server for the tests: the `kassandra` crate's
//! in-memory engine behind a TCP listener on 127.0.0.1, served from a thread of the
//! test process and stopped when the handle drops. With `CASSANDRA_CONTACT_POINTS`
//! set, the tests use that cluster instead.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures::{SinkExt, StreamExt};
use kassandra::KassandraSession;
use kassandra::error::DbError;
use kassandra::frame::request::Request;
use kassandra::frame::response::Response;
use kassandra::frame::response::error::Error as CqlError;
use kassandra::frame::{request_stream, response_sink};

/// A running server; dropping it stops the listener and every connection.
pub struct CqlServer {
    /// `host:port` to give as contact points.
    pub contact_points: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for CqlServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts a server, or points at `CASSANDRA_CONTACT_POINTS` when it is set.
pub fn start() -> CqlServer {
    if let Ok(contact_points) = std::env::var("CASSANDRA_CONTACT_POINTS") {
        return CqlServer { contact_points, stop: None, thread: None };
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address: SocketAddr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let session = Arc::new(Mutex::new(KassandraSession::new()));
            let connections = tokio::task::LocalSet::new();
            connections
                .run_until(async move {
                    tokio::select! {
                        _ = stopped => {}
                        _ = accept(listener, session) => {}
                    }
                })
                .await;
        });
    });
    CqlServer { contact_points: address.to_string(), stop: Some(stop), thread: Some(thread) }
}

async fn accept(listener: tokio::net::TcpListener, session: Arc<Mutex<KassandraSession>>) {
    loop {
        if let Ok((stream, _)) = listener.accept().await {
            tokio::task::spawn_local(serve(stream, session.clone()));
        }
    }
}

/// Answers the frames of one connection in order.
async fn serve(mut stream: tokio::net::TcpStream, session: Arc<Mutex<KassandraSession>>) {
    let (mut reader, mut writer) = stream.split();
    let mut requests = request_stream(&mut reader);
    let mut responses = response_sink(&mut writer);
    while let Some(Ok((frame, opcode, data))) = requests.next().await {
        let response = match Request::deserialize(opcode, &data, frame.flags) {
            Ok(request) => answer(request, &session),
            Err(_) => Response::Error(CqlError::new(DbError::ProtocolError, "unreadable request")),
        };
        if responses.send((response, frame.stream)).await.is_err() {
            return;
        }
    }
}

fn answer(request: Request, session: &Mutex<KassandraSession>) -> Response {
    let result = |outcome: Result<_, CqlError>| match outcome {
        Ok(result) => Response::Result(result),
        Err(error) => Response::Error(error),
    };
    let mut session = session.lock().unwrap();
    match request {
        Request::StartUp(_) | Request::Register { .. } => Response::Ready,
        Request::Options => Response::options(),
        Request::Query(query) => result(session.process(query)),
        Request::Prepare(statement) => result(session.prepare(statement)),
        Request::Execute(execute) => result(session.execute(execute)),
        Request::Batch(batch) => result(session.process_batch(batch)),
        Request::AuthResponse => Response::Error(CqlError::new(DbError::ProtocolError, "authentication is not supported")),
    }
}
