//! The admin API's HTTP server, with the limits that keep a hostile or broken client
//! from holding the host's file descriptors or memory, while the host keeps answering:
//! - at most `max_connections` connections are open at once; at the limit, a new
//!   connection takes the place of the oldest one that is not in the middle of a
//!   request (still sending its head, or idle between requests), so clients that hold
//!   connections open without finishing a request cannot lock everyone else out;
//! - a connection that has not sent a whole request head within `header_timeout` is
//!   closed, and so is an idle keep-alive connection after as long.
//!
//! Over TLS (`admin.tls`), the handshake must also finish within `header_timeout`.
//!
//! (`admin.request_timeout` bounds a request once its head is in: see `time_limit` in
//! the router.)

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;

use super::tls::ReloadingTls;

/// How long open connections get to finish their request after shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// The pause after a failed accept (out of file descriptors, say) before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The limits of the admin server (`admin.*` in the configuration).
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Time to send a whole request head, and the longest idle keep-alive.
    pub header_timeout: Duration,
}

/// Binds the admin address: done before any task starts, so a host that cannot
/// listen has started nothing.
pub async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(address).await
}

/// What a connection is doing, as the limit sees it.
const IDLE: u8 = 0;
const BUSY: u8 = 1;
const EVICTED: u8 = 2;

/// One open connection.
struct Connection {
    id: u64,
    /// Cancelled to close the connection at once.
    evict: CancellationToken,
    /// [`IDLE`] (sending a request head, or between requests), [`BUSY`] (a request
    /// is being answered) or [`EVICTED`]; changed only by compare-and-swap, so a
    /// connection is never evicted once its request has started.
    state: Arc<AtomicU8>,
}

/// The open connections, oldest first.
struct Connections {
    max: usize,
    open: Mutex<Vec<Connection>>,
    next_id: std::sync::atomic::AtomicU64,
    released: Notify,
}

impl Connections {
    fn new(max: usize) -> Self {
        Self { max: max.max(1), open: Mutex::new(Vec::new()), next_id: 0.into(), released: Notify::new() }
    }

    /// Registers a new connection if there is room, making room by closing the
    /// oldest connection that is not answering a request; `None` when every open
    /// connection is answering one.
    fn admit(&self) -> Option<(u64, CancellationToken, Arc<AtomicU8>)> {
        let mut open = self.open.lock().expect("connections lock");
        if open.len() >= self.max {
            let idle = open
                .iter()
                .position(|connection| connection.state.compare_exchange(IDLE, EVICTED, Ordering::AcqRel, Ordering::Acquire).is_ok())?;
            open.remove(idle).evict.cancel();
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (evict, state) = (CancellationToken::new(), Arc::new(AtomicU8::new(IDLE)));
        open.push(Connection { id, evict: evict.clone(), state: state.clone() });
        Some((id, evict, state))
    }

    fn release(&self, id: u64) {
        self.open.lock().expect("connections lock").retain(|connection| connection.id != id);
        self.released.notify_one();
    }
}

/// A connection's request being answered: idle again when dropped, which may make
/// room for a connection waiting to be admitted.
struct Answering {
    state: Arc<AtomicU8>,
    connections: Arc<Connections>,
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.state.store(IDLE, Ordering::Release);
        self.connections.released.notify_one();
    }
}

