//! `elasticsearch`: bulk writes (and single requests for templates and mappings) to
//! Elasticsearch 8 and 9 or OpenSearch through the `elasticsearch` crate. The client
//! sends plain `application/json`, which all three accept (a `compatible-with` media
//! type is refused by OpenSearch).
//!
//! The host retries what is transient: a request that cannot be sent or is answered
//! 429 / 502 / 503 / 504, and bulk items answered 429 or 5xx. What still fails after
//! that goes back to the plugin, item by item, for it to decide.

use std::time::Duration;

use elasticsearch::auth::Credentials;
use elasticsearch::http::headers::HeaderMap;
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::http::{Method as HttpMethod, Url};
use elasticsearch::{BulkParts, Elasticsearch};
use serde_json::Value;
use tokio::sync::Semaphore;

use super::redact_url;
use super::stores::{MAX_IN_FLIGHT_PER_ENDPOINT, REQUEST_ATTEMPTS, retry_pause};
use crate::runtime::TaskState;
use crate::runtime::bindings::capabilities::wasm_connect::connector::elasticsearch::{
    BulkAction, BulkOperation, BulkOutcome, Connection, Host, Method,
};
use crate::runtime::bindings::types::Error;

/// Longest one request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Rounds of retrying bulk items answered 429 or 5xx.
const ITEM_ATTEMPTS: u32 = 3;

/// One pooled client: an endpoint and an identity.
pub(crate) struct ElasticsearchClient {
    client: Elasticsearch,
    in_flight: Semaphore,
    shown_url: String,
}

impl ElasticsearchClient {
    pub(super) fn new(connection: &Connection) -> Result<Self, Error> {
        let shown_url = redact_url(&connection.url);
        let url = Url::parse(&connection.url).map_err(|error| Error::BadConfig(format!("{shown_url} is not a valid URL: {error}")))?;
        let mut transport = TransportBuilder::new(SingleNodeConnectionPool::new(url)).timeout(REQUEST_TIMEOUT).disable_proxy();
        match (&connection.api_key, &connection.username) {
            (Some(api_key), _) => transport = transport.auth(Credentials::EncodedApiKey(api_key.clone())),
            (None, Some(username)) => {
                transport = transport.auth(Credentials::Basic(username.clone(), connection.password.clone().unwrap_or_default()))
            }
            (None, None) => {}
        }
        let transport =
            transport.build().map_err(|error| Error::Fatal(format!("cannot build an Elasticsearch client for {shown_url}: {error}")))?;
        Ok(Self { client: Elasticsearch::new(transport), in_flight: Semaphore::new(MAX_IN_FLIGHT_PER_ENDPOINT), shown_url })
    }

    /// Sends every operation, retrying transient failures, and returns one outcome each.
    pub(crate) async fn bulk(&self, operations: &[BulkOperation]) -> Result<Vec<BulkOutcome>, Error> {
        let mut outcomes: Vec<Option<BulkOutcome>> = vec![None; operations.len()];
        let mut pending: Vec<usize> = Vec::with_capacity(operations.len());
        let mut lines: Vec<Vec<u8>> = Vec::with_capacity(operations.len() * 2);
        for (position, operation) in operations.iter().enumerate() {
            match bulk_lines(operation) {
                Ok(item) => {
                    pending.push(position);
                    lines.extend(item);
                }
                Err(reason) => outcomes[position] = Some(refused(400, "document_parsing_exception", reason)),
            }
        }
        for round in 1..=ITEM_ATTEMPTS {
            if pending.is_empty() {
                break;
            }
            let items = self.send_bulk(lines).await?;
            if items.len() != pending.len() {
                return Err(Error::Fatal(format!(
                    "{} answered a bulk request of {} items with {} results",
                    self.shown_url,
                    pending.len(),
                    items.len()
                )));
            }
            let mut again = Vec::new();
            for (position, item) in pending.iter().zip(items) {
                let transient = item.status == 429 || item.status >= 500;
                outcomes[*position] = Some(item);
                if transient {
                    again.push(*position);
                }
            }
            if again.is_empty() || round == ITEM_ATTEMPTS {
                break;
            }
            retry_pause(round).await;
            lines = again.iter().flat_map(|position| bulk_lines(&operations[*position]).expect("encoded once already")).collect();
            pending = again;
        }
        Ok(outcomes.into_iter().map(|outcome| outcome.expect("every item has an outcome")).collect())
    }

