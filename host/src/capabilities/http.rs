//! Outgoing HTTP (`wasi:http/outgoing-handler`): every request a plugin sends is
//! checked against the hosts its connector grants, runs under one deadline from
//! sending to the last body byte, and has its response body capped. Refused requests
//! are logged (without the query string, where API keys travel) and counted.
//!
//! wasi:http does not follow redirects: a plugin that follows one sends a new request,
//! which is checked like any other, so a redirect cannot lead to an ungranted host.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::config::EgressConfig;
use crate::runtime::TaskIdentity;
use crate::telemetry::Metrics;

/// One host a connector may reach: an exact name (or any subdomain of it), on one
/// port or any.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostPattern {
    /// Lowercase name, without the `*.` of a wildcard.
    name: String,
    subdomains: bool,
    port: Option<u16>,
}

impl HostPattern {
    /// An `allowed_hosts` entry (already validated): `host`, `host:port`, `*.domain`.
    fn parse(pattern: &str) -> Self {
        let pattern = pattern.trim().to_ascii_lowercase();
        let (host, port) = match pattern.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') || host.ends_with(']') => (host.to_owned(), port.parse().ok()),
            _ => (pattern.clone(), None),
        };
        match host.strip_prefix("*.") {
            Some(domain) => Self { name: domain.to_owned(), subdomains: true, port },
            None => Self { name: host, subdomains: false, port },
        }
    }

    /// The host and port of an HTTP endpoint URL (`https://api.example.com/v3`).
    fn from_url(url: &str) -> Option<Self> {
        let uri: http::Uri = url.trim().parse().ok()?;
        let name = uri.host()?.to_ascii_lowercase();
        Some(Self { name, subdomains: false, port: Some(effective_port(&uri)?) })
    }

    fn matches(&self, host: &str, port: u16) -> bool {
        let name_matches = if self.subdomains {
            host.len() > self.name.len() + 1 && host.ends_with(&self.name) && host[..host.len() - self.name.len()].ends_with('.')
        } else {
            host == self.name
        };
        name_matches && self.port.is_none_or(|allowed| allowed == port)
    }
}

fn effective_port(uri: &http::Uri) -> Option<u16> {
    uri.port_u16().or(match uri.scheme_str() {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    })
}

/// Where one connector's plugin may send HTTP requests, and their limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressPolicy {
    hosts: Vec<HostPattern>,
    request_timeout: Duration,
    max_response_bytes: u64,
}

impl Default for EgressPolicy {
    /// Nothing is reachable.
    fn default() -> Self {
        Self::new(&[], &EgressConfig::default())
    }
}

impl EgressPolicy {
    /// The hosts of the granted `endpoints` (URLs of options declared as HTTP
    /// endpoints) and of `egress.allowed_hosts`, with `egress`'s limits.
    pub fn new(endpoints: &[String], egress: &EgressConfig) -> Self {
        let hosts = endpoints
            .iter()
            .filter_map(|url| HostPattern::from_url(url))
            .chain(egress.allowed_hosts.iter().map(|pattern| HostPattern::parse(pattern)))
            .collect();
        Self { hosts, request_timeout: egress.request_timeout, max_response_bytes: u64::from(egress.max_response_mib) << 20 }
    }

    /// Whether a request to `uri` may be sent.
    fn allows(&self, uri: &http::Uri) -> bool {
        let (Some(host), Some(port)) = (uri.host(), effective_port(uri)) else { return false };
        let host = host.to_ascii_lowercase();
        self.hosts.iter().any(|pattern| pattern.matches(&host, port))
    }
}

/// How long a task's requests have kept it waiting on the network, so that this
/// time does not count against the plugin's call deadline.
#[derive(Debug, Default)]
pub struct NetworkClock {
    state: Mutex<NetworkTime>,
}

#[derive(Debug, Default)]
struct NetworkTime {
    in_flight: u32,
    since: Option<Instant>,
    total: Duration,
}

impl NetworkClock {
    /// Time with at least one request in flight, so far.
    pub fn waited(&self) -> Duration {
        let state = self.state.lock().expect("network clock lock");
        state.total + state.since.map_or(Duration::ZERO, |since| since.elapsed())
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        let mut state = self.state.lock().expect("network clock lock");
        if state.in_flight == 0 {
            state.since = Some(Instant::now());
        }
        state.in_flight += 1;
        InFlight { clock: self.clone() }
    }
}

