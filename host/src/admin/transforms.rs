//! `POST /connectors/{name}/transforms/test` and `POST /transforms/test`: sample
//! records through a connector's chain, or through the chain of a configuration that
//! needs no connector, showing what each transform made of them. Nothing is written.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::connector_config::{MAX_CONFIG_KEYS, chain_from_flat, flat_key};
use super::dto::{ConfigTransformsTest, TransformsTest, TransformsTestAnswer};
use super::{AdminState, ApiError, json_body_within};
use crate::config::{PredicateConfig, TransformConfig, validate_chain};
use crate::transforms::sample::{SampleRecord, samples_from, test_samples};
use crate::transforms::{Chain, ChainPlugins, WasmTransforms};

/// The topic of a sample that names none: the connector's (first) topic.
fn default_topic(topic: Option<&String>, topics: &[String]) -> String {
    topic.or(topics.first()).cloned().unwrap_or_else(|| "test".to_owned())
}

/// `body` with an empty `records` array in place of the samples (read on their own).
fn without_records(mut body: serde_json::Value) -> serde_json::Value {
    if let Some(records) = body.get_mut("records") {
        *records = serde_json::Value::Array(Vec::new());
    }
    body
}

/// The most object keys a test's body may hold: its samples' fields and values.
const MAX_TEST_KEYS: usize = 50_000;
const MAX_TEST_KEYS_WHY: &str = "the samples of one test, with their values' fields";
/// The largest answer a test gives (each stage repeats the record).
const MAX_ANSWER_BYTES: usize = 32 << 20;

/// Runs the samples off the async threads (a jq expression may take its time), one
/// by one, until the answer would pass `MAX_ANSWER_BYTES`.
async fn run(
    state: &AdminState,
    chain: Arc<Chain>,
    records: Vec<SampleRecord>,
    topic: String,
) -> Result<Json<TransformsTestAnswer>, ApiError> {
    let runtime = state.manager.context().runtime.clone();
    let tested = tokio::task::spawn_blocking(move || {
        // The chain's WASM transforms, opened for this test alone.
        let mut wasm = WasmTransforms::open(&chain, &runtime, "(transforms test)", 0, None)
            .map_err(|failure| ApiError::bad_request(chain.redact(&format!("the transforms could not be opened: {failure}"))))?;
        let mut tested = Vec::with_capacity(records.len());
        let mut bytes = 0;
        for sample in &records {
            let answer = test_samples(&chain, &mut wasm, std::slice::from_ref(sample), &topic).remove(0);
            bytes += serde_json::to_vec(&answer).map_or(0, |text| text.len());
            if bytes > MAX_ANSWER_BYTES {
                return Err(ApiError::bad_request(format!(
                    "the answer would pass {} MiB after {} of {} records (every stage shows the record): send fewer or smaller ones",
                    MAX_ANSWER_BYTES >> 20,
                    tested.len(),
                    records.len()
                )));
            }
            tested.push(answer);
        }
        Ok(tested)
    })
    .await
    .map_err(|error| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("the transforms' thread failed: {error}")))??;
    Ok(Json(TransformsTestAnswer { records: tested }))
}

/// `POST /connectors/{name}/transforms/test` with `{"records": [...]}`.
pub(super) async fn test_connector(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<TransformsTestAnswer>, ApiError> {
    let connector = state.manager.connector(&name)?;
    let body = json_body_within(body, MAX_TEST_KEYS, MAX_TEST_KEYS_WHY)?;
    let records = samples_from(&body["records"]).map_err(ApiError::bad_request)?;
    // The records read above; this checks the rest of the body's shape.
    let _: TransformsTest = serde_json::from_value(without_records(body))
        .map_err(|error| ApiError::bad_request(format!("the body must be {{\"records\": [{{\"value\": ...}}, ...]}}: {error}")))?;
    let chain = match &connector.plan {
        Ok(plan) => plan.chain.clone(),
        // A connector that cannot run (its plugin is missing, say) still has its chain.
        Err(_) => {
            let (transforms, predicates) = (connector.config.transforms.clone(), connector.config.predicates.clone());
            Arc::new(build_chain(&state, transforms, predicates).await?)
        }
    };
    run(&state, chain, records, default_topic(connector.config.topic.as_ref(), &connector.config.topics)).await
}

/// `POST /transforms/test` with `{"config": {flat keys}, "records": [...]}`.
pub(super) async fn test_config(
    State(state): State<AdminState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<TransformsTestAnswer>, ApiError> {
    let body = json_body_within(body, MAX_TEST_KEYS, MAX_TEST_KEYS_WHY)?;
    let records = samples_from(&body["records"]).map_err(ApiError::bad_request)?;
    let request: ConfigTransformsTest = serde_json::from_value(without_records(body)).map_err(|error| {
        ApiError::bad_request(format!(
            "the body must be {{\"config\": {{\"transforms\": ..., ...}}, \"records\": [{{\"value\": ...}}, ...]}}: {error}"
        ))
    })?;
    if request.config.len() > MAX_CONFIG_KEYS {
        return Err(ApiError::bad_request(format!(
            "the config has {} keys; a connector configuration has at most {MAX_CONFIG_KEYS}",
            request.config.len()
        )));
    }
    let flat: BTreeMap<String, String> = request.config.into_iter().map(|(key, value)| (key, value.into_text())).collect();
    let mut problems = Vec::new();
    let (transforms, predicates, _unlisted) = chain_from_flat(&flat, &mut problems);
    if problems.is_empty() {
        problems = validate_chain(&transforms, &predicates).into_iter().map(|(key, message)| (flat_key(&key), message)).collect();
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid_config(&problems));
    }
    let chain = build_chain(&state, transforms, predicates).await?;
    let topics: Vec<String> =
        flat.get("topics").map(|topics| topics.split(',').map(|topic| topic.trim().to_owned()).collect()).unwrap_or_default();
    run(&state, Arc::new(chain), records, default_topic(flat.get("topic"), &topics)).await
}

/// Builds a chain against the host's plugins, off the async threads (a WASM
/// transform's plugin validates its options).
async fn build_chain(state: &AdminState, transforms: Vec<TransformConfig>, predicates: Vec<PredicateConfig>) -> Result<Chain, ApiError> {
    let (catalog, runtime) = (state.manager.catalog(), state.manager.context().runtime.clone());
    tokio::task::spawn_blocking(move || Chain::build(&transforms, &predicates, &ChainPlugins::new(&catalog, &runtime)))
        .await
        .map_err(|error| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("the transforms' thread failed: {error}")))?
        .map_err(|problems| ApiError::invalid_config(&problems))
}
