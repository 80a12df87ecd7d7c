//! The one table of the API's endpoints: the router is built from it, and so is
//! `GET /openapi.json`, so the document cannot drift from what is served.

use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::routing::{MethodFilter, MethodRouter, on};
use serde_json::{Map, Value, json};

use super::{AdminState, connector_plugins, connectors, loggers, offsets, plugins};

/// What a request carries in its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Body {
    /// Nothing.
    None,
    /// A JSON document, described in words.
    Json(&'static str),
    /// A plugin component (`application/wasm`).
    Component,
}

/// One method on one path.
pub(super) struct Endpoint {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub query: &'static [(&'static str, &'static str)],
    pub body: Body,
    pub responses: &'static [(u16, &'static str)],
    pub handler: MethodRouter<AdminState>,
}

fn endpoint<H, T>(
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    body: Body,
    responses: &'static [(u16, &'static str)],
    handler: H,
) -> Endpoint
where
    H: Handler<T, AdminState>,
    T: 'static,
{
    let filter = match method {
        "GET" => MethodFilter::GET,
        "POST" => MethodFilter::POST,
        "PUT" => MethodFilter::PUT,
        "PATCH" => MethodFilter::PATCH,
        "DELETE" => MethodFilter::DELETE,
        other => unreachable!("no endpoint uses {other}"),
    };
    Endpoint { method, path, summary, query: &[], body, responses, handler: on(filter, handler) }
}

impl Endpoint {
    fn query(mut self, query: &'static [(&'static str, &'static str)]) -> Self {
        self.query = query;
        self
    }
}

const FOUND: &[(u16, &str)] = &[(200, "OK"), (404, "no such connector")];
const CHANGED: &[(u16, &str)] = &[(400, "the body or configuration is invalid; the message lists every problem"), (404, "no such connector"), (409, "the file owns this connector, or the name is taken")];

