//! The read-only Kafka Connect endpoints over HTTP against the real server: connector
//! configurations as flat string maps, tasks, topics, and the plugins with their
//! option definitions, with Kafka Connect's error bodies on bad requests.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Host, host_config, http_get};

fn start(directory: &std::path::Path) -> Host {
    let config = host_config(
        directory,
        &format!(
            "  - name: sim
    plugin: flight-simulator
    topic: flights
    config: {{ rate: 50 }}
  - name: files
    plugin: file-sink
    topics: [flights]
    tasks_max: 2
    config:
      directory: {}
    errors:
      tolerance: all
      dead_letter_topic: flights-dlq
      retry_timeout: 90s
",
            directory.join("out").display()
        ),
    );
    Host::start(&config)
}

fn get(host: &Host, path: &str) -> (u16, Value) {
    let (status, body) = http_get(&format!("{}{path}", host.admin_url()));
    (status, serde_json::from_str(&body).unwrap_or_else(|error| panic!("GET {path}: {error}: {body}")))
}

#[test]
fn connector_configs_tasks_and_topics_in_kafka_connect_shapes() {
    let directory = tempfile::tempdir().unwrap();
    let host = start(directory.path());
    host.wait_until("both connectors running", Duration::from_secs(30), || {
        get(&host, "/connectors/files/status").1["tasks"][1]["state"] == "RUNNING"
    });

    let (status, config) = get(&host, "/connectors/files/config");
    assert_eq!(status, 200);
    let expected = json!({
        "name": "files",
        "connector.class": "file-sink",
        "tasks.max": "2",
        "topics": "flights",
        "directory": directory.path().join("out").display().to_string(),
        "errors.tolerance": "all",
        "errors.deadletterqueue.topic.name": "flights-dlq",
        "errors.retry.timeout": "90000",
        "errors.log.enable": "false",
    });
    assert_eq!(config, expected);

    let (_, tasks) = get(&host, "/connectors/files/tasks");
    let tasks = tasks.as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    assert_eq!(tasks[1]["id"], json!({"connector": "files", "task": 1}));
    assert_eq!(tasks[1]["config"]["task.id"], "1");
    assert_eq!(tasks[1]["config"]["connector.class"], "file-sink");

    assert_eq!(get(&host, "/connectors/sim/topics").1, json!({"sim": {"topics": ["flights"]}}));
    assert_eq!(get(&host, "/connectors/sim/config").1["topic"], "flights");

    let (status, missing) = get(&host, "/connectors/nope/config");
    assert_eq!(status, 404);
    assert_eq!(missing, json!({"error_code": 404, "message": "Connector nope not found"}));
    host.stop();
}

