//! What keeps a web browser from being used against the host: a page the operator
//! opens on another site must not create connectors or upload plugins through the
//! operator's browser, with or without a token configured.
//!
//! - A request that carries an `Origin` header (browsers send one on every cross-site
//!   request but a plain GET, and on every preflight) is refused with 403 unless
//!   `admin.allowed_origins` lists that origin; an allowed origin gets the CORS
//!   headers, and its preflight (`OPTIONS`) is answered here.
//! - A request body has the type its endpoint takes: `application/json` for JSON
//!   endpoints, `application/wasm` for uploads (415 otherwise, as Kafka Connect
//!   answers), so a cross-site form or `text/plain` fetch cannot reach a handler.
//! - Without a token, a request whose `Host` header names neither an IP address,
//!   `localhost`, nor a name `admin.allowed_hosts` lists is refused with 403: a page
//!   on a DNS name its author points at this host (DNS rebinding) is same-origin to
//!   the browser, sends no `Origin` on a GET, and could otherwise read the API.
//! - A state-changing request (anything but GET and HEAD) with one of the three
//!   content types a browser sends without a preflight (`text/plain`,
//!   `application/x-www-form-urlencoded`, `multipart/form-data`) is refused on every
//!   endpoint, those without a body included: no "simple" request changes anything.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use super::routes::Body;

/// The media types a browser sends cross-site without asking first (CORS "simple"
/// requests).
const SIMPLE_CONTENT_TYPES: &[&str] = &["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"];

/// What the browser rules need: the allowed origins, and the body each endpoint takes
/// by method and route pattern (from the one endpoint table).
#[derive(Debug, Clone, Default)]
pub struct BrowserRules {
    allowed_origins: Arc<[String]>,
    /// The names `Host` may carry beside IP addresses and `localhost`; none: any.
    allowed_hosts: Option<Arc<[String]>>,
    bodies: Arc<[(Method, &'static str, Body)]>,
}

impl BrowserRules {
    /// The rules for `allowed_origins` (`*` allows any) and the endpoints' bodies.
    pub(super) fn new(allowed_origins: &[String], allowed_hosts: Option<Arc<[String]>>, bodies: Vec<(Method, &'static str, Body)>) -> Self {
        let allowed_origins = allowed_origins.iter().map(|origin| origin.trim_end_matches('/').to_ascii_lowercase()).collect();
        Self { allowed_origins, allowed_hosts, bodies: bodies.into() }
    }

    /// Whether a `Host` header value may be served: an IP address, `localhost`, or a
    /// listed name, with or without a port.
    fn serves_host(&self, host: &str) -> bool {
        let Some(allowed) = &self.allowed_hosts else { return true };
        if host.starts_with('[') {
            return true; // an IPv6 literal
        }
        let name = match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|byte| byte.is_ascii_digit()) => name,
            _ => host,
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        name.parse::<std::net::IpAddr>().is_ok()
            || name == "localhost"
            || name.ends_with(".localhost")
            || allowed.iter().any(|listed| listed == "*" || listed.eq_ignore_ascii_case(&name))
    }

    fn allows(&self, origin: &str) -> bool {
        self.allowed_origins.iter().any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(origin))
    }
}

/// The media type of a request, lower case, without parameters.
fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().unwrap_or("invalid");
    Some(value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
}

/// Applies the rules above before the request reaches authentication or a handler.
pub(super) async fn guard(State(rules): State<BrowserRules>, request: Request, next: Next) -> Response {
    let rules = &rules;
    if let Some(host) = request.headers().get(header::HOST)
        && !rules.serves_host(host.to_str().unwrap_or("invalid"))
    {
        let shown: String = String::from_utf8_lossy(host.as_bytes()).chars().take(100).flat_map(char::escape_debug).collect();
        return ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "this request names the host \"{shown}\", which is not an IP address, localhost or a name admin.allowed_hosts \
                 lists; without admin.token only such names are served, so that a web page cannot reach the API through a DNS \
                 name of its own. Add the name to admin.allowed_hosts, or set admin.token"
            ),
        )
        .into_response();
    }
    let origin = request.headers().get(header::ORIGIN).map(|value| value.to_str().unwrap_or("invalid").to_owned());
    if let Some(origin) = &origin
        && !rules.allows(origin)
    {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "requests from web pages are refused: this request carries an Origin header that admin.allowed_origins does not \
             list; add the page's origin there to let it call the API"
                .to_owned(),
        )
        .into_response();
    }
    if let Some(origin) = &origin
        && request.method() == Method::OPTIONS
    {
        return preflight(origin);
    }
    if let Err(refusal) = check_content_type(rules, &request) {
        return refusal.into_response();
    }
    let mut response = next.run(request).await;
    if let Some(origin) = origin
        && let Ok(value) = HeaderValue::from_str(&origin)
    {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}

/// The answer to an allowed origin's preflight.
fn preflight(origin: &str) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Content-Type, Authorization"));
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    response
}

/// 415 unless the body's type is the one the endpoint takes; never a simple type on a
/// state-changing request.
fn check_content_type(rules: &BrowserRules, request: &Request) -> Result<(), ApiError> {
    let media_type = media_type(request.headers());
    let method = request.method();
    let route = request.extensions().get::<MatchedPath>().map(MatchedPath::as_str);
    let expected = route.and_then(|route| rules.bodies.iter().find(|(m, path, _)| m == method && *path == route)).map(|(_, _, body)| *body);
    let unsupported = |message: String| ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, message);
    match expected {
        Some(Body::Json(_)) if media_type.as_deref() != Some("application/json") => {
            Err(unsupported("this endpoint takes a JSON body: send it with Content-Type: application/json".to_owned()))
        }
        Some(Body::Component) if media_type.as_deref() != Some("application/wasm") => {
            Err(unsupported("upload the component as the raw request body with Content-Type: application/wasm".to_owned()))
        }
        _ if *method != Method::GET
            && *method != Method::HEAD
            && media_type.as_deref().is_some_and(|media_type| SIMPLE_CONTENT_TYPES.contains(&media_type)) =>
        {
            Err(unsupported(format!(
                "requests that change something may not carry Content-Type {}, which browsers send across sites; send \
                 application/json, or no body",
                media_type.unwrap_or_default()
            )))
        }
        _ => Ok(()),
    }
}