/// One request in flight, from sending it until its body is read or dropped.
struct InFlight {
    clock: Arc<NetworkClock>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.clock.state.lock().expect("network clock lock");
        state.in_flight -= 1;
        if state.in_flight == 0
            && let Some(since) = state.since.take()
        {
            state.total += since.elapsed();
        }
    }
}

/// The `wasi:http` hooks of one task: the policy, the clock and where to count.
pub struct Egress {
    policy: EgressPolicy,
    identity: TaskIdentity,
    metrics: Option<Arc<Metrics>>,
    /// Shared with the task's call clock.
    pub clock: Arc<NetworkClock>,
}

impl Egress {
    /// Hooks that enforce `policy` for the task `identity`, counting in `metrics`.
    pub fn new(policy: EgressPolicy, identity: TaskIdentity, metrics: Option<Arc<Metrics>>) -> Self {
        Self { policy, identity, metrics, clock: Arc::default() }
    }

    fn count(&self, outcome: &str) {
        if let Some(metrics) = &self.metrics {
            metrics.http_request(&self.identity, outcome);
        }
    }
}

/// `scheme://host[:port]/path` of a request: never its query string, where API keys travel.
pub fn shown_uri(uri: &http::Uri) -> String {
    format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or("http"),
        uri.authority().map_or("", |authority| authority.host()),
        uri.port_u16().map(|port| format!(":{port}")).unwrap_or_default()
    ) + uri.path()
}

type ResponseFuture =
    Box<dyn Future<Output = Result<(http::Response<WasiBody>, Box<dyn Future<Output = Result<(), Error>> + Send>), Error>> + Send>;

impl WasiHttpHooks for Egress {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> ResponseFuture {
        let shown = shown_uri(request.uri());
        if !self.policy.allows(request.uri()) {
            tracing::warn!(
                connector = %self.identity.connector, task = self.identity.task, url = shown,
                "Refused an outgoing HTTP request: this connector's configuration does not grant the host. \
                 Grant it with an HTTP endpoint option of the plugin or egress.allowed_hosts."
            );
            self.count("denied");
            // Take the body the guest is still writing, so that it sees the denial
            // (and not a broken body stream) as the request's outcome.
            return Box::new(async move {
                let _ = request.into_body().collect().await;
                Err(Error::HttpRequestDenied)
            });
        }
        let timeout = self.policy.request_timeout;
        let max_bytes = self.policy.max_response_bytes;
        let deadline = tokio::time::Instant::now() + timeout;
        let in_flight = self.clock.begin();
        let (identity, metrics) = (self.identity.clone(), self.metrics.clone());
        let count = move |outcome: &str| {
            if let Some(metrics) = &metrics {
                metrics.http_request(&identity, outcome);
            }
        };
        // The guest may ask for shorter timeouts, never longer ones.
        let asked = options.unwrap_or_default();
        let capped = |asked: Option<Duration>| Some(asked.map_or(timeout, |asked| asked.min(timeout)));
        let options = Some(RequestOptions {
            connect_timeout: capped(asked.connect_timeout),
            first_byte_timeout: capped(asked.first_byte_timeout),
            between_bytes_timeout: capped(asked.between_bytes_timeout),
        });
        Box::new(async move {
            // Read the guest's whole request body first and send it with a known
            // length: a server that answers before reading a streamed body could
            // otherwise leave the guest blocked on writing it.
            let (parts, body) = request.into_parts();
            let body = match tokio::time::timeout_at(deadline, body.collect()).await {
                Err(_) => {
                    count("timeout");
                    return Err(Error::ConnectionWriteTimeout);
                }
                Ok(Err(error)) => {
                    count("failed");
                    return Err(error);
                }
                Ok(Ok(collected)) => collected.to_bytes(),
            };
            let body = http_body_util::Full::new(body).map_err(|never| match never {}).boxed_unsync();
            let request = http::Request::from_parts(parts, body);
            let sent = tokio::time::timeout_at(deadline, wasmtime_wasi_http::default_send_request(request, options)).await;
            let (response, io) = match sent {
                Err(_) => {
                    count("timeout");
                    return Err(Error::ConnectionReadTimeout);
                }
                Ok(Err(error)) => {
                    count("failed");
                    return Err(error);
                }
                Ok(Ok(sent)) => sent,
            };
            let declared = response.headers().get(http::header::CONTENT_LENGTH).and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
            if declared.is_some_and(|length| length > max_bytes) {
                count("too_large");
                return Err(Error::HttpResponseBodySize(declared));
            }
            count(status_class(response.status()));
            let response = response.map(|body| {
                LimitedBody {
                    inner: body.boxed_unsync(),
                    remaining: max_bytes,
                    limit: max_bytes,
                    deadline: Box::pin(tokio::time::sleep_until(deadline)),
                    in_flight: Some(in_flight),
                    on_too_large: Some(Box::new(count)),
                }
                .boxed_unsync()
            });
            Ok((response, Box::new(io) as Box<dyn Future<Output = Result<(), Error>> + Send>))
        })
    }
}

