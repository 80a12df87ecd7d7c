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
    assert_eq!(get(&host, "/connector-plugins?connectorsOnly=False").1.as_array().unwrap().len(), plugins.len());
    let (status, refused) = get(&host, "/connector-plugins?connectorsOnly=maybe");
    assert_eq!(status, 400);
    assert_eq!(refused["error_code"], 400);

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
    host.stop();
}
