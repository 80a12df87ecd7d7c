//! The observability stack against real tools: `promtool` lints `/metrics`, the rules
//! and the scrape configuration in `compose/prometheus/`; a real Prometheus server
//! scrapes a running host, every PromQL expression of the Grafana dashboards in
//! `compose/grafana/dashboards/` and every alert's measure returns data, and provoked
//! failures fire exactly the matching alerts.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::prometheus::{self, firing_alerts, query, wait_for_alert};
use support::replay::{Answer, ReplayServer};
use support::services::{self, Server};
use support::{Host, host_config, repo_root};

/// Prometheus scrapes and evaluates this often in the test (15 s in the compose stack).
const SCRAPE_INTERVAL: &str = "1s";
/// What the dashboards' `$__rate_interval` stands for here: many scrapes, a short test.
const RATE_INTERVAL: &str = "30s";

#[test]
fn promtool_accepts_the_metrics_rules_and_scrape_config() {
    let prometheus = repo_root().join("compose/prometheus");
    let rules = services::promtool(&["check", "rules", prometheus.join("alerts.yml").to_str().unwrap()], None);
    assert!(rules.contains("SUCCESS: 8 rules found"), "{rules}");
    let config = services::promtool(&["check", "config", prometheus.join("prometheus.yml").to_str().unwrap()], None);
    assert!(config.contains("is valid prometheus config file syntax"), "{config}");

    let directory = tempfile::tempdir().unwrap();
    let store = services::elasticsearch(services::elasticsearch_servers()[0]);
    let host = Host::start(&host_config(directory.path(), &healthy_connectors(directory.path(), &store.url, None)));
    host.wait_until("both sinks writing", Duration::from_secs(30), || {
        let metrics = host.get_text("/metrics");
        ["weblogs-to-files", "readings-to-es"]
            .iter()
            .all(|connector| support::metric(&metrics, "wasm_connect_records_written_total", &[("connector", connector)]) > 0.0)
    });
    let metrics = host.get_text("/metrics");
    // promtool prints nothing for metrics that follow every convention.
    let lint = services::promtool(&["check", "metrics"], Some(&metrics));
    assert_eq!(lint.trim(), "", "promtool check metrics:\n{lint}");
    for family in [
        "wasm_connect_records_polled_total",
        "wasm_connect_records_produced_total",
        "wasm_connect_records_consumed_total",
        "wasm_connect_records_written_total",
        "wasm_connect_bytes_out_total",
        "wasm_connect_end_to_end_latency_seconds_count",
        "wasm_connect_store_write_duration_seconds_count",
        "process_resident_memory_bytes",
    ] {
        assert!(support::metric(&metrics, family, &[]) > 0.0, "{family} has a positive value:\n{metrics}");
    }
    host.stop();
}

