//! Blocking HTTP for sources, over `wasi:http` (the host checks every request against
//! the hosts the connector grants). Errors come back as the SDK's [`Error`], already
//! classified: a refused host is a configuration error, a network failure, a timeout
//! or an oversized body is retriable. Messages name the URL without its query string,
//! where API keys travel.

use std::time::Duration;

use wstd::http::{Body, Client, ErrorCode, Method, Request as WasiRequest};

use crate::Error;

/// Redirects followed before giving up; each hop is checked by the host again.
const MAX_REDIRECTS: usize = 5;

/// One request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The full URL, query included.
    pub url: String,
    /// Headers in order.
    pub headers: Vec<(String, String)>,
    /// The body, if any.
    pub body: Option<Vec<u8>>,
}

impl Request {
    /// A GET of `url`.
    pub fn get(url: &str) -> Self {
        Self { method: "GET".to_owned(), url: url.to_owned(), headers: Vec::new(), body: None }
    }

    /// The same request with one more header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// A response, read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status.
    pub status: u16,
    /// Headers, names lowercase.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(header, _)| header.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    /// A header read as a number.
    pub fn header_number(&self, name: &str) -> Option<f64> {
        self.header(name)?.trim().parse().ok()
    }

    /// The body as JSON; a body that is not JSON (truncated, an HTML error page) is
    /// retriable: the next poll asks again.
    pub fn json(&self, shown_url: &str) -> Result<serde_json::Value, Error> {
        serde_json::from_slice(&self.body).map_err(|error| {
            Error::Retriable(format!(
                "{shown_url} answered {} with a body that is not valid JSON ({error}; {} bytes)",
                self.status,
                self.body.len()
            ))
        })
    }

    /// `Retry-After` in seconds, if the server sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        self.header_number("retry-after").filter(|seconds| *seconds >= 0.0).map(Duration::from_secs_f64)
    }
}

/// Sends `request` and reads the whole response, following redirects.
pub fn send(request: &Request) -> Result<Response, Error> {
    wstd::runtime::block_on(send_async(request.clone()))
}

async fn send_async(mut request: Request) -> Result<Response, Error> {
    for _ in 0..=MAX_REDIRECTS {
        let response = send_once(&request).await?;
        let redirect = matches!(response.status, 301 | 302 | 303 | 307 | 308);
        match response.header("location") {
            Some(location) if redirect => {
                request.url = resolve(&request.url, location);
                if response.status == 303 {
                    request.method = "GET".to_owned();
                    request.body = None;
                }
            }
            _ => return Ok(response),
        }
    }
    Err(Error::Retriable(format!("{} redirected more than {MAX_REDIRECTS} times", shown_url(&request.url))))
}

async fn send_once(request: &Request) -> Result<Response, Error> {
    let shown = shown_url(&request.url);
    let method = Method::from_bytes(request.method.as_bytes())
        .map_err(|_| Error::BadConfig(format!("{:?} is not an HTTP method", request.method)))?;
    let mut builder = WasiRequest::builder().method(method).uri(&request.url);
    for (name, value) in &request.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let body = request.body.clone().map_or_else(Body::empty, Body::from);
    let wasi_request = builder.body(body).map_err(|error| Error::BadConfig(format!("cannot build a request for {shown}: {error}")))?;
    let mut response = Client::new().send(wasi_request).await.map_err(|error| classify(&shown, &error))?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str().to_ascii_lowercase(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect();
    let body = response.body_mut().contents().await.map_err(|error| classify(&shown, &error))?.to_vec();
    Ok(Response { status, headers, body })
}

/// The SDK error for a failed request.
fn classify(shown: &str, error: &wstd::http::Error) -> Error {
    let code = error.chain().find_map(|cause| cause.downcast_ref::<ErrorCode>());
    let text = format!("{error:#}");
    match code {
        Some(ErrorCode::HttpRequestDenied) => Error::BadConfig(format!(
            "the host refused the request to {shown}: this connector's configuration does not grant that host; \
             point the plugin's URL option at it or add it to the connector's egress.allowed_hosts"
        )),
        Some(ErrorCode::HttpResponseBodySize(_)) => too_large(shown),
        _ if text.contains("HttpResponseBodySize") => too_large(shown),
        Some(ErrorCode::ConnectionReadTimeout | ErrorCode::ConnectionTimeout) => {
            Error::Retriable(format!("{shown} did not answer within the connector's egress.request_timeout"))
        }
        _ if text.contains("Timeout") => Error::Retriable(format!("{shown} did not answer within the connector's egress.request_timeout")),
        _ => Error::Retriable(format!("the request to {shown} failed: {}", strip_query_strings(&text))),
    }
}

fn too_large(shown: &str) -> Error {
    Error::Retriable(format!("the response of {shown} is larger than the connector's egress.max_response_mib; it was not read"))
}

/// `scheme://host[:port]/path` of a URL: never its query string, where API keys travel.
pub fn shown_url(url: &str) -> String {
    let without_query = url.split(['?', '#']).next().unwrap_or(url);
    match without_query.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
            format!("{scheme}://{host}{path}")
        }
        None => without_query.to_owned(),
    }
}