    async fn send_bulk(&self, lines: Vec<Vec<u8>>) -> Result<Vec<BulkOutcome>, Error> {
        let _permit = self.in_flight.acquire().await.expect("the semaphore is never closed");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = self.client.bulk(BulkParts::None).body(lines.clone()).send().await;
            let failure = match sent {
                Ok(response) => {
                    let status = response.status_code().as_u16();
                    if (200..300).contains(&status) {
                        let body: Value = response
                            .json()
                            .await
                            .map_err(|error| Error::Retriable(format!("{}: unreadable bulk response: {error}", self.shown_url)))?;
                        return parse_bulk_items(&body)
                            .ok_or_else(|| Error::Fatal(format!("{}: the bulk response has no items", self.shown_url)));
                    }
                    let body = response.text().await.unwrap_or_default();
                    let failure = self.status_failure(status, &body);
                    if !matches!(failure, Error::Retriable(_)) {
                        return Err(failure);
                    }
                    failure
                }
                Err(error) => Error::Retriable(format!("cannot reach Elasticsearch at {}: {error}", self.shown_url)),
            };
            if attempt >= REQUEST_ATTEMPTS {
                return Err(failure);
            }
            retry_pause(attempt).await;
        }
    }

    /// What a whole-request error status means.
    fn status_failure(&self, status: u16, body: &str) -> Error {
        let excerpt: String = body.chars().take(300).collect();
        match status {
            401 | 403 => Error::Fatal(format!(
                "{} refused the credentials ({status}); check the api_key or username and password options",
                self.shown_url
            )),
            413 => Error::Fatal(format!("{} refused a bulk request as too large (413); lower bulk_max_bytes", self.shown_url)),
            429 | 502 | 503 | 504 => Error::Retriable(format!("{} is overloaded or unavailable ({status}): {excerpt}", self.shown_url)),
            _ => Error::Fatal(format!("{} answered {status}: {excerpt}", self.shown_url)),
        }
    }

    /// One request for anything but documents.
    pub(crate) async fn request(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<(u16, Vec<u8>), Error> {
        if !path.starts_with('/') || path.contains("://") || path.contains("..") {
            return Err(Error::BadConfig(format!("request path {path:?} must be an absolute path on the granted URL")));
        }
        let method = match method {
            Method::Get => HttpMethod::Get,
            Method::Put => HttpMethod::Put,
            Method::Post => HttpMethod::Post,
            Method::Delete => HttpMethod::Delete,
            Method::Head => HttpMethod::Head,
        };
        let _permit = self.in_flight.acquire().await.expect("the semaphore is never closed");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = self.client.send(method, path, HeaderMap::new(), None::<&()>, body.clone(), None).await;
            let failure = match sent {
                Ok(response) => {
                    let status = response.status_code().as_u16();
                    if !matches!(status, 429 | 502 | 503 | 504) {
                        let bytes = response
                            .bytes()
                            .await
                            .map_err(|error| Error::Retriable(format!("{}: unreadable response: {error}", self.shown_url)))?;
                        return Ok((status, bytes.to_vec()));
                    }
                    self.status_failure(status, "")
                }
                Err(error) => Error::Retriable(format!("cannot reach Elasticsearch at {}: {error}", self.shown_url)),
            };
            if attempt >= REQUEST_ATTEMPTS {
                return Err(failure);
            }
            retry_pause(attempt).await;
        }
    }
}

fn refused(status: u16, error_type: &str, reason: String) -> BulkOutcome {
    BulkOutcome { status, error_type: Some(error_type.to_owned()), reason: Some(reason) }
}

