//! The API sources against a local server that replays answers shaped as in
//! ../shared/api-contracts.md: the records produced, positions across a restart (no
//! duplicate, no gap), the pause on rate-limit answers shown in status and metrics,
//! the egress sandbox (an ungranted host, a redirect to one, an oversized body) and
//! API keys that never appear in a log line or an API response.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use support::replay::{Answer, ReplayServer};
use support::{Host, host_config, metric, read_sink_output};

const WAIT: Duration = Duration::from_secs(30);
const PLANTED_KEY: &str = "pl4nted-K3Y-9f8e7d";

/// A source connector and a file sink writing `topic` (and its dead letters) to `output`.
fn pipeline(source: &str, output: &Path, topic: &str) -> String {
    format!(
        "{source}  - name: files
    plugin: file-sink
    topics: [{topic}, {topic}-dlq]
    config:
      directory: {}
",
        output.display()
    )
}

fn stations(reported: &[(u64, u64, u64)]) -> String {
    let stations: Vec<Value> = reported
        .iter()
        .map(|(id, bikes, last_reported)| {
            json!({"stationCode": format!("{id}"), "station_id": id, "num_bikes_available": bikes,
                   "num_bikes_available_types": [{"mechanical": 0}, {"ebike": bikes}], "num_docks_available": 3,
                   "is_installed": 1, "is_returning": 1, "is_renting": 1, "last_reported": last_reported})
        })
        .collect();
    json!({"lastUpdatedOther": 1, "ttl": 60, "data": {"stations": stations}}).to_string()
}

fn velib_connector(server: &ReplayServer, extra: &str) -> String {
    format!(
        "  - name: velib
    plugin: http-poll-source
    topic: stations
    errors:
      tolerance: all
      dead_letter_topic: stations-dlq
{extra}    config:
      url: {}/opendata/station_status.json
      secret_query: apikey=${{VELIB_KEY}}
      items_pointer: /data/stations
      key_field: station_id
      position_field: last_reported
      interval: 200ms
",
        server.url()
    )
}

/// The (key, last_reported) of every station record, sorted.
fn keys_and_positions(output: &Path) -> Vec<(String, i64)> {
    read_sink_output(output)
        .get("stations")
        .map(|lines| {
            let mut found: Vec<(String, i64)> =
                lines.iter().map(|line| (line.key.clone().unwrap(), line.value["last_reported"].as_i64().unwrap())).collect();
            found.sort();
            found
        })
        .unwrap_or_default()
}

#[test]
fn generic_source_emits_each_change_once_across_a_restart_and_dead_letters_bad_items() {
    let server = ReplayServer::start();
    let path = "/opendata/station_status.json";
    let mut body = stations(&[(1, 5, 100), (2, 7, 100)]);
    // An item without its key field is dead-lettered, not dropped.
    body = body.replace("]}}", r#",{"stationCode":"x","num_bikes_available":1}]}}"#);
    server.serve(path, Answer::json(200, &body));
    let directory = tempfile::tempdir().unwrap();
    let output = directory.path().join("out");
    let config = host_config(directory.path(), &pipeline(&velib_connector(&server, ""), &output, "stations"));
    let environment = [("VELIB_KEY", PLANTED_KEY)];
    let host = Host::start_with_env(&config, &environment);
    host.wait_until("two stations", WAIT, || keys_and_positions(&output).len() == 2);
    host.wait_until("a few more polls", WAIT, || server.received(path).len() >= 5);
    assert_eq!(keys_and_positions(&output), vec![("1".to_owned(), 100), ("2".to_owned(), 100)], "unchanged items are not repeated");
    let dead = read_sink_output(&output).get("stations-dlq").cloned().unwrap_or_default();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].headers.to_string().contains("key_field"), "{:?}", dead[0].headers);
    assert_eq!(dead[0].value["stationCode"], "x");
    assert_eq!(server.received(path)[0].param("apikey").as_deref(), Some(PLANTED_KEY), "the secret query parameter is sent");

    // Station 1 changes while the host is down: exactly that change comes after the restart.
    let first_log = host.stop();
    server.serve(path, Answer::json(200, &stations(&[(1, 4, 160), (2, 7, 100)])));
    let host = Host::start_with_env(&config, &environment);
    host.wait_until("the change", WAIT, || keys_and_positions(&output).len() == 3);
    let polled = server.received(path).len();
    host.wait_until("more polls", WAIT, || server.received(path).len() >= polled + 3);
    assert_eq!(keys_and_positions(&output), vec![("1".to_owned(), 100), ("1".to_owned(), 160), ("2".to_owned(), 100)]);

    let status = host.call("GET", "/connectors/velib/status", None).1.to_string();
    let config_answer = host.call("GET", "/connectors/velib/config", None).1.to_string();
    let metrics = host.get_text("/metrics");
    assert!(metric(&metrics, "wasm_connect_http_requests_total", &[("connector", "velib"), ("outcome", "2xx")]) >= 3.0, "{metrics}");
    let log = host.stop();
    for text in [&first_log, &log, &status, &config_answer, &metrics] {
        assert!(!text.contains(PLANTED_KEY), "the key leaked: {text}");
    }
}