/// Serves `router` on `listener` until `shutdown`, within `limits`, over TLS when
/// `tls` is given.
pub fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    tls: Option<Arc<ReloadingTls>>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let connections = Arc::new(Connections::new(limits.max_connections));
        let tasks = TaskTracker::new();
        loop {
            let stream = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        tracing::warn!(%error, "The admin API could not accept a connection.");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                },
            };
            let admitted = loop {
                if let Some(admitted) = connections.admit() {
                    break Some(admitted);
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break None,
                    _ = connections.released.notified() => {}
                }
            };
            let Some((id, evict, state)) = admitted else { break };
            let _ = stream.set_nodelay(true);
            let (router, answering_connections) = (router.clone(), connections.clone());
            let service = hyper::service::service_fn(move |request| {
                let mut router = router.clone();
                // Evicted between its head and now: the connection is closing.
                let started = state.compare_exchange(IDLE, BUSY, Ordering::AcqRel, Ordering::Acquire).is_ok();
                let answering = started.then(|| Answering { state: state.clone(), connections: answering_connections.clone() });
                async move {
                    if answering.is_none() {
                        return Ok(StatusCode::SERVICE_UNAVAILABLE.into_response());
                    }
                    let response = router.call(without_trailing_slash(request)).await;
                    drop(answering);
                    response
                }
            });
            let (shutdown, connections, tls) = (shutdown.clone(), connections.clone(), tls.clone());
            tasks.spawn(async move {
                let served = async {
                    match tls {
                        None => serve_connection(TokioIo::new(stream), service, limits.header_timeout, &shutdown).await,
                        // The handshake counts as part of the request head.
                        Some(tls) => match tokio::time::timeout(limits.header_timeout, tls.acceptor().accept(stream)).await {
                            Ok(Ok(stream)) => serve_connection(TokioIo::new(stream), service, limits.header_timeout, &shutdown).await,
                            Ok(Err(error)) => tracing::debug!(%error, "A TLS handshake with the admin API failed."),
                            Err(_) => tracing::debug!("A TLS handshake with the admin API took longer than admin.header_timeout."),
                        },
                    }
                };
                tokio::select! {
                    biased;
                    _ = evict.cancelled() => {}
                    _ = served => {}
                }
                connections.release(id);
            });
        }
        tasks.close();
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait()).await;
    })
}

/// Serves HTTP/1.1 on one connection until it ends or, gracefully, until `shutdown`.
async fn serve_connection<I, S, B>(io: I, service: S, header_timeout: Duration, shutdown: &CancellationToken)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_timeout);
    let mut connection = pin!(builder.serve_connection(io, service));
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, connection).await;
        }
    }
}

/// The request with its path's trailing slashes removed (`/connectors/` is
/// `/connectors`, as Kafka Connect serves it).
fn without_trailing_slash<B>(mut request: axum::http::Request<B>) -> axum::http::Request<B> {
    let path = request.uri().path();
    // Not for DELETE: `/plugins/x/` (an empty version) must not become "every version".
    if path.len() > 1 && path.ends_with('/') && request.method() != axum::http::Method::DELETE {
        let trimmed = match path.trim_end_matches('/') {
            "" => "/",
            trimmed => trimmed,
        };
        let path_and_query = match request.uri().query() {
            Some(query) => format!("{trimmed}?{query}"),
            None => trimmed.to_owned(),
        };
        let mut parts = request.uri().clone().into_parts();
        if let Ok(path_and_query) = path_and_query.parse() {
            parts.path_and_query = Some(path_and_query);
            if let Ok(uri) = axum::http::Uri::from_parts(parts) {
                *request.uri_mut() = uri;
            }
        }
    }
    request
}

#[cfg(test)]
mod tests {
    use axum::http::Request;

    use super::without_trailing_slash;

    #[test]
    fn trailing_slashes_are_removed() {
        let path = |uri: &str| without_trailing_slash(Request::get(uri).body(()).unwrap()).uri().to_string();
        assert_eq!(path("/connectors/"), "/connectors");
        assert_eq!(path("/connectors/x/status//?a=1"), "/connectors/x/status?a=1");
        assert_eq!(path("/"), "/");
        assert_eq!(path("//"), "/");
        assert_eq!(path("/connectors"), "/connectors");
        let delete = without_trailing_slash(Request::delete("/plugins/x/").body(()).unwrap());
        assert_eq!(delete.uri().to_string(), "/plugins/x/", "a DELETE keeps its slash");
    }
}