/// The action line and, except for deletes, the source line of one bulk item. A
/// document must be one line of JSON; one spread over lines is compacted first.
fn bulk_lines(operation: &BulkOperation) -> Result<Vec<Vec<u8>>, String> {
    let action = match operation.action {
        BulkAction::Index => "index",
        BulkAction::Create => "create",
        BulkAction::Upsert => "update",
        BulkAction::Delete => "delete",
    };
    let mut target = serde_json::Map::new();
    target.insert("_index".to_owned(), Value::String(operation.index.clone()));
    if let Some(id) = &operation.id {
        target.insert("_id".to_owned(), Value::String(id.clone()));
    }
    if operation.id.is_none() && matches!(operation.action, BulkAction::Upsert | BulkAction::Delete) {
        return Err(format!("a bulk {action} needs a document id"));
    }
    let action_line = serde_json::to_vec(&serde_json::json!({ action: target })).expect("JSON always serialises");
    if operation.action == BulkAction::Delete {
        return Ok(vec![action_line]);
    }
    let document = operation.document.as_deref().ok_or_else(|| format!("a bulk {action} needs a document"))?;
    let document = if document.contains(&b'\n') || document.contains(&b'\r') {
        let value: Value = serde_json::from_slice(document).map_err(|error| format!("the document is not JSON: {error}"))?;
        serde_json::to_vec(&value).expect("JSON always serialises")
    } else {
        document.to_vec()
    };
    let source_line = if operation.action == BulkAction::Upsert {
        let mut line = Vec::with_capacity(document.len() + 32);
        line.extend_from_slice(b"{\"doc\":");
        line.extend_from_slice(&document);
        line.extend_from_slice(b",\"doc_as_upsert\":true}");
        line
    } else {
        document
    };
    Ok(vec![action_line, source_line])
}

/// The outcome of every item of a bulk response, in order.
fn parse_bulk_items(body: &Value) -> Option<Vec<BulkOutcome>> {
    let items = body.get("items")?.as_array()?;
    Some(
        items
            .iter()
            .map(|item| {
                let result = item.as_object().and_then(|object| object.values().next()).unwrap_or(&Value::Null);
                let status = result.get("status").and_then(Value::as_u64).unwrap_or(500) as u16;
                let error = result.get("error");
                BulkOutcome {
                    status,
                    error_type: error.and_then(|error| error.get("type")).and_then(Value::as_str).map(str::to_owned),
                    reason: error.and_then(|error| error.get("reason")).and_then(Value::as_str).map(str::to_owned),
                }
            })
            .collect(),
    )
}

impl Host for TaskState {
    fn bulk(&mut self, connection: Connection, operations: Vec<BulkOperation>) -> Result<Vec<BulkOutcome>, Error> {
        self.grants.check_elasticsearch(&connection.url)?;
        self.write_to_store(|stores| {
            let client = stores.elasticsearch(&connection)?;
            stores.block_on(client.bulk(&operations))
        })
    }

    fn request(&mut self, connection: Connection, method: Method, path: String, body: Option<Vec<u8>>) -> Result<(u16, Vec<u8>), Error> {
        self.grants.check_elasticsearch(&connection.url)?;
        self.in_host(|stores| {
            let client = stores.elasticsearch(&connection)?;
            stores.block_on(client.request(method, &path, body))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operation(action: BulkAction, document: Option<&str>) -> BulkOperation {
        BulkOperation {
            action,
            index: "flights".into(),
            id: Some("4ca7b5".into()),
            document: document.map(|text| text.as_bytes().to_vec()),
        }
    }

    #[test]
    fn bulk_lines_per_action() {
        let text = |lines: Vec<Vec<u8>>| lines.into_iter().map(|line| String::from_utf8(line).unwrap()).collect::<Vec<_>>();
        assert_eq!(
            text(bulk_lines(&operation(BulkAction::Index, Some(r#"{"a":1}"#))).unwrap()),
            [r#"{"index":{"_index":"flights","_id":"4ca7b5"}}"#, r#"{"a":1}"#]
        );
        assert_eq!(
            text(bulk_lines(&operation(BulkAction::Upsert, Some("{\n \"a\": 1\n}"))).unwrap()),
            [r#"{"update":{"_index":"flights","_id":"4ca7b5"}}"#, r#"{"doc":{"a":1},"doc_as_upsert":true}"#]
        );
        assert_eq!(text(bulk_lines(&operation(BulkAction::Delete, None)).unwrap()), [r#"{"delete":{"_index":"flights","_id":"4ca7b5"}}"#]);
        assert!(bulk_lines(&operation(BulkAction::Index, Some("{\n broken"))).is_err());
    }

    #[test]
    fn bulk_items_keep_their_order_and_errors() {
        let body = serde_json::json!({"items": [
            {"index": {"status": 201}},
            {"create": {"status": 409, "error": {"type": "version_conflict_engine_exception", "reason": "exists"}}},
        ]});
        let items = parse_bulk_items(&body).unwrap();
        assert_eq!(items[0].status, 201);
        assert_eq!(items[1].error_type.as_deref(), Some("version_conflict_engine_exception"));
    }
}
