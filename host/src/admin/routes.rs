//! The one table of the API's endpoints: the router is built from it, and so is
//! `GET /openapi.json`, with the schemas of the very types the handlers take and
//! answer ([`super::dto`]), so the document cannot drift from what is served.

use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::routing::{MethodFilter, MethodRouter, on};
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::{JsonSchema, Schema};
use serde_json::{Map, Value, json};

use super::dto::{
    ConfigInfos, ConfigKeyDefinition, ConfigPatch, ConfigRequest, ConfigTransformsTest, ConnectorInfo, ConnectorList, ConnectorOffsets,
    ConnectorPlugin, ConnectorTopics, CreateConnector, ErrorBody, FlatConfig, Health, LevelRequest, Message, OffsetsChangeRequest,
    PluginVersion, PluginVersions, ProcessorState, ServerInfo, TaskInfo, TransformsTest, TransformsTestAnswer,
};
use super::{AdminState, connector_plugins, connectors, loggers, offsets, plugins, processor_state, transforms};
use crate::names::{LOGGER_PATTERN, MAX_VERSION_LENGTH, NAME_PATTERN, VERSION_PATTERN};
use crate::telemetry::logging::LoggerLevel;
use crate::telemetry::{ConnectorStatus, TaskStatus};

/// How a body's JSON Schema is made.
pub(super) type SchemaOf = fn(&mut SchemaGenerator) -> Schema;

/// The schema of `T`, as a reference into the document's components.
fn schema<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// What a request carries in its body.
#[derive(Debug, Clone, Copy)]
pub(super) enum Body {
    /// Nothing.
    None,
    /// A JSON document of this schema.
    Json(SchemaOf),
    /// A plugin component (`application/wasm`).
    Component,
}

/// One status an endpoint answers, with what its body is.
pub(super) struct Answer {
    status: u16,
    about: &'static str,
    body: Option<SchemaOf>,
}

/// An answer with a JSON body of type `T`.
fn with<T: JsonSchema>(status: u16, about: &'static str) -> Answer {
    Answer { status, about, body: Some(schema::<T>) }
}

/// An answer without a body, or an error (whose body is always [`ErrorBody`]).
fn bare(status: u16, about: &'static str) -> Answer {
    Answer { status, about, body: None }
}

/// One method on one path.
pub(super) struct Endpoint {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub query: &'static [(&'static str, &'static str)],
    pub body: Body,
    pub answers: Vec<Answer>,
    pub handler: MethodRouter<AdminState>,
}

fn endpoint<H, T>(method: &'static str, path: &'static str, summary: &'static str, body: Body, answers: Vec<Answer>, handler: H) -> Endpoint
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
    Endpoint { method, path, summary, query: &[], body, answers, handler: on(filter, handler) }
}

impl Endpoint {
    fn query(mut self, query: &'static [(&'static str, &'static str)]) -> Self {
        self.query = query;
        self
    }
}

fn json<T: JsonSchema>() -> Body {
    Body::Json(schema::<T>)
}

fn no_connector() -> Answer {
    bare(404, "no such connector")
}

fn invalid() -> Answer {
    bare(400, "the body or configuration is invalid; the message lists every problem")
}