/// Every endpoint of the admin API.
pub(super) fn endpoints(max_plugin_bytes: usize) -> Vec<Endpoint> {
    vec![
        endpoint("GET", "/", "The host's version.", Body::None, &[(200, "version, commit, kafka_cluster_id")], super::root),
        endpoint("GET", "/health", "Whether the host runs, and what became of the configuration file's latest version (no token needed).", Body::None, &[(200, "healthy")], super::health),
        endpoint("GET", "/metrics", "Prometheus / OpenMetrics metrics.", Body::None, &[(200, "metrics text")], super::metrics),
        endpoint("GET", "/openapi.json", "This document.", Body::None, &[(200, "OpenAPI 3 document")], super::openapi),
        endpoint("GET", "/connectors", "The connectors' names, or with expand their status and info.", Body::None, &[(200, "names, or a map of expansions")], connectors::list)
            .query(&[("expand", "status or info; repeatable or comma-separated")]),
        endpoint("POST", "/connectors", "Creates a connector owned by the API.", Body::Json("{\"name\", \"config\": flat string map, \"initial_state\"?: RUNNING|PAUSED|STOPPED}"), &[(201, "the connector's info"), (400, "the body or configuration is invalid"), (409, "the name is taken")], connectors::create),
        endpoint("GET", "/connectors/{name}", "A connector's info: name, config, tasks, type.", Body::None, FOUND, connectors::info),
        endpoint("DELETE", "/connectors/{name}", "Deletes an API-owned connector.", Body::None, &[(204, "deleted"), (404, "no such connector"), (409, "the file owns this connector")], connectors::delete),
        endpoint("GET", "/connectors/{name}/status", "A connector's and its tasks' states.", Body::None, FOUND, connectors::status),
        endpoint("GET", "/connectors/{name}/config", "The flat configuration; secrets read [hidden].", Body::None, FOUND, connectors::config),
        endpoint("PUT", "/connectors/{name}/config", "Replaces the configuration, or creates the connector.", Body::Json("flat string map"), &[(200, "updated: the info"), (201, "created: the info"), (400, "invalid"), (409, "the file owns this connector")], connectors::put_config),
        endpoint("PATCH", "/connectors/{name}/config", "Merges keys into the configuration; null removes a key.", Body::Json("flat map of strings or nulls"), CHANGED, connectors::patch_config),
        endpoint("POST", "/connectors/{name}/restart", "Restarts the connector, and with includeTasks its tasks.", Body::None, &[(202, "the status after the restart"), (204, "restarted"), (404, "no such connector")], connectors::restart)
            .query(&[("includeTasks", "true, or false (the default; any other value reads as false, as in Kafka Connect)"), ("onlyFailed", "true, or false (the default; any other value reads as false)")]),
        endpoint("PUT", "/connectors/{name}/pause", "Pauses the connector: its tasks stop until resumed.", Body::None, &[(202, "pausing"), (404, "no such connector")], connectors::pause),
        endpoint("PUT", "/connectors/{name}/resume", "Resumes a paused or stopped connector.", Body::None, &[(202, "resuming"), (404, "no such connector")], connectors::resume),
        endpoint("PUT", "/connectors/{name}/stop", "Stops the connector: no tasks; offsets may then change.", Body::None, &[(204, "stopped"), (404, "no such connector")], connectors::stop),
        endpoint("GET", "/connectors/{name}/tasks", "Each task with its configuration.", Body::None, FOUND, connectors::tasks),
        endpoint("GET", "/connectors/{name}/tasks-config", "Each task's configuration, by task id.", Body::None, FOUND, connectors::tasks_config),
        endpoint("GET", "/connectors/{name}/tasks/{task}/status", "One task's state.", Body::None, &[(200, "OK"), (404, "no such connector or task")], connectors::task_status),
        endpoint("POST", "/connectors/{name}/tasks/{task}/restart", "Restarts one task.", Body::None, &[(204, "restarted"), (404, "no such connector or task"), (409, "the connector is not running")], connectors::restart_task),
        endpoint("GET", "/connectors/{name}/offsets", "A sink's committed offsets, or a source's position.", Body::None, FOUND, offsets::get),
        endpoint("PATCH", "/connectors/{name}/offsets", "Changes the offsets of a STOPPED connector.", Body::Json("{\"offsets\": [{\"partition\": {...}, \"offset\": {...} | null}]}"), &[(200, "altered"), (400, "not STOPPED, or the body is invalid"), (404, "no such connector")], offsets::alter),
        endpoint("DELETE", "/connectors/{name}/offsets", "Forgets every offset of a STOPPED connector.", Body::None, &[(200, "reset"), (400, "not STOPPED"), (404, "no such connector")], offsets::reset),
        endpoint("GET", "/connectors/{name}/topics", "The connector's topics.", Body::None, FOUND, connectors::topics),
        endpoint("PUT", "/connectors/{name}/topics/reset", "Accepted; the topics shown are the configured ones.", Body::None, &[(202, "accepted"), (404, "no such connector")], connectors::reset_topics),
        endpoint("GET", "/connector-plugins", "The plugins, as Kafka Connect lists them.", Body::None, &[(200, "[{class, type, version}]")], connector_plugins::list)
            .query(&[("connectorsOnly", "true (default), or anything else to list transforms too")]),
        endpoint("GET", "/connector-plugins/{plugin}/config", "A plugin's option definitions.", Body::None, &[(200, "definitions"), (404, "no such plugin")], connector_plugins::config_definitions),
        endpoint("PUT", "/connector-plugins/{plugin}/config/validate", "Validates a configuration without creating anything.", Body::Json("flat string map"), &[(200, "{name, error_count, groups, configs}"), (400, "the body is invalid"), (404, "no such plugin")], connector_plugins::validate),
        endpoint("POST", "/plugins", "Uploads a plugin component while the host runs.", Body::Component, &[(200, "that very component was already there"), (201, "added: its description"), (400, "not a usable plugin"), (409, "the version is taken by other content"), (413, "larger than plugins.max_upload_mib"), (429, "two other uploads are being read")], plugins::upload.layer(DefaultBodyLimit::max(max_plugin_bytes))),
        endpoint("GET", "/plugins", "Every plugin version, with digest, origin and users.", Body::None, &[(200, "OK")], plugins::list),
        endpoint("GET", "/plugins/{name}", "A plugin's versions.", Body::None, &[(200, "OK"), (404, "no such plugin")], plugins::versions),
        endpoint("DELETE", "/plugins/{name}", "Removes every uploaded version of a plugin.", Body::None, &[(204, "removed"), (404, "no such plugin"), (409, "in use, or from plugins.dir")], plugins::delete_all),
        endpoint("GET", "/plugins/{name}/{version}", "One plugin version.", Body::None, &[(200, "OK"), (404, "no such plugin")], plugins::version),
        endpoint("DELETE", "/plugins/{name}/{version}", "Removes an uploaded plugin version.", Body::None, &[(204, "removed"), (404, "no such plugin"), (409, "in use, or from plugins.dir")], plugins::delete_version),
        endpoint("GET", "/admin/loggers", "Every logger's level.", Body::None, &[(200, "OK")], loggers::list),
        endpoint("GET", "/admin/loggers/{logger}", "One logger's level.", Body::None, &[(200, "OK")], loggers::get),
        endpoint("PUT", "/admin/loggers/{logger}", "Sets a logger's level.", Body::Json("{\"level\": \"DEBUG\"}"), &[(200, "the loggers changed"), (400, "not a level or logger")], loggers::set),
    ]
}