#[test]
fn rate_limit_answers_pause_the_source_and_show_in_status_and_metrics() {
    let server = ReplayServer::start();
    let path = "/opendata/station_status.json";
    server.once(path, Answer::json(429, r#"{"detail":"Too many requests"}"#).header("x-ratelimit-reset", "8"));
    server.serve(path, Answer::json(200, &stations(&[(1, 5, 100)])));
    let directory = tempfile::tempdir().unwrap();
    let output = directory.path().join("out");
    let config = host_config(directory.path(), &pipeline(&velib_connector(&server, ""), &output, "stations"));
    let host = Host::start_with_env(&config, &[("VELIB_KEY", PLANTED_KEY)]);
    host.wait_until("the 429", WAIT, || !server.received(path).is_empty());
    let mut throttled = Value::Null;
    host.wait_until("the throttle in status", WAIT, || {
        throttled = host.call("GET", "/connectors/velib/status", None).1["tasks"][0]["throttled"].clone();
        !throttled.is_null()
    });
    assert!(throttled["reason"].as_str().unwrap().contains("429"), "{throttled}");
    assert!(throttled["until"].as_str().unwrap().ends_with('Z'), "{throttled}");
    let metrics = host.get_text("/metrics");
    assert_eq!(metric(&metrics, "wasm_connect_source_throttled", &[("connector", "velib")]), 1.0, "{metrics}");
    assert_eq!(server.received(path).len(), 1, "no request while the window has not reset");
    host.wait_until("the record after the pause", WAIT, || keys_and_positions(&output).len() == 1);
    let received = server.received(path);
    assert!(received.len() >= 2);
    let metrics = host.get_text("/metrics");
    assert_eq!(metric(&metrics, "wasm_connect_source_throttled", &[("connector", "velib")]), 0.0);
    assert_eq!(metric(&metrics, "wasm_connect_source_throttles_total", &[("connector", "velib")]), 1.0);
    assert!(host.call("GET", "/connectors/velib/status", None).1["tasks"][0]["throttled"].is_null());
    host.stop();
}

#[test]
fn the_egress_sandbox_refuses_ungranted_hosts_redirects_to_them_and_oversized_bodies() {
    let server = ReplayServer::start();
    let other = ReplayServer::start();
    let directory = tempfile::tempdir().unwrap();
    let output = directory.path().join("out");
    // `localhost` is another host name than the granted 127.0.0.1, whatever it resolves to.
    server.serve("/redirect", Answer::json(302, "{}").header("location", &format!("http://localhost:{}/stolen", other.port)));
    server.serve("/big", Answer::json(200, &format!("[{}]", vec![r#"{"id":1,"t":1}"#; 80_000].join(","))));
    let connectors = format!(
        "  - name: redirected
    plugin: http-poll-source
    topic: a
    config: {{ url: '{}/redirect', key_field: id, interval: 200ms }}
  - name: allowed
    plugin: http-poll-source
    topic: a
    egress: {{ allowed_hosts: [localhost] }}
    config: {{ url: '{}/redirect', key_field: id, interval: 200ms }}
  - name: big
    plugin: http-poll-source
    topic: c
    egress: {{ max_response_mib: 1, request_timeout: 5s }}
    config: {{ url: '{}/big', key_field: id, interval: 200ms }}
",
        server.url(),
        server.url(),
        server.url()
    );
    other.serve("/stolen", Answer::json(200, r#"[{"id": 7}]"#));
    let config = host_config(directory.path(), &pipeline(&connectors, &output, "a"));
    let host = Host::start(&config);
    let failed = |name: &str| {
        let status = host.call("GET", &format!("/connectors/{name}/status"), None).1;
        status["tasks"][0]["trace"].as_str().map(str::to_owned).filter(|_| status["tasks"][0]["state"] == "FAILED")
    };
    host.wait_until("the redirect refused", WAIT, || failed("redirected").is_some());
    let trace = failed("redirected").unwrap();
    assert!(trace.contains("refused the request to http://localhost:") && trace.contains("egress.allowed_hosts"), "{trace}");
    assert!(trace.contains("does not grant"), "{trace}");
    let metrics = host.get_text("/metrics");
    assert!(metric(&metrics, "wasm_connect_http_requests_total", &[("connector", "redirected"), ("outcome", "denied")]) >= 1.0);
    assert!(host.log().contains("Refused an outgoing HTTP request"));
    // The same redirect with the host in egress.allowed_hosts is followed.
    host.wait_until("the allowed redirect followed", WAIT, || read_sink_output(&output).get("a").is_some_and(|lines| !lines.is_empty()));
    let followed = read_sink_output(&output)["a"][0].clone();
    assert_eq!((followed.key.as_deref(), &followed.value), (Some("7"), &json!({"id": 7})));
    assert!(other.all_received().iter().all(|request| request.path == "/stolen"));

    host.wait_until("the oversized body refused", WAIT, || {
        let metrics = host.get_text("/metrics");
        metric(&metrics, "wasm_connect_http_requests_total", &[("connector", "big"), ("outcome", "too_large")]) >= 1.0
    });
    let status = host.call("GET", "/connectors/big/status", None).1;
    assert_eq!(status["tasks"][0]["state"], "RUNNING", "an oversized answer is retried, not fatal: {status}");
    host.wait_until("the retry shown", WAIT, || {
        host.call("GET", "/connectors/big/status", None).1["tasks"][0]["trace"].as_str().is_some_and(|trace| trace.contains("max_response_mib"))
    });
    assert_eq!(metric(&host.get_text("/metrics"), "wasm_connect_records_out_total", &[("connector", "big")]), 0.0);
    host.stop();
}