/// Every endpoint of the admin API.
pub(super) fn endpoints(max_plugin_bytes: usize) -> Vec<Endpoint> {
    let file_owned = || bare(409, "the configuration file owns this connector, or it is being changed");
    vec![
        endpoint(
            "GET",
            "/",
            "The host's version.",
            Body::None,
            vec![with::<ServerInfo>(200, "version, commit, kafka_cluster_id, worker_id, group_id, assigned_partitions")],
            super::root,
        ),
        endpoint(
            "GET",
            "/health",
            "Whether the host runs, and what became of the configuration file's latest version (no token needed).",
            Body::None,
            vec![with::<Health>(200, "healthy")],
            super::health,
        ),
        endpoint("GET", "/metrics", "Prometheus / OpenMetrics metrics.", Body::None, vec![bare(200, "metrics text")], super::metrics),
        endpoint("GET", "/openapi.json", "This document.", Body::None, vec![bare(200, "OpenAPI 3.1 document")], super::openapi),
        endpoint(
            "GET",
            "/connectors",
            "The connectors' names, or with expand their status and info.",
            Body::None,
            vec![with::<ConnectorList>(200, "names, or a map of expansions by name")],
            connectors::list,
        )
        .query(&[("expand", "status or info; repeatable or comma-separated; other values are ignored")]),
        endpoint(
            "POST",
            "/connectors",
            "Creates a connector owned by the API.",
            json::<CreateConnector>(),
            vec![
                with::<ConnectorInfo>(201, "created: the connector's info; Location is its address"),
                invalid(),
                bare(409, "the name is taken"),
            ],
            connectors::create,
        ),
        endpoint(
            "GET",
            "/connectors/{name}",
            "A connector's info: name, config, tasks, type.",
            Body::None,
            vec![with::<ConnectorInfo>(200, "OK"), no_connector()],
            connectors::info,
        ),
        endpoint(
            "DELETE",
            "/connectors/{name}",
            "Deletes an API-owned connector.",
            Body::None,
            vec![bare(204, "deleted"), no_connector(), file_owned()],
            connectors::delete,
        ),
        endpoint(
            "GET",
            "/connectors/{name}/status",
            "A connector's and its tasks' states.",
            Body::None,
            vec![with::<ConnectorStatus>(200, "OK"), no_connector()],
            connectors::status,
        ),
        endpoint(
            "GET",
            "/connectors/{name}/config",
            "The flat configuration; secrets read [hidden].",
            Body::None,
            vec![with::<FlatConfig>(200, "OK"), no_connector()],
            connectors::config,
        ),
        endpoint(
            "PUT",
            "/connectors/{name}/config",
            "Replaces the configuration, or creates the connector.",
            json::<ConfigRequest>(),
            vec![with::<ConnectorInfo>(200, "updated: the info"), with::<ConnectorInfo>(201, "created: the info"), invalid(), file_owned()],
            connectors::put_config,
        ),
        endpoint(
            "PATCH",
            "/connectors/{name}/config",
            "Merges keys into the configuration; null removes a key.",
            json::<ConfigPatch>(),
            vec![with::<ConnectorInfo>(200, "updated: the info"), invalid(), no_connector(), file_owned()],
            connectors::patch_config,
        ),
        endpoint(
            "POST",
            "/connectors/{name}/restart",
            "Restarts the connector, and with includeTasks its tasks.",
            Body::None,
            vec![
                with::<ConnectorStatus>(202, "the status, instances being restarted shown RESTARTING"),
                bare(204, "restarted"),
                no_connector(),
                bare(409, "the connector is being changed"),
            ],
            connectors::restart,
        )
        .query(&[
            ("includeTasks", "true, or false (the default; any other value reads as false, as in Kafka Connect)"),
            ("onlyFailed", "true, or false (the default; any other value reads as false)"),
        ]),
        endpoint(
            "PUT",
            "/connectors/{name}/pause",
            "Pauses the connector: its tasks stop until resumed.",
            Body::None,
            vec![bare(202, "pausing"), no_connector(), bare(409, "the connector is being changed")],
            connectors::pause,
        ),
        endpoint(
            "PUT",
            "/connectors/{name}/resume",
            "Resumes a paused or stopped connector.",
            Body::None,
            vec![bare(202, "resuming"), no_connector(), bare(409, "the connector is being changed")],
            connectors::resume,
        ),
        endpoint(
            "PUT",
            "/connectors/{name}/stop",
            "Stops the connector: no tasks; offsets may then change.",
            Body::None,
            vec![bare(204, "stopped"), no_connector(), bare(409, "the connector is being changed")],
            connectors::stop,
        ),
        endpoint(
            "GET",
            "/connectors/{name}/tasks",
            "Each task with its configuration.",
            Body::None,
            vec![with::<Vec<TaskInfo>>(200, "OK"), no_connector()],
            connectors::tasks,
        ),
        endpoint(
            "GET",
            "/connectors/{name}/tasks-config",
            "Each task's configuration, by `<name>-<task>`.",
            Body::None,
            vec![with::<std::collections::BTreeMap<String, FlatConfig>>(200, "OK"), no_connector()],
            connectors::tasks_config,
        ),
        endpoint(
            "GET",
            "/connectors/{name}/tasks/{task}/status",
            "One task's state.",
            Body::None,
            vec![with::<TaskStatus>(200, "OK"), bare(404, "no such connector or task")],
            connectors::task_status,
        ),
        endpoint(
            "POST",
            "/connectors/{name}/tasks/{task}/restart",
            "Restarts one task.",
            Body::None,
            vec![bare(204, "restarted"), bare(404, "no such connector or task"), bare(409, "the connector is not running")],
            connectors::restart_task,
        ),
        endpoint(
            "GET",
            "/connectors/{name}/offsets",
            "A sink's committed offsets, or a source's position.",
            Body::None,
            vec![with::<ConnectorOffsets>(200, "OK"), no_connector()],
            offsets::get,
        ),
        endpoint(
            "PATCH",
            "/connectors/{name}/offsets",
            "Changes the offsets of a STOPPED connector.",
            json::<OffsetsChangeRequest>(),
            vec![
                with::<Message>(200, "altered"),
                bare(400, "not STOPPED, the body is invalid, or the offsets cannot be honoured"),
                no_connector(),
                bare(409, "the connector is being changed"),
            ],
            offsets::alter,
        ),
        endpoint(
            "DELETE",
            "/connectors/{name}/offsets",
            "Forgets every offset of a STOPPED connector.",
            Body::None,
            vec![
                with::<Message>(200, "reset"),
                bare(400, "not STOPPED"),
                no_connector(),
                bare(409, "the connector is being changed, or its consumer group is in use"),
            ],
            offsets::reset,
        ),
        endpoint(
            "GET",
            "/connectors/{name}/state",
            "A processor's state as last checkpointed: one key, or the keys with a prefix, a page at a time.",
            Body::None,
            vec![
                with::<ProcessorState>(200, "OK"),
                bare(400, "a bad parameter"),
                no_connector(),
                bare(409, "the connector is not a processor"),
            ],
            processor_state::get,
        )
        .query(&[
            ("key", "one key"),
            ("prefix", "the keys that start with it (with key: that key, if it starts so)"),
            (
                "store",
                "one of the processor's stores (aggregate: windows, stream-time, layout; dedupe: seen, stream-time; threshold: runs)",
            ),
            ("limit", "entries per page, 1 to 1000 (100)"),
            ("offset", "where the page starts (next_offset of the last one)"),
        ]),
        endpoint(
            "GET",
            "/connectors/{name}/topics",
            "The connector's topics.",
            Body::None,
            vec![with::<std::collections::BTreeMap<String, ConnectorTopics>>(200, "OK"), no_connector()],
            connectors::topics,
        ),
        endpoint(
            "PUT",
            "/connectors/{name}/topics/reset",
            "Accepted; the topics shown are the configured ones.",
            Body::None,
            vec![bare(202, "accepted"), no_connector()],
            connectors::reset_topics,
        ),
        endpoint(
            "POST",
            "/connectors/{name}/transforms/test",
            "Runs sample records through the connector's transforms and shows what each made of them; writes nothing.",
            json::<TransformsTest>(),
            vec![with::<TransformsTestAnswer>(200, "each record's stages, output, drop or error"), invalid(), no_connector()],
            transforms::test_connector,
        ),
        endpoint(
            "POST",
            "/transforms/test",
            "Runs sample records through the transforms of a configuration (flat keys); needs no connector.",
            json::<ConfigTransformsTest>(),
            vec![with::<TransformsTestAnswer>(200, "each record's stages, output, drop or error"), invalid()],
            transforms::test_config,
        ),
        endpoint(
            "GET",
            "/connector-plugins",
            "The plugins, as Kafka Connect lists them.",
            Body::None,
            vec![with::<Vec<ConnectorPlugin>>(200, "OK")],
            connector_plugins::list,
        )
        .query(&[("connectorsOnly", "true (the default), or anything else to list transforms too")]),
        endpoint(
            "GET",
            "/connector-plugins/{plugin}/config",
            "A plugin's option definitions.",
            Body::None,
            vec![with::<Vec<ConfigKeyDefinition>>(200, "definitions"), bare(404, "no such plugin")],
            connector_plugins::config_definitions,
        ),
        endpoint(
            "PUT",
            "/connector-plugins/{plugin}/config/validate",
            "Validates a configuration without creating anything.",
            json::<ConfigRequest>(),
            vec![
                with::<ConfigInfos>(200, "every key with its errors; error_count 0 when valid"),
                bare(400, "the body is invalid, or connector.class names another plugin"),
                bare(404, "no such plugin"),
            ],
            connector_plugins::validate,
        ),
        endpoint(
            "POST",
            "/plugins",
            "Uploads a plugin component while the host runs.",
            Body::Component,
            vec![
                with::<PluginVersion>(200, "that very component was already there"),
                with::<PluginVersion>(201, "added: its description"),
                bare(400, "not a usable plugin"),
                bare(409, "the version is taken by other content"),
                bare(413, "larger than plugins.max_upload_mib"),
                bare(429, "two other uploads are being read"),
            ],
            plugins::upload.layer(DefaultBodyLimit::max(max_plugin_bytes)),
        ),
        endpoint(
            "GET",
            "/plugins",
            "Every plugin version, with digest, origin and users.",
            Body::None,
            vec![with::<Vec<PluginVersion>>(200, "OK")],
            plugins::list,
        ),
        endpoint(
            "GET",
            "/plugins/{name}",
            "A plugin's versions.",
            Body::None,
            vec![with::<PluginVersions>(200, "OK"), bare(400, "not a plugin name"), bare(404, "no such plugin")],
            plugins::versions,
        ),
        endpoint(
            "DELETE",
            "/plugins/{name}",
            "Removes every uploaded version of a plugin.",
            Body::None,
            vec![
                bare(204, "removed"),
                bare(400, "not a plugin name"),
                bare(404, "no such plugin"),
                bare(409, "in use, or from plugins.dir"),
            ],
            plugins::delete_all,
        ),
        endpoint(
            "GET",
            "/plugins/{name}/{version}",
            "One plugin version.",
            Body::None,
            vec![with::<PluginVersion>(200, "OK"), bare(400, "not a plugin name or version"), bare(404, "no such plugin")],
            plugins::version,
        ),
        endpoint(
            "DELETE",
            "/plugins/{name}/{version}",
            "Removes an uploaded plugin version.",
            Body::None,
            vec![
                bare(204, "removed"),
                bare(400, "not a plugin name or version"),
                bare(404, "no such plugin"),
                bare(409, "in use, or from plugins.dir"),
            ],
            plugins::delete_version,
        ),
        endpoint(
            "GET",
            "/admin/loggers",
            "Every logger's level.",
            Body::None,
            vec![with::<std::collections::BTreeMap<String, LoggerLevel>>(200, "OK")],
            loggers::list,
        ),
        endpoint(
            "GET",
            "/admin/loggers/{logger}",
            "One logger's level, its own or inherited.",
            Body::None,
            vec![with::<LoggerLevel>(200, "OK"), bare(404, "not a logger name")],
            loggers::get,
        ),
        endpoint(
            "PUT",
            "/admin/loggers/{logger}",
            "Sets a logger's level, and those of the loggers below it.",
            json::<LevelRequest>(),
            vec![
                with::<Vec<String>>(200, "the loggers changed"),
                bare(400, "not a level, or too many loggers"),
                bare(404, "not a logger name"),
            ],
            loggers::set,
        ),
    ]
}

