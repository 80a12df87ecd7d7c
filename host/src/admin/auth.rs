//! The optional token: when one is configured (`admin.token`, or the
//! `WASM_CONNECT_ADMIN_TOKEN` environment variable), every request but `GET /health`
//! must carry it, as `Authorization: Bearer <token>` or, for the Kafka Connect tools
//! that only speak HTTP Basic, as the password of `Authorization: Basic` (any user
//! name); the scheme is case-insensitive (RFC 9110). Anything else is answered 401.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{AdminState, ApiError};

/// Lets a request through when no token is configured, for `GET /health`, or with
/// the right token.
pub(super) async fn require_token(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    let Some(token) = &state.token else { return next.run(request).await };
    if request.method() == Method::GET && request.uri().path() == "/health" {
        return next.run(request).await;
    }
    let presented = request.headers().get(header::AUTHORIZATION).and_then(|value| value.to_str().ok()).and_then(presented_token);
    if presented.as_deref().is_some_and(|presented| same(presented.as_bytes(), token.as_bytes())) {
        return next.run(request).await;
    }
    let message = match presented {
        None => {
            "this API needs the admin token: send Authorization: Bearer <token>, or HTTP Basic with the token as the \
             password (admin.token or WASM_CONNECT_ADMIN_TOKEN)"
        }
        Some(_) => "the token is wrong: send the one configured as admin.token or WASM_CONNECT_ADMIN_TOKEN",
    };
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, message.to_owned()).into_response();
    // No Basic challenge: a browser would remember the credentials and send them on
    // cross-site requests; clients that speak Basic send it unasked.
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// The token an `Authorization` value carries: a `Bearer` token, or the password of
/// `Basic` credentials; schemes in any case.
fn presented_token(authorization: &str) -> Option<String> {
    let (scheme, credentials) = authorization.trim().split_once(' ')?;
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(credentials.to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        use base64::Engine;
        let decoded = base64::engine::general_purpose::STANDARD.decode(credentials).ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (_user, password) = decoded.split_once(':')?;
        return Some(password.to_owned());
    }
    None
}

/// Compares in time independent of where the two differ.
fn same(presented: &[u8], expected: &[u8]) -> bool {
    let mut difference = presented.len() ^ expected.len();
    for (index, byte) in expected.iter().enumerate() {
        difference |= usize::from(presented.get(index).copied().unwrap_or(0) ^ byte);
    }
    difference == 0
}

/// The token to require: the configured one, else the environment's; empty is none.
pub fn configured_token(configured: Option<&str>) -> Option<Arc<str>> {
    configured
        .map(str::to_owned)
        .or_else(|| std::env::var("WASM_CONNECT_ADMIN_TOKEN").ok())
        .filter(|token| !token.trim().is_empty())
        .map(|token| Arc::from(token.trim()))
}

#[cfg(test)]
mod tests {
    use super::{presented_token, same};

    #[test]
    fn bearer_and_basic_in_any_case() {
        assert_eq!(presented_token("Bearer s3cr3t").as_deref(), Some("s3cr3t"));
        assert_eq!(presented_token("bearer s3cr3t").as_deref(), Some("s3cr3t"));
        assert_eq!(presented_token("BEARER   s3cr3t ").as_deref(), Some("s3cr3t"));
        // "admin:s3cr3t" and ":s3cr3t"
        assert_eq!(presented_token("Basic YWRtaW46czNjcjN0").as_deref(), Some("s3cr3t"));
        assert_eq!(presented_token("basic OnMzY3IzdA==").as_deref(), Some("s3cr3t"));
        assert_eq!(presented_token("Basic not-base64!"), None);
        assert_eq!(presented_token("Digest s3cr3t"), None);
        assert_eq!(presented_token("s3cr3t"), None);
    }

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(same(b"s3cr3t", b"s3cr3t"));
        assert!(!same(b"s3cr3", b"s3cr3t"));
        assert!(!same(b"s3cr3tt", b"s3cr3t"));
        assert!(!same(b"S3cr3t", b"s3cr3t"));
        assert!(!same(b"", b"s3cr3t"));
    }
}