#[test]
fn dashboards_return_data_and_alerts_fire_only_for_their_failure() {
    let directory = tempfile::tempdir().unwrap();
    let store = services::elasticsearch(services::elasticsearch_servers()[0]);
    let api = ReplayServer::start();
    api.serve("/stations", Answer::json(200, r#"[{"id":1,"t":1},{"id":2,"t":2}]"#));
    // The provoked failure: a sink that refuses every record and tolerates no error.
    let refusing = format!(
        "  - name: refuses-everything
    plugin: picky-sink
    topics: [weblogs]
    config: {{ refuse_containing: '\"', directory: {} }}
",
        directory.path().join("refused").display()
    );
    let config = host_config(directory.path(), &healthy_connectors(directory.path(), &store.url, Some(&api)));
    std::fs::write(&config, std::fs::read_to_string(&config).unwrap() + &refusing).unwrap();
    let host = Host::start(&config);
    let prometheus = start_prometheus(directory.path(), &host);

    let failed = wait_for_alert(&prometheus, "WasmConnectTaskFailed");
    assert_eq!(failed, BTreeSet::from(["refuses-everything/0".to_owned()]), "only the refusing connector's task failed");

    let mut empty = Vec::new();
    let expressions = dashboard_expressions().into_iter().chain(alert_measures()).collect::<Vec<_>>();
    assert!(expressions.len() > 40, "every panel and rule is found: {expressions:#?}");
    for expression in &expressions {
        let result = query(&prometheus, expression);
        if result.as_array().is_none_or(Vec::is_empty) {
            empty.push(expression.clone());
        }
    }
    assert!(empty.is_empty(), "{} expressions returned no data:\n{}", empty.len(), empty.join("\n"));

    let firing = firing_alerts(&prometheus);
    assert_eq!(firing.keys().cloned().collect::<BTreeSet<_>>(), BTreeSet::from(["WasmConnectTaskFailed".to_owned()]), "{firing:#?}");

    // The host goes away: the host-down alert fires.
    host.kill();
    let down = wait_for_alert(&prometheus, "WasmConnectHostDown");
    assert_eq!(down.len(), 1, "{down:?}");
}

/// A pipeline that exercises every metric family: a steady simulator to files (with
/// a dead-letter topic), a finite one to Elasticsearch, and an HTTP source.
fn healthy_connectors(directory: &Path, store_url: &str, api: Option<&ReplayServer>) -> String {
    let mut connectors = format!(
        "  - name: weblog-sim
    plugin: weblog-simulator
    topic: weblogs
    config: {{ seed: 5, rate: 20 }}
  - name: iot-sim
    plugin: iot-sensor-simulator
    topic: readings
    config: {{ seed: 5, rate: 0, limit: 2000, devices: 10 }}
  - name: weblogs-to-files
    plugin: file-sink
    topics: [weblogs]
    errors: {{ tolerance: all, dead_letter_topic: weblogs-dlq }}
    config: {{ directory: {files} }}
  - name: readings-to-es
    plugin: elasticsearch-sink
    topics: [readings]
    config: {{ url: '{store_url}', index: 'observability-readings' }}
",
        files = directory.join("files").display(),
    );
    if let Some(api) = api {
        connectors += &format!(
            "  - name: stations
    plugin: http-poll-source
    topic: stations
    config: {{ base_url: '{}/stations', key_field: id, position_field: t, interval: 500ms }}
",
            api.url()
        );
    }
    connectors
}

/// Prometheus scraping `host`, with the shipped alert rules whose `for` durations are
/// shortened (one minute becomes 5 s) so the test waits seconds, not minutes; the
/// expressions are the shipped ones.
fn start_prometheus(directory: &Path, host: &Host) -> Server {
    let rules = std::fs::read_to_string(repo_root().join("compose/prometheus/alerts.yml")).unwrap();
    let mut shortened = String::new();
    for line in rules.lines() {
        match line.trim().strip_prefix("for: ").and_then(|duration| duration.strip_suffix('m')) {
            Some(minutes) => {
                let indent = &line[..line.len() - line.trim_start().len()];
                shortened += &format!("{indent}for: {}s\n", minutes.parse::<u64>().unwrap() * 5);
            }
            None => shortened += &format!("{line}\n"),
        }
    }
    assert!(shortened.contains("for: 5s"), "the rules have `for` durations in minutes");
    prometheus::scraping(directory, host, SCRAPE_INTERVAL, &[("alerts.yml", &shortened)])
}

/// Every PromQL expression of the host's dashboards (tagged `wasm-connect`; an
/// example's dashboard is checked with its example), with Grafana's variables replaced:
/// the connector variable by a pattern matching every connector, so each panel must
/// find data somewhere in the pipeline, and `label_values(METRIC, label)` by its metric.
fn dashboard_expressions() -> Vec<String> {
    let mut expressions = Vec::new();
    for entry in std::fs::read_dir(repo_root().join("compose/grafana/dashboards")).unwrap() {
        let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap()).unwrap();
        if !dashboard["tags"].as_array().unwrap().contains(&Value::from("wasm-connect")) {
            continue;
        }
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                expressions.push(target["expr"].as_str().unwrap().to_owned());
            }
        }
        for variable in dashboard["templating"]["list"].as_array().unwrap() {
            let query = variable["query"]["query"].as_str().unwrap();
            let metric = query.strip_prefix("label_values(").and_then(|rest| rest.split(',').next()).unwrap();
            expressions.push(metric.trim().to_owned());
        }
    }
    expressions
        .into_iter()
        .map(|expression| expression.replace("$__rate_interval", RATE_INTERVAL).replace("=~\"$connector\"", "=~\".+\""))
        .collect()
}

/// Each alert's measure: its expression without the final comparison with its
/// threshold, so that a healthy host still answers it with data.
fn alert_measures() -> Vec<String> {
    let rules: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(repo_root().join("compose/prometheus/alerts.yml")).unwrap()).unwrap();
    let mut measures = Vec::new();
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let expression = rule["expr"].as_str().unwrap();
            let (measure, threshold) = expression
                .rsplit_once(" > ")
                .or_else(|| expression.rsplit_once(" == "))
                .unwrap_or_else(|| panic!("{expression}: one measure compared with one threshold"));
            assert!(threshold.trim().parse::<f64>().is_ok(), "{expression}: the threshold is a number");
            measures.push(measure.to_owned());
        }
    }
    measures
}