/// The schema of a path parameter.
fn path_parameter(name: &str) -> Value {
    match name {
        "task" => json!({"type": "integer", "minimum": 0, "maximum": u32::MAX}),
        "version" => json!({"type": "string", "pattern": VERSION_PATTERN, "maxLength": MAX_VERSION_LENGTH}),
        "logger" => json!({"type": "string", "pattern": LOGGER_PATTERN}),
        "plugin" => json!({"type": "string", "description": "`name` or `name@version`", "minLength": 1}),
        _ => json!({"type": "string", "pattern": NAME_PATTERN}),
    }
}

/// The schema of a query parameter.
fn query_parameter(name: &str) -> Value {
    match name {
        "limit" => json!({"type": "integer", "minimum": 1, "maximum": processor_state::MAX_PAGE}),
        "offset" => json!({"type": "integer", "minimum": 0, "maximum": processor_state::MAX_OFFSET}),
        "key" | "prefix" => json!({"type": "string", "maxLength": processor_state::MAX_KEY_CHARS}),
        "store" => json!({"type": "string", "maxLength": processor_state::MAX_STORE_CHARS}),
        _ => json!({"type": "string"}),
    }
}

/// Where a response's values lead: the operations that take them as parameters
/// (`$response.body#/...` for each), within the paths under `family`.
struct Producer {
    method: &'static str,
    path: &'static str,
    statuses: &'static [u16],
    family: &'static [&'static str],
    values: &'static [(&'static str, &'static str)],
}

