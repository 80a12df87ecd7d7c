//! The optional bearer token: when one is configured (`admin.token`, or the
//! `WASM_CONNECT_ADMIN_TOKEN` environment variable), every request but `GET /health`
//! must carry `Authorization: Bearer <token>`; anything else is answered 401.

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
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    if presented.is_some_and(|presented| same(presented.as_bytes(), token.as_bytes())) {
        return next.run(request).await;
    }
    let message = match presented {
        None => "this API needs a bearer token: send Authorization: Bearer <token> (admin.token or WASM_CONNECT_ADMIN_TOKEN)",
        Some(_) => "the bearer token is wrong: send the one configured as admin.token or WASM_CONNECT_ADMIN_TOKEN",
    };
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, message.to_owned()).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
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
    use super::same;

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(same(b"s3cr3t", b"s3cr3t"));
        assert!(!same(b"s3cr3", b"s3cr3t"));
        assert!(!same(b"s3cr3tt", b"s3cr3t"));
        assert!(!same(b"S3cr3t", b"s3cr3t"));
        assert!(!same(b"", b"s3cr3t"));
    }
}