#[test]
fn connector_plugins_and_their_option_definitions() {
    let directory = tempfile::tempdir().unwrap();
    let host = start(directory.path());

    let (status, plugins) = get(&host, "/connector-plugins");
    assert_eq!(status, 200);
    let plugins = plugins.as_array().unwrap();
    assert!(plugins.contains(&json!({"class": "elasticsearch-sink", "type": "sink", "version": "0.1.0"})), "{plugins:?}");
    assert!(plugins.contains(&json!({"class": "flight-simulator", "type": "source", "version": "0.1.0"})));
    // The processors built into the host, as a type of their own.
    assert!(plugins.contains(&json!({"class": "aggregate", "type": "processor", "version": env!("CARGO_PKG_VERSION")})), "{plugins:?}");
    assert!(!plugins.iter().any(|plugin| plugin["type"] == "transformation" || plugin["type"] == "predicate"));
    // With connectorsOnly=false, every built-in transform (each variant) and predicate too.
    let (_, everything) = get(&host, "/connector-plugins?connectorsOnly=false");
    let everything = everything.as_array().unwrap();
    let version = env!("CARGO_PKG_VERSION");
    for listed in [
        json!({"class": "org.apache.kafka.connect.transforms.InsertField$Value", "type": "transformation", "version": version}),
        json!({"class": "org.apache.kafka.connect.transforms.RegexRouter", "type": "transformation", "version": version}),
        json!({"class": "Jq$Value", "type": "transformation", "version": version}),
        json!({"class": "org.apache.kafka.connect.transforms.predicates.TopicNameMatches", "type": "predicate", "version": version}),
    ] {
        assert!(everything.contains(&listed), "{listed} missing from {everything:?}");
    }
    // The transform plugins, listed as Kafka Connect lists its transformations.
    for plugin in ["geo-transform", "jq-transform", "scripted-transform", "legacy-transform", "legacy-record-transform"] {
        assert!(everything.contains(&json!({"class": plugin, "type": "transformation", "version": "0.1.0"})), "{plugin} in {everything:?}");
    }
    assert_eq!(
        everything.len(),
        plugins.len() + 5 + 32,
        "5 transform plugins, 16 transforms (10 with two variants), Jq$Key and Jq$Value, 4 predicates"
    );
    // Kafka Connect reads a flag that is not "true" as false.
    assert_eq!(get(&host, "/connector-plugins?connectorsOnly=False").1.as_array().unwrap().len(), everything.len());
    assert_eq!(get(&host, "/connector-plugins?connectorsOnly=maybe").1.as_array().unwrap().len(), everything.len());
    let (status, definitions) = get(&host, "/connector-plugins/InsertField$Value/config");
    assert_eq!(status, 200, "{definitions}");
    let names: Vec<&str> = definitions.as_array().unwrap().iter().map(|definition| definition["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"static.field") && names.contains(&"offset.field"), "{names:?}");
    let (status, definitions) = get(&host, "/connector-plugins/org.apache.kafka.connect.transforms.predicates.TopicNameMatches/config");
    assert_eq!((status, definitions[0]["name"].as_str()), (200, Some("pattern")), "{definitions}");

    let (status, definitions) = get(&host, "/connector-plugins/elasticsearch-sink/config");
    assert_eq!(status, 200);
    let definition = |name: &str| definitions.as_array().unwrap().iter().find(|definition| definition["name"] == name).unwrap().clone();
    assert_eq!(definition("url")["type"], "STRING");
    assert_eq!(definition("url")["wasm_connect_type"], "elasticsearch-url");
    assert_eq!(definition("url")["required"], true);
    assert_eq!(definition("api_key")["type"], "PASSWORD");
    assert_eq!(definition("bulk_max_actions")["type"], "LONG");
    assert_eq!(definition("bulk_max_actions")["default_value"], "1000");
    assert_eq!(get(&host, "/connector-plugins/elasticsearch-sink@0.1.0/config").1, definitions);

    let (status, missing) = get(&host, "/connector-plugins/nope/config");
    assert_eq!(status, 404);
    assert!(missing["message"].as_str().unwrap().contains("no plugin nope"), "{missing}");

    // Validation, in Kafka Connect's shape: every problem under its key.
    let candidate = json!({
        "name": "search", "topics": "flights", "url": "http://localhost:9200", "api_key": "k3y",
        "bulk_max_actions": "lots", "colour": "red", "tasks.max": "0",
    });
    let (status, report) = host.call("PUT", "/connector-plugins/elasticsearch-sink/config/validate", Some(&candidate));
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["name"], "elasticsearch-sink");
    assert_eq!(report["groups"][0], "Common");
    let entry = |name: &str| {
        report["configs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|config| config["value"]["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {report}"))
    };
    let errors = |name: &str| entry(name)["value"]["errors"].as_array().unwrap().len();
    assert_eq!((errors("bulk_max_actions"), errors("colour"), errors("tasks.max")), (1, 1, 1), "{report}");
    assert_eq!(report["error_count"], 3, "{report}");
    assert_eq!(errors("url"), 0);
    assert_eq!(entry("url")["value"]["value"], "http://localhost:9200");
    assert_eq!(entry("api_key")["value"]["value"], "[hidden]");
    assert_eq!(entry("api_key")["definition"]["type"], "PASSWORD");
    assert_eq!(entry("topics")["definition"]["group"], "Common");
    assert_eq!(entry("connector.class")["value"]["value"], Value::Null);
    let valid = json!({"name": "search", "topics": "flights", "url": "http://localhost:9200"});
    let (status, report) = host.call("PUT", "/connector-plugins/elasticsearch-sink@0.1.0/config/validate", Some(&valid));
    assert_eq!((status, report["error_count"].clone()), (200, json!(0)), "{report}");
    let (status, _) = host.call("PUT", "/connector-plugins/nope/config/validate", Some(&valid));
    assert_eq!(status, 404);
    let mismatched = json!({"name": "x", "connector.class": "file-sink", "topics": "a"});
    assert_eq!(host.call("PUT", "/connector-plugins/elasticsearch-sink/config/validate", Some(&mismatched)).0, 400);
    assert_eq!(get(&host, "/connectors").1, json!(["files", "sim"]), "validation created something");
    host.stop();
}

const PLANTED_KEY: &str = "planted-api-key-5d41402abc4b2a76";
const PLANTED_TOKEN: &str = "planted-admin-token-7f9c2ba4e88f827d";

/// A request with the admin token (or `token` instead).
fn call(host: &Host, method: &str, path: &str, token: Option<&str>, body: &str) -> support::HttpResponse {
    let authorization = token.map(|token| format!("Bearer {token}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(authorization) = &authorization {
        headers.push(("Authorization", authorization.as_str()));
    }
    support::http_request(method, &format!("{}{path}", host.admin_url()), &headers, body.as_bytes())
}

#[test]
fn a_token_guards_the_api_and_planted_secrets_appear_in_no_answer_and_no_log_line() {
    let directory = tempfile::tempdir().unwrap();
    // The file's connector takes its secret from the environment, as users write it.
    let config = host_config(
        directory.path(),
        "  - name: sim
    plugin: flight-simulator
    topic: flights
    config: { rate: 50 }
  - name: search
    plugin: elasticsearch-sink
    topics: [flights]
    config:
      url: http://127.0.0.1:9
      api_key: ${PLANTED_ES_KEY}
    errors: { retry_timeout: 1s }
",
    );
    let host = Host::start_with_env(
        &config,
        &[
            ("PLANTED_ES_KEY", PLANTED_KEY),
            ("WASM_CONNECT_ADMIN_TOKEN", PLANTED_TOKEN),
            ("WASM_CONNECT_LOG", "info,wasm_connect=debug,plugin=debug"),
        ],
    );

    // Without the token, or with a wrong one: 401 everywhere but GET /health.
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/connectors"),
        ("POST", "/connectors"),
        ("GET", "/metrics"),
        ("GET", "/plugins"),
        ("GET", "/nowhere"),
        ("PUT", "/admin/loggers/root"),
    ] {
        for token in [None, Some("wrong")] {
            let response = call(&host, method, path, token, "{}");
            assert_eq!(response.status, 401, "{method} {path} with {token:?}: {}", response.body);
            assert!(response.headers.to_ascii_lowercase().contains("www-authenticate: bearer"), "{}", response.headers);
            assert_eq!(serde_json::from_str::<Value>(&response.body).unwrap()["error_code"], 401);
        }
    }
    assert_eq!(call(&host, "GET", "/health", None, "").status, 200);
    assert_eq!(call(&host, "GET", "/connectors", Some(PLANTED_TOKEN), "").status, 200);

    // A connector made through the API with a secret; a bad request carrying it.
    let created = call(&host, "POST", "/connectors", Some(PLANTED_TOKEN), &json!({
        "name": "search-api",
        "config": {"connector.class": "elasticsearch-sink", "topics": "flights", "url": "http://127.0.0.1:9", "api_key": PLANTED_KEY, "errors.retry.timeout": "1000"}
    }).to_string());
    assert_eq!(created.status, 201, "{}", created.body);
    let refused = call(&host, "POST", "/connectors", Some(PLANTED_TOKEN), &json!({
        "name": "bad", "config": {"connector.class": "elasticsearch-sink", "topics": "flights", "url": "http://127.0.0.1:9", "api_key": PLANTED_KEY, "colour": PLANTED_KEY}
    }).to_string());
    assert_eq!(refused.status, 400, "{}", refused.body);
    // A PUT of what was read back keeps the stored secret.
    let read_back: Value =
        serde_json::from_str(&call(&host, "GET", "/connectors/search-api/config", Some(PLANTED_TOKEN), "").body).unwrap();
    assert_eq!(read_back["api_key"], "[hidden]");
    let put = call(&host, "PUT", "/connectors/search-api/config", Some(PLANTED_TOKEN), &read_back.to_string());
    assert_eq!(put.status, 200, "{}", put.body);
    let stored: String = rusqlite::Connection::open(directory.path().join("data/state.sqlite3"))
        .unwrap()
        .query_row("SELECT value FROM desired_state WHERE key = 'connector-search-api'", [], |row| row.get(0))
        .unwrap();
    assert!(stored.contains(PLANTED_KEY), "the stored configuration lost the secret: {stored}");
    // Let the tasks fail against the unreachable store, so reasons and traces exist.
    host.wait_until("both sinks retrying or failed", Duration::from_secs(30), || {
        let body = call(&host, "GET", "/connectors?expand=status", Some(PLANTED_TOKEN), "").body;
        body.matches("\"trace\"").count() >= 2
    });

    // Log levels change at run time.
    let levels: Value = serde_json::from_str(&call(&host, "GET", "/admin/loggers", Some(PLANTED_TOKEN), "").body).unwrap();
    assert_eq!(levels["root"]["level"], "INFO");
    assert_eq!(levels["wasm_connect"]["level"], "DEBUG");
    let changed = call(&host, "PUT", "/admin/loggers/wasm_connect::worker", Some(PLANTED_TOKEN), r#"{"level": "trace"}"#);
    assert_eq!((changed.status, serde_json::from_str::<Value>(&changed.body).unwrap()), (200, json!(["wasm_connect::worker"])));
    let inherited: Value =
        serde_json::from_str(&call(&host, "GET", "/admin/loggers/wasm_connect::worker::sink", Some(PLANTED_TOKEN), "").body).unwrap();
    assert_eq!(inherited, json!({"level": "TRACE"}));
    assert_eq!(call(&host, "PUT", "/admin/loggers/root", Some(PLANTED_TOKEN), r#"{"level": "LOUD"}"#).status, 400);
    assert_eq!(call(&host, "PUT", "/admin/loggers/root", Some(PLANTED_TOKEN), r#"{"level": "INFO"}"#).status, 200);
    let levels: Value = serde_json::from_str(&call(&host, "GET", "/admin/loggers", Some(PLANTED_TOKEN), "").body).unwrap();
    assert_eq!(levels["root"]["level"], "INFO");
    assert_eq!(levels["wasm_connect::worker"]["level"], "INFO", "root applies to every logger: {levels}");
    assert_eq!(levels["wasm_connect"]["level"], "INFO", "root applies to every logger: {levels}");

    // Every answer, and the whole log, is free of the planted secrets.
    let paths = [
        "/",
        "/connectors",
        "/connectors?expand=status&expand=info",
        "/connectors/search",
        "/connectors/search/config",
        "/connectors/search/tasks",
        "/connectors/search/tasks-config",
        "/connectors/search/status",
        "/connectors/search-api",
        "/connectors/search-api/config",
        "/connectors/search-api/tasks",
        "/connectors/search-api/status",
        "/connectors/search-api/offsets",
        "/metrics",
        "/plugins",
        "/plugins/elasticsearch-sink",
        "/connector-plugins/elasticsearch-sink/config",
        "/admin/loggers",
    ];
    let mut answers = vec![created.body, refused.body, put.body];
    for path in paths {
        let response = call(&host, "GET", path, Some(PLANTED_TOKEN), "");
        assert_eq!(response.status, 200, "GET {path}: {}", response.body);
        answers.push(format!("{}\n{}", response.headers, response.body));
    }
    for answer in &answers {
        assert!(!answer.contains(PLANTED_KEY) && !answer.contains(PLANTED_TOKEN), "a secret in an answer: {answer}");
    }
    let log = host.stop();
    assert!(log.contains("search-api"), "the log is not the host's: {log}");
    for line in log.lines() {
        assert!(!line.contains(PLANTED_KEY) && !line.contains(PLANTED_TOKEN), "a secret in the log: {line}");
    }
}

#[test]
fn the_openapi_document_is_valid_and_every_operation_in_it_is_served() {
    let directory = tempfile::tempdir().unwrap();
    let host = start(directory.path());
    let response = support::http_request("GET", &format!("{}/openapi.json", host.admin_url()), &[], b"");
    assert_eq!(response.status, 200);
    support::services::validate_openapi(&response.body);
    let document: Value = serde_json::from_str(&response.body).unwrap();
    let paths = document["paths"].as_object().unwrap();
    for expected in [
        "/connectors",
        "/connectors/{name}/config",
        "/connectors/{name}/offsets",
        "/plugins",
        "/connector-plugins/{plugin}/config/validate",
        "/admin/loggers/{logger}",
        "/openapi.json",
    ] {
        assert!(paths.contains_key(expected), "{expected} is not documented");
    }
    let mut operations = 0;
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            operations += 1;
            // Unknown names everywhere: the answer must come from the endpoint, not the router.
            let concrete = path
                .replace("{name}", "nobody")
                .replace("{task}", "0")
                .replace("{plugin}", "nothing")
                .replace("{version}", "0.0.0")
                .replace("{logger}", "wasm_connect");
            let method = method.to_ascii_uppercase();
            let answer =
                support::http_request(&method, &format!("{}{concrete}", host.admin_url()), &[("Content-Type", "application/json")], b"{}");
            assert_ne!(answer.status, 405, "{method} {path} is documented but not served");
            assert!(!answer.body.contains("no such endpoint"), "{method} {path} is documented but not served: {}", answer.body);
            let documented = item[method.to_ascii_lowercase()]["responses"].as_object().unwrap();
            assert!(
                documented.contains_key(&answer.status.to_string()),
                "{method} {concrete} answered {} (not documented): {}",
                answer.status,
                answer.body
            );
        }
    }
    assert!(operations >= 37, "only {operations} operations documented");
    host.stop();
}

#[test]
fn kafka_connect_details_locations_trailing_slashes_same_configs_and_offsets_that_can_be_honoured() {
    let directory = tempfile::tempdir().unwrap();
    let host = start(directory.path());
    host.wait_until("the sink running", Duration::from_secs(30), || {
        get(&host, "/connectors/files/status").1["tasks"][1]["state"] == "RUNNING"
    });
    let root = get(&host, "/").1;
    let commit = root["commit"].as_str().unwrap();
    assert!(commit.len() == 40 && commit.chars().all(|c| c.is_ascii_hexdigit()), "{root}");
    assert_eq!(get(&host, "/connectors/").1, get(&host, "/connectors").1);
    assert_eq!(get(&host, "/connectors/sim/status/").1["name"], "sim");

    // POST answers with the new connector's Location; the same PUT again restarts nothing.
    let output = directory.path().join("made");
    let made = json!({"connector.class": "file-sink", "topics": "flights", "directory": output.display().to_string()});
    let response = support::http_request(
        "POST",
        &format!("{}/connectors", host.admin_url()),
        &[("Content-Type", "application/json")],
        json!({"name": "made", "config": made}).to_string().as_bytes(),
    );
    assert_eq!(response.status, 201, "{}", response.body);
    assert!(response.headers.lines().any(|line| line.eq_ignore_ascii_case("location: /connectors/made")), "{}", response.headers);
    let applied =
        |log: &str| log.lines().filter(|line| line.contains("Applied the connector's configuration") && line.contains("made")).count();
    assert_eq!(host.call("PUT", "/connectors/made/config", Some(&made)).0, 200);
    let mut changed = made.clone();
    changed["batch.size"] = json!("100");
    assert_eq!(host.call("PUT", "/connectors/made/config", Some(&changed)).0, 200);
    // Log lines arrive in order: once the change is logged, the identical PUT's would be too.
    host.wait_until("the change applied", Duration::from_secs(30), || applied(&host.log()) >= 2);
    assert_eq!(applied(&host.log()), 2, "an identical PUT restarted the connector");

    // Validate names a sink's missing key as Kafka Connect does: topics.
    let (_, validated) =
        host.call("PUT", "/connector-plugins/file-sink/config/validate", Some(&json!({"name": "v", "directory": "/tmp/x"})));
    let errors_of = |key: &str| {
        validated["configs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|config| config["value"]["name"] == key)
            .map(|config| config["value"]["errors"].clone())
    };
    assert!(
        errors_of("topics").unwrap().as_array().unwrap().iter().any(|error| error.as_str().unwrap().contains("missing")),
        "{validated}"
    );
    assert!(errors_of("topic").is_none_or(|errors| errors == json!([])), "{validated}");

    // Offsets that cannot be honoured are refused, saying why; those that can are taken.
    assert_eq!(host.call("PUT", "/connectors/files/stop", None).0, 204);
    assert_eq!(host.call("PUT", "/connectors/sim/stop", None).0, 204);
    let sink_offset = |partition: i64, offset: i64| json!({"offsets": [{"partition": {"kafka_topic": "flights", "kafka_partition": partition}, "offset": {"kafka_offset": offset}}]});
    let refused = |path: &str, body: Value, says: &str| {
        let (status, answer) = host.call("PATCH", path, Some(&body));
        assert_eq!(status, 400, "{answer}");
        let message = answer["message"].as_str().unwrap();
        assert!(message.contains(says) && !message.contains("Connector configuration is invalid"), "{message}");
    };
    let (status, answer) = host.call("GET", "/connectors/files/state", None);
    assert_eq!((status, answer["message"].clone()), (409, json!("connector files is a sink: only processors keep state")));
    refused("/connectors/files/offsets", sink_offset(99, 0), "has no partition 99");
    refused("/connectors/files/offsets", sink_offset(0, 1 << 40), "past the end");
    let unread = json!({"offsets": [{"partition": {"kafka_topic": "elsewhere", "kafka_partition": 0}, "offset": {"kafka_offset": 0}}]});
    refused("/connectors/files/offsets", unread, "is not one connector files reads");
    assert_eq!(host.call("PATCH", "/connectors/files/offsets", Some(&sink_offset(0, 0))).0, 200);
    let garbage = json!({"offsets": [{"partition": {"connector": "sim"}, "offset": {"position": "not a position"}}]});
    refused("/connectors/sim/offsets", garbage, "cannot start from this position");
    let (_, offsets) = host.call("GET", "/connectors/sim/offsets", None);
    let position = offsets["offsets"][0]["offset"]["position"].as_str().unwrap().to_owned();
    let same = json!({"offsets": [{"partition": {"connector": "sim"}, "offset": {"position": position}}]});
    let (status, answer) = host.call("PATCH", "/connectors/sim/offsets", Some(&same));
    assert_eq!(status, 200, "{answer}");
    host.stop();
}

/// schemathesis (pinned, from PyPI) against a running host with a token: the examples,
/// coverage, fuzzing and stateful phases with every check (server errors, status
/// codes, content types, response schemas and headers, negative and positive data,
/// authentication, use after delete), within a time budget. The checks and the
/// allowances it is given, and why, are in `tests/fixtures/schemathesis/schemathesis.toml`.
#[test]
fn schemathesis_finds_nothing_wrong_with_the_api() {
    let directory = tempfile::tempdir().unwrap();
    let host = Host::start_with_env(
        &support::host_config(
            directory.path(),
            "  - name: sim\n    plugin: iot-sensor-simulator\n    topic: iot\n    config: { rate: 5 }\n",
        ),
        &[("WASM_CONNECT_ADMIN_TOKEN", PLANTED_TOKEN)],
    );
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/schemathesis");
    let budget = std::env::var("SCHEMATHESIS_SECONDS").unwrap_or_else(|_| "120".to_owned());
    let output = std::process::Command::new(support::services::schemathesis())
        .current_dir(&fixtures)
        .env("PYTHONPATH", &fixtures)
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .args(["run", &format!("{}/openapi.json", host.admin_url()), "--workers", "2", "--max-time", &budget, "--no-color"])
        .args(["--header", &format!("Authorization: Bearer {PLANTED_TOKEN}")])
        .output()
        .unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "schemathesis found problems:\n{report}");
    // It reached the API: every operation, every phase, many cases, stateful scenarios.
    let operations = report.lines().find_map(|line| line.trim().strip_prefix("Selected: ")?.split_once('/').map(|(_, all)| all.to_owned()));
    let operations = operations.unwrap_or_else(|| panic!("no operation count in the report:\n{report}"));
    assert!(operations.parse::<u32>().unwrap() >= 39, "an operation went missing from the document:\n{report}");
    assert!(report.contains(&format!("Tested: {operations}\n")), "not every operation was tested:\n{report}");
    for phase in ["✅ Examples", "✅ Coverage", "✅ Fuzzing", "✅ Stateful"] {
        assert!(report.contains(phase), "{phase} did not pass:\n{report}");
    }
    let generated: u64 = report
        .lines()
        .find_map(|line| line.trim().split_once(" generated, ")?.0.parse().ok())
        .unwrap_or_else(|| panic!("no count of generated cases:\n{report}"));
    assert!(generated > 1000, "only {generated} cases:\n{report}");
    // It created connectors (from the documented example) and went on to use them,
    // and the host is still well.
    let metrics = call(&host, "GET", "/metrics", Some(PLANTED_TOKEN), "").body;
    let answered = |method: &str, route: &str, status: &str| {
        support::metric(&metrics, "wasm_connect_admin_requests_total", &[("method", method), ("route", route), ("status", status)])
    };
    assert!(answered("POST", "/connectors", "201") >= 1.0, "no connector was created:\n{metrics}");
    assert!(answered("GET", "/connectors/{name}/status", "200") >= 1.0, "no connector's status was read:\n{metrics}");
    assert_eq!(call(&host, "GET", "/health", None, "").status, 200);
    assert!(!host.log().contains("panicked"), "the host panicked:\n{}", host.log());
}