/// Every response that yields a name others take: what lets a client (and a
/// stateful fuzzer) follow from creating a connector or plugin to using it.
const PRODUCERS: &[Producer] = &[
    Producer {
        method: "POST",
        path: "/connectors",
        statuses: &[201],
        family: &["/connectors/{name}"],
        values: &[("name", "$response.body#/name"), ("task", "$response.body#/tasks/0/task")],
    },
    Producer {
        method: "PUT",
        path: "/connectors/{name}/config",
        statuses: &[200, 201],
        family: &["/connectors/{name}"],
        values: &[("name", "$response.body#/name"), ("task", "$response.body#/tasks/0/task")],
    },
    Producer {
        method: "GET",
        path: "/connectors",
        statuses: &[200],
        family: &["/connectors/{name}"],
        values: &[("name", "$response.body#/0")],
    },
    Producer {
        method: "POST",
        path: "/plugins",
        statuses: &[200, 201],
        family: &["/plugins/{name}", "/connector-plugins/{plugin}"],
        values: &[("name", "$response.body#/name"), ("version", "$response.body#/version"), ("plugin", "$response.body#/name")],
    },
    Producer {
        method: "GET",
        path: "/connector-plugins",
        statuses: &[200],
        family: &["/connector-plugins/{plugin}"],
        values: &[("plugin", "$response.body#/0/class")],
    },
    Producer {
        method: "GET",
        path: "/plugins",
        statuses: &[200],
        family: &["/plugins/{name}"],
        values: &[("name", "$response.body#/0/name"), ("version", "$response.body#/0/version")],
    },
];