/// `text` with anything after a `?` up to the next space removed.
fn strip_query_strings(text: &str) -> String {
    text.split(' ').map(|word| word.split('?').next().unwrap_or(word)).collect::<Vec<_>>().join(" ")
}

/// The absolute URL a `Location` header points to from `base`.
fn resolve(base: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_owned();
    }
    let (scheme, rest) = base.split_once("://").unwrap_or(("http", base));
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    if let Some(path) = location.strip_prefix("//") {
        return format!("{scheme}://{path}");
    }
    if location.starts_with('/') {
        return format!("{scheme}://{authority}{location}");
    }
    let path = rest[authority.len()..].split('?').next().unwrap_or("");
    let directory = path.rsplit_once('/').map_or("", |(directory, _)| directory);
    format!("{scheme}://{authority}{directory}/{location}")
}

/// Joins a base URL and a path (`https://airlabs.co/api/v9` + `/flights`) and appends
/// the query parameters, percent-encoded; empty values are left out.
pub fn url(base: &str, path: &str, query: &[(&str, &str)]) -> String {
    let mut url = format!("{}/{}", base.trim_end_matches('/'), path.trim_start_matches('/'));
    if path.is_empty() {
        url.pop();
    }
    let mut separator = if url.contains('?') { '&' } else { '?' };
    for (name, value) in query.iter().filter(|(_, value)| !value.is_empty()) {
        url.push(separator);
        url.push_str(&encode(name));
        url.push('=');
        url.push_str(&encode(value));
        separator = '&';
    }
    url
}

/// Percent-encodes a query component (RFC 3986 unreserved characters and `,` stay).
pub fn encode(text: &str) -> String {
    wasm_connect_protocol::url::percent_encode(text, wasm_connect_protocol::url::QUERY_KEPT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_joined_and_encoded() {
        assert_eq!(
            url("https://airlabs.co/api/v9/", "/flights", &[("api_key", "k y"), ("bbox", "1,2,3,4"), ("flag", "")]),
            "https://airlabs.co/api/v9/flights?api_key=k%20y&bbox=1,2,3,4"
        );
        assert_eq!(url("http://x/query?function=A", "", &[("symbol", "IBM")]), "http://x/query?function=A&symbol=IBM");
    }

    #[test]
    fn shown_urls_lose_query_and_credentials() {
        assert_eq!(shown_url("https://u:p@www.alphavantage.co/query?apikey=SECRET"), "https://www.alphavantage.co/query");
        assert_eq!(shown_url("http://127.0.0.1:9/v3/locations?limit=1#x"), "http://127.0.0.1:9/v3/locations");
        assert_eq!(strip_query_strings("error sending http://h/p?apikey=S now"), "error sending http://h/p now");
    }

    #[test]
    fn redirects_resolve_against_the_request() {
        assert_eq!(resolve("http://a:1/x/y?k=v", "/z"), "http://a:1/z");
        assert_eq!(resolve("http://a:1/x/y?k=v", "w"), "http://a:1/x/w");
        assert_eq!(resolve("http://a:1/x", "https://b/c"), "https://b/c");
        assert_eq!(resolve("http://a:1/x", "//b/c"), "http://b/c");
    }
}