fn status_class(status: http::StatusCode) -> &'static str {
    match status.as_u16() {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// A response body cut off at the size limit and the request's deadline.
struct LimitedBody {
    inner: WasiBody,
    remaining: u64,
    limit: u64,
    deadline: Pin<Box<tokio::time::Sleep>>,
    in_flight: Option<InFlight>,
    on_too_large: Option<CountOutcome>,
}

/// Counts one request outcome in the task's metrics.
type CountOutcome = Box<dyn FnOnce(&str) + Send>;

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        if self.in_flight.is_none() {
            return Poll::Ready(None);
        }
        if self.deadline.as_mut().poll(context).is_ready() {
            self.in_flight = None;
            return Poll::Ready(Some(Err(Error::ConnectionReadTimeout)));
        }
        let frame = match Pin::new(&mut self.inner).poll_frame(context) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(frame) => frame,
        };
        match frame {
            Some(Ok(frame)) => {
                let length = frame.data_ref().map_or(0, |data| data.len() as u64);
                if length > self.remaining {
                    self.in_flight = None;
                    if let Some(count) = self.on_too_large.take() {
                        count("too_large");
                    }
                    return Poll::Ready(Some(Err(Error::HttpResponseBodySize(Some(self.limit)))));
                }
                self.remaining -= length;
                Poll::Ready(Some(Ok(frame)))
            }
            other => {
                self.in_flight = None;
                Poll::Ready(other)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.in_flight.is_none() || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(endpoints: &[&str], allowed: &[&str]) -> EgressPolicy {
        let egress = EgressConfig { allowed_hosts: allowed.iter().map(|host| (*host).to_owned()).collect(), ..EgressConfig::default() };
        EgressPolicy::new(&endpoints.iter().map(|url| (*url).to_owned()).collect::<Vec<_>>(), &egress)
    }

    fn allows(policy: &EgressPolicy, url: &str) -> bool {
        policy.allows(&url.parse().unwrap())
    }

    #[test]
    fn endpoints_grant_their_host_and_port_only() {
        let policy = policy(&["https://airlabs.co/api/v9", "http://127.0.0.1:8080/"], &[]);
        assert!(allows(&policy, "https://airlabs.co/api/v9/flights?api_key=x"));
        assert!(allows(&policy, "https://AIRLABS.co:443/other"));
        assert!(!allows(&policy, "http://airlabs.co/api/v9"), "port 80 is not granted");
        assert!(allows(&policy, "http://127.0.0.1:8080/x"));
        assert!(!allows(&policy, "http://127.0.0.1:8081/x"));
        assert!(!allows(&policy, "http://localhost:8080/x"));
        assert!(!allows(&policy, "https://evil.airlabs.co.example/"));
    }

    #[test]
    fn allowed_hosts_take_names_ports_and_wildcards() {
        let policy = policy(&[], &["api.openaq.org", "*.gbfs.example", "weather.test:8443"]);
        assert!(allows(&policy, "https://api.openaq.org/v3/locations"));
        assert!(allows(&policy, "http://api.openaq.org:8080/"), "a host without port allows any port");
        assert!(allows(&policy, "https://paris.gbfs.example/station_status.json"));
        assert!(!allows(&policy, "https://gbfs.example/"), "a wildcard is for subdomains");
        assert!(!allows(&policy, "https://evilgbfs.example/"));
        assert!(allows(&policy, "https://weather.test:8443/"));
        assert!(!allows(&policy, "https://weather.test/"));
        assert!(!allows(&EgressPolicy::default(), "https://api.openaq.org/"));
    }

    #[test]
    fn shown_urls_have_no_query() {
        let uri: http::Uri = "https://www.alphavantage.co/query?function=GLOBAL_QUOTE&apikey=SECRET".parse().unwrap();
        assert_eq!(shown_uri(&uri), "https://www.alphavantage.co/query");
        let uri: http::Uri = "http://127.0.0.1:9/flights?api_key=SECRET".parse().unwrap();
        assert_eq!(shown_uri(&uri), "http://127.0.0.1:9/flights");
    }
}