fn operation_id(method: &str, path: &str) -> String {
    format!("{}{}", method.to_ascii_lowercase(), path.replace(['/', '{', '}', '-', '.'], "_"))
}

fn path_parameters(path: &str) -> Vec<&str> {
    path.split('/').filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}')).collect()
}

/// The links of a producer's response: to every endpoint in its family whose path
/// parameters it yields.
fn links(producer: &Producer, endpoints: &[Endpoint]) -> Map<String, Value> {
    let mut links = Map::new();
    for endpoint in endpoints {
        let in_family = producer.family.iter().any(|family| endpoint.path.starts_with(family));
        let parameters = path_parameters(endpoint.path);
        let yielded = parameters.iter().all(|name| producer.values.iter().any(|(value, _)| value == name));
        if !in_family || !yielded || (endpoint.method == producer.method && endpoint.path == producer.path) {
            continue;
        }
        let values: Map<String, Value> = producer
            .values
            .iter()
            .filter(|(name, _)| parameters.contains(name))
            .map(|(name, expression)| ((*name).to_owned(), json!(expression)))
            .collect();
        let id = operation_id(endpoint.method, endpoint.path);
        links.insert(id.clone(), json!({"operationId": id, "parameters": values}));
    }
    links
}

/// The OpenAPI 3.1 document of `endpoints`.
pub(super) fn openapi(endpoints: &[Endpoint]) -> Value {
    let mut generator = SchemaSettings::draft2020_12()
        .with(|settings| {
            settings.definitions_path = "/components/schemas".into();
            settings.meta_schema = None;
        })
        .for_serialize()
        .into_generator();
    // Requests are read, so their schemas follow what the handlers deserialise.
    let mut request_generator = SchemaSettings::draft2020_12()
        .with(|settings| {
            settings.definitions_path = "/components/schemas".into();
            settings.meta_schema = None;
        })
        .for_deserialize()
        .into_generator();
    let error = generator.subschema_for::<ErrorBody>();
    let error = json!({"application/json": {"schema": error}});
    let mut paths = Map::new();
    for endpoint in endpoints {
        let mut parameters: Vec<Value> = path_parameters(endpoint.path)
            .into_iter()
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": path_parameter(name)}))
            .collect();
        parameters.extend(endpoint.query.iter().map(
            |(name, about)| json!({"name": name, "in": "query", "required": false, "description": about, "schema": query_parameter(name)}),
        ));
        let mut responses = Map::new();
        for answer in &endpoint.answers {
            let mut response = json!({"description": answer.about});
            match (answer.status, answer.body) {
                (200, None) if endpoint.path == "/metrics" => {
                    response["content"] = json!({"application/openmetrics-text": {"schema": {"type": "string"}}, "text/plain": {"schema": {"type": "string"}}});
                }
                (200, None) if endpoint.path == "/openapi.json" => {
                    response["content"] = json!({"application/json": {"schema": {"type": "object"}}})
                }
                (400.., _) => response["content"] = error.clone(),
                (_, Some(body)) => response["content"] = json!({"application/json": {"schema": body(&mut generator)}}),
                (_, None) => {}
            }
            if answer.status == 201 && endpoint.path == "/connectors" {
                response["headers"] = json!({"Location": {"description": "the connector's address", "schema": {"type": "string"}}});
            }
            if let Some(producer) = PRODUCERS.iter().find(|producer| {
                producer.method == endpoint.method && producer.path == endpoint.path && producer.statuses.contains(&answer.status)
            }) {
                response["links"] = Value::Object(links(producer, endpoints));
            }
            responses.insert(answer.status.to_string(), response);
        }
        let mut add = |status: &str, about: &str| {
            responses.entry(status.to_owned()).or_insert_with(|| json!({"description": about, "content": error.clone()}));
        };
        if endpoint.path != "/health" {
            add("401", "a token is configured and the request lacks it");
        }
        add(
            "403",
            "the request carries an Origin that admin.allowed_origins does not list, or (without a token) a Host that is not an IP address, localhost or in admin.allowed_hosts",
        );
        if !matches!(endpoint.body, Body::None) {
            add("400", "the body is not what this endpoint takes");
            add("408", "the request's body did not arrive within admin.request_timeout");
            add("413", "the body is larger than this endpoint reads");
        }
        if !matches!(endpoint.body, Body::None) || endpoint.method != "GET" {
            add("415", "the body's Content-Type is not the one this endpoint takes");
        }
        let method = endpoint.method.to_ascii_lowercase();
        let mut operation = json!({
            "summary": endpoint.summary,
            "operationId": operation_id(endpoint.method, endpoint.path),
            "parameters": parameters,
            "responses": responses,
        });
        match endpoint.body {
            Body::None => {}
            Body::Json(body) => {
                operation["requestBody"] =
                    json!({"required": true, "content": {"application/json": {"schema": body(&mut request_generator)}}});
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
    // A type both read and answered (an offset's partition) keeps its request schema,
    // the stricter of the two.
    let mut schemas = generator.take_definitions(true);
    schemas.extend(request_generator.take_definitions(true));
    json!({
        "openapi": "3.1.0",
        "info": {"title": "wasm-connect admin API", "version": env!("CARGO_PKG_VERSION"), "description": "Kafka Connect's REST API, plus plugins uploaded while the host runs."},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}, "basic": {"type": "http", "scheme": "basic", "description": "any user name; the token as the password"}},
        },
        "security": [{"bearer": []}, {"basic": []}],
    })
}