/// The OpenAPI 3 document of `endpoints`.
pub(super) fn openapi(endpoints: &[Endpoint]) -> Value {
    let mut paths = Map::new();
    for endpoint in endpoints {
        let mut parameters: Vec<Value> = endpoint
            .path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        parameters.extend(
            endpoint.query.iter().map(|(name, about)| json!({"name": name, "in": "query", "required": false, "description": about, "schema": {"type": "string"}})),
        );
        let mut responses = Map::new();
        for (status, about) in endpoint.responses {
            let content = match status {
                204 => Value::Null,
                200 if endpoint.path == "/metrics" => json!({"application/openmetrics-text": {"schema": {"type": "string"}}, "text/plain": {"schema": {"type": "string"}}}),
                400.. => json!({"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}),
                _ => json!({"application/json": {"schema": {}}}),
            };
            let mut response = json!({"description": about});
            if !content.is_null() {
                response["content"] = content;
            }
            responses.insert(status.to_string(), response);
        }
        let error = json!({"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}});
        responses.insert("401".into(), json!({"description": "a token is configured and the request lacks it", "content": error}));
        responses.insert("403".into(), json!({"description": "the request carries an Origin that admin.allowed_origins does not list", "content": error}));
        responses.insert("408".into(), json!({"description": "the request's body did not arrive within admin.request_timeout", "content": error}));
        if endpoint.body != Body::None || endpoint.method != "GET" {
            responses.insert("415".into(), json!({"description": "the body's Content-Type is not the one this endpoint takes", "content": error}));
        }
        let method = endpoint.method.to_ascii_lowercase();
        let mut operation = json!({
            "summary": endpoint.summary,
            "operationId": format!("{method}{}", endpoint.path.replace(['/', '{', '}', '-', '.'], "_")),
            "parameters": parameters,
            "responses": responses,
        });
        match endpoint.body {
            Body::None => {}
            Body::Json(about) => {
                operation["requestBody"] = json!({"required": true, "description": about, "content": {"application/json": {"schema": {"type": "object"}}}});
            }
            Body::Component => {
                operation["requestBody"] = json!({"required": true, "content": {
                    "application/wasm": {"schema": {"type": "string", "format": "binary"}},
                }});
            }
        }
        if endpoint.path == "/health" {
            operation["security"] = json!([]);
        }
        let item = paths.entry(endpoint.path.to_owned()).or_insert_with(|| json!({}));
        item[method] = operation;
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "wasm-connect admin API", "version": env!("CARGO_PKG_VERSION"), "description": "Kafka Connect's REST API, plus plugins uploaded while the host runs."},
        "paths": paths,
        "components": {
            "schemas": {"Error": {"type": "object", "required": ["error_code", "message"], "properties": {"error_code": {"type": "integer"}, "message": {"type": "string"}}}},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}, "basic": {"type": "http", "scheme": "basic"}},
        },
        "security": [{"bearer": []}, {"basic": []}],
    })
}
