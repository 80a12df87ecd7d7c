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
      base_url: {}/opendata
      path: /station_status.json
      api_key: ${{VELIB_KEY}}
      api_key_query: apikey
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
    config: {{ base_url: '{}/redirect', key_field: id, interval: 200ms }}
  - name: allowed
    plugin: http-poll-source
    topic: a
    egress: {{ allowed_hosts: [localhost] }}
    config: {{ base_url: '{}/redirect', key_field: id, interval: 200ms }}
  - name: posted
    plugin: http-poll-source
    topic: a
    config:
      base_url: '{}/search'
      method: post
      body: '{{\"q\": \"bikes\"}}'
      headers: 'Content-Type: application/json'
      secret_headers: 'Authorization: Bearer ${{SEARCH_TOKEN}}'
      key_field: /item/id
      interval: 200ms
  - name: big
    plugin: http-poll-source
    topic: c
    egress: {{ max_response_mib: 1, request_timeout: 5s }}
    config: {{ base_url: '{}/big', key_field: id, interval: 200ms }}
",
        server.url(),
        server.url(),
        server.url(),
        server.url()
    );
    other.serve("/stolen", Answer::json(200, r#"[{"id": 7}]"#));
    server.serve("/search", Answer::json(200, r#"{"item": {"id": 9}}"#));
    let config = host_config(directory.path(), &pipeline(&connectors, &output, "a"));
    let host = Host::start_with_env(&config, &[("SEARCH_TOKEN", PLANTED_KEY)]);
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
    // The log is read from the host's output by a thread of its own: wait for it.
    host.wait_for_log("Refused an outgoing HTTP request", WAIT);
    // The same redirect with the host in egress.allowed_hosts is followed.
    let has_key =
        |key: &str| read_sink_output(&output).get("a").is_some_and(|lines| lines.iter().any(|line| line.key.as_deref() == Some(key)));
    host.wait_until("the allowed redirect followed", WAIT, || has_key("7"));
    let followed = read_sink_output(&output)["a"].iter().find(|line| line.key.as_deref() == Some("7")).cloned().unwrap();
    assert_eq!(followed.value, json!({"id": 7}));
    assert!(other.all_received().iter().all(|request| request.path == "/stolen"));
    // A POST with a body and a secret header; a single object is one item.
    host.wait_until("the posted search", WAIT, || has_key("9"));
    let search = &server.received("/search")[0];
    assert_eq!((search.method.as_str(), search.body.as_slice()), ("POST", &br#"{"q": "bikes"}"#[..]));
    assert_eq!(search.header("authorization"), Some(format!("Bearer {PLANTED_KEY}").as_str()));
    assert_eq!(search.header("content-type"), Some("application/json"));

    host.wait_until("the oversized body refused", WAIT, || {
        let metrics = host.get_text("/metrics");
        metric(&metrics, "wasm_connect_http_requests_total", &[("connector", "big"), ("outcome", "too_large")]) >= 1.0
    });
    let status = host.call("GET", "/connectors/big/status", None).1;
    assert_eq!(status["tasks"][0]["state"], "RUNNING", "an oversized answer is retried, not fatal: {status}");
    host.wait_until("the retry shown", WAIT, || {
        host.call("GET", "/connectors/big/status", None).1["tasks"][0]["trace"]
            .as_str()
            .is_some_and(|trace| trace.contains("max_response_mib"))
    });
    assert_eq!(metric(&host.get_text("/metrics"), "wasm_connect_records_produced_total", &[("connector", "big")]), 0.0);
    let config_answer = host.call("GET", "/connectors/posted/config", None).1;
    assert_eq!(config_answer["secret_headers"], "[hidden]");
    let log = host.stop();
    assert!(!log.contains(PLANTED_KEY));
}

/// The state, trace and restart count of a connector's task.
fn task(host: &Host, name: &str) -> (String, String) {
    let status = host.call("GET", &format!("/connectors/{name}/status"), None).1;
    let task = &status["tasks"][0];
    (task["state"].as_str().unwrap_or("").to_owned(), task["trace"].as_str().unwrap_or("").to_owned())
}

fn throttled_reason(host: &Host, name: &str) -> Option<String> {
    host.call("GET", &format!("/connectors/{name}/status"), None).1["tasks"][0]["throttled"]["reason"].as_str().map(str::to_owned)
}

/// Waits until `name` failed, then checks that it stays failed without a restart.
fn assert_fails_for_good(host: &Host, name: &str, expected: &str) -> String {
    host.wait_until(&format!("{name} failed"), WAIT, || task(host, name).0 == "FAILED");
    std::thread::sleep(Duration::from_millis(1500));
    let (state, trace) = task(host, name);
    assert_eq!(state, "FAILED");
    assert!(trace.contains(expected), "{name}: {trace}");
    let metrics = host.get_text("/metrics");
    assert_eq!(metric(&metrics, "wasm_connect_task_restarts_total", &[("connector", name)]), 0.0, "{name} restarted");
    trace
}

fn lines(output: &Path, topic: &str) -> Vec<support::SinkLine> {
    let mut lines = read_sink_output(output).get(topic).cloned().unwrap_or_default();
    lines.sort_by_key(|line| (line.key.clone(), line.timestamp));
    lines
}

fn airlabs_body(flights: &[Value]) -> String {
    json!({"request": {"lang": "en", "currency": "EUR", "key": {"limits_by_minute": 250, "limits_by_hour": 2500, "limits_by_month": 1000}},
           "response": flights, "terms": "Unauthorized access is prohibited."})
    .to_string()
}

fn flight(hex: &str, updated: i64) -> Value {
    json!({"hex": hex, "reg_number": "F-GKXA", "flag": "FR", "lat": 48.9, "lng": 2.4, "alt": 10668, "dir": 270, "speed": 840,
           "flight_iata": "AF1234", "dep_iata": "CDG", "arr_iata": "JFK", "updated": updated, "status": "en-route", "type": "adsb"})
}

#[test]
fn airlabs_emits_each_aircraft_update_once_and_reads_errors_from_the_body() {
    let server = ReplayServer::start();
    let limited = ReplayServer::start();
    let refused = ReplayServer::start();
    let mut missing_hex = flight("", 1);
    missing_hex.as_object_mut().unwrap().remove("hex");
    server.serve("/api/v9/flights", Answer::json(200, &airlabs_body(&[flight("4CA1FA", 100), flight("3c6444", 100), missing_hex])));
    limited.serve(
        "/api/v9/flights",
        Answer::json(200, r#"{"error":{"message":"Minute limit exceeded","code":"minute_limit_exceeded"},"terms":"t"}"#),
    );
    refused.serve("/api/v9/flights", Answer::json(200, r#"{"error":{"message":"Unknown API key","code":"unknown_api_key"},"terms":"t"}"#));
    let source = |name: &str, server: &ReplayServer| {
        format!(
            "  - name: {name}
    plugin: airlabs-source
    topic: flights
    errors: {{ tolerance: all, dead_letter_topic: flights-dlq }}
    config:
      base_url: {}/api/v9
      api_key: ${{AIRLABS_KEY}}
      bbox: 48.5,2.0,49.2,2.8
      interval: 200ms
",
            server.url()
        )
    };
    let connectors = format!("{}{}{}", source("airlabs", &server), source("limited", &limited), source("refused", &refused));
    let directory = tempfile::tempdir().unwrap();
    let output = directory.path().join("out");
    let config = host_config(directory.path(), &pipeline(&connectors, &output, "flights"));
    let environment = [("AIRLABS_KEY", PLANTED_KEY)];
    let host = Host::start_with_env(&config, &environment);
    host.wait_until("two aircraft", WAIT, || lines(&output, "flights").len() == 2);
    host.wait_until("more polls", WAIT, || server.received("/api/v9/flights").len() >= 4);
    let flights = lines(&output, "flights");
    assert_eq!(flights.iter().map(|line| line.key.clone().unwrap()).collect::<Vec<_>>(), vec!["3c6444", "4ca1fa"]);
    assert_eq!(flights[0].timestamp, Some(100_000));
    assert_eq!(flights[1].value["flight_iata"], "AF1234");
    assert_eq!(lines(&output, "flights-dlq").len(), 1, "the flight without hex is dead-lettered once");
    let request = &server.received("/api/v9/flights")[0];
    assert_eq!(request.param("api_key").as_deref(), Some(PLANTED_KEY));
    assert_eq!(request.param("bbox").as_deref(), Some("48.5,2.0,49.2,2.8"));

    // A minute limit in an HTTP 200 body pauses the source, shown in status.
    host.wait_until("the minute limit shown", WAIT, || throttled_reason(&host, "limited").is_some());
    assert!(throttled_reason(&host, "limited").unwrap().contains("minute_limit_exceeded"));
    let asked = limited.received("/api/v9/flights").len();
    std::thread::sleep(Duration::from_millis(800));
    assert!(limited.received("/api/v9/flights").len() <= asked + 1, "no hammering while limited");
    // An unknown key fails the task once, without restarts, and without the key in the trace.
    let trace = assert_fails_for_good(&host, "refused", "refused the API key (unknown_api_key");
    assert_eq!(refused.received("/api/v9/flights").len(), 1);

    // One aircraft moves while the host is down: exactly that update follows.
    let first_log = host.stop();
    server.serve("/api/v9/flights", Answer::json(200, &airlabs_body(&[flight("4ca1fa", 160), flight("3c6444", 100)])));
    let host = Host::start_with_env(&config, &environment);
    host.wait_until("the update", WAIT, || lines(&output, "flights").len() == 3);
    let polled = server.received("/api/v9/flights").len();
    host.wait_until("more polls", WAIT, || server.received("/api/v9/flights").len() >= polled + 3);
    let updates: Vec<(String, i64)> =
        lines(&output, "flights").iter().map(|line| (line.key.clone().unwrap(), line.value["updated"].as_i64().unwrap())).collect();
    assert_eq!(updates, vec![("3c6444".to_owned(), 100), ("4ca1fa".to_owned(), 100), ("4ca1fa".to_owned(), 160)]);
    let answers = [host.call("GET", "/connectors?expand=status&expand=info", None).1.to_string(), host.get_text("/metrics")];
    let log = host.stop();
    for text in [&first_log, &log, &trace, &answers[0], &answers[1]] {
        assert!(!text.contains(PLANTED_KEY), "the key leaked: {text}");
    }
}

fn openaq_location(id: i64, sensors: &[(i64, i64, &str, &str)]) -> Value {
    let sensors: Vec<Value> = sensors
        .iter()
        .map(|(sensor, parameter, name, units)| {
            json!({"id": sensor, "name": format!("{name} {units}"),
            "parameter": {"id": parameter, "name": name, "units": units, "displayName": name.to_uppercase()}})
        })
        .collect();
    json!({"id": id, "name": format!("Station {id}"), "locality": "Paris", "timezone": "Europe/Paris",
           "country": {"id": 22, "code": "FR", "name": "France"}, "owner": {"id": 4, "name": "Airparif"},
           "provider": {"id": 1, "name": "EEA"}, "isMobile": false, "isMonitor": true, "instruments": [{"id": 2, "name": "Government Monitor"}],
           "sensors": sensors, "coordinates": {"latitude": 48.85, "longitude": 2.35}, "licenses": null, "bounds": [2.35, 48.85, 2.35, 48.85],
           "distance": 1200.5, "datetimeFirst": {"utc": "2016-11-09T00:00:00Z", "local": "2016-11-09T01:00:00+01:00"},
           "datetimeLast": {"utc": "2024-01-15T10:00:00Z", "local": "2024-01-15T11:00:00+01:00"}})
}

fn openaq_page(found: Value, page: u32, results: &[Value]) -> String {
    json!({"meta": {"name": "openaq-api", "website": "/", "page": page, "limit": 2, "found": found}, "results": results}).to_string()
}

fn latest(sensor: i64, location: i64, utc: &str, value: Value) -> Value {
    json!({"datetime": {"utc": utc, "local": "2024-01-15T11:00:00+01:00"}, "value": value,
           "coordinates": {"latitude": 48.85, "longitude": 2.35}, "sensorsId": sensor, "locationsId": location})
}

#[test]
fn openaq_pages_through_locations_and_emits_each_measurement_once() {
    let server = ReplayServer::start();
    let refused = ReplayServer::start();
    // A full first page whose total is unknown (`">2"`), then a last page.
    server.serve(
        "/v3/locations?page=1",
        Answer::json(
            200,
            &openaq_page(
                json!(">2"),
                1,
                &[openaq_location(1, &[(11, 2, "pm25", "µg/m³"), (12, 7, "no2", "ppm")]), openaq_location(2, &[(21, 2, "pm25", "µg/m³")])],
            ),
        ),
    );
    server.serve("/v3/locations?page=2", Answer::json(200, &openaq_page(json!(3), 2, &[openaq_location(3, &[(31, 2, "pm25", "µg/m³")])])));
    let t1 = "2024-01-15T10:00:00Z";
    server.serve(
        "/v3/locations/1/latest",
        Answer::json(200, &openaq_page(json!(2), 1, &[latest(11, 1, t1, json!(12.3)), latest(12, 1, t1, json!(0.02))])),
    );
    server.serve("/v3/locations/2/latest", Answer::json(200, &openaq_page(json!(1), 1, &[latest(21, 2, t1, Value::Null)])));
    server.serve("/v3/locations/3/latest", Answer::json(200, &openaq_page(json!(1), 1, &[latest(31, 3, t1, json!(8.0))])));
    refused.serve("/v3/locations", Answer::json(401, r#"{"detail":"Invalid credentials"}"#));
    let source = |name: &str, server: &ReplayServer| {
        format!(
            "  - name: {name}
    plugin: openaq-source
    topic: airquality
    errors: {{ tolerance: all, dead_letter_topic: airquality-dlq }}
    config:
      base_url: {}
      api_key: ${{OPENAQ_KEY}}
      coordinates: 48.8566,2.3522
      radius: 5000
      parameters: pm25
      page_size: 2
      interval: 300ms
",
            server.url()
        )
    };
    let connectors = format!("{}{}", source("openaq", &server), source("refused", &refused));
    let directory = tempfile::tempdir().unwrap();
    let output = directory.path().join("out");
    let config = host_config(directory.path(), &pipeline(&connectors, &output, "airquality"));
    let host = Host::start_with_env(&config, &[("OPENAQ_KEY", PLANTED_KEY)]);
    host.wait_until("two pm25 measurements", WAIT, || lines(&output, "airquality").len() == 2);
    host.wait_until("more cycles", WAIT, || server.received("/v3/locations/3/latest").len() >= 3);
    let measurements = lines(&output, "airquality");
    assert_eq!(measurements.iter().map(|line| line.key.clone().unwrap()).collect::<Vec<_>>(), vec!["11", "31"], "no2 filtered, each once");
    let first = &measurements[0].value;
    assert_eq!((first["parameter"].as_str(), first["units"].as_str(), first["value"].as_f64()), (Some("pm25"), Some("µg/m³"), Some(12.3)));
    assert_eq!(
        (first["location"].as_str(), first["country"].as_str(), first["datetime"].as_str()),
        (Some("Station 1"), Some("FR"), Some("2024-01-15T10:00:00.000Z"))
    );
    let dead = lines(&output, "airquality-dlq");
    assert_eq!(dead.len(), 1, "the null value is dead-lettered once: {dead:?}");
    assert!(dead[0].headers.to_string().contains("numeric value"));
    let pages: Vec<String> = server.received("/v3/locations").iter().filter_map(|request| request.param("page")).collect();
    assert_eq!(pages, vec!["1", "2"], "locations are read once per locations_refresh, both pages");
    assert_eq!(server.received("/v3/locations")[0].header("x-api-key"), Some(PLANTED_KEY));
    assert_fails_for_good(&host, "refused", "OpenAQ refused the API key (401 Invalid credentials)");
    // A newer measurement of one sensor: exactly that one follows.
    server.serve(
        "/v3/locations/3/latest",
        Answer::json(200, &openaq_page(json!(1), 1, &[latest(31, 3, "2024-01-15T11:00:00Z", json!(9.5))])),
    );
    host.wait_until("the newer measurement", WAIT, || lines(&output, "airquality").len() == 3);
    assert_eq!(lines(&output, "airquality")[2].value["value"], 9.5);
    let log = host.stop();
    assert!(!log.contains(PLANTED_KEY));
}

#[test]
fn openaq_rate_limits_and_quirky_errors() {
    let server = ReplayServer::start();
    server.once(
        "/v3/locations/8118",
        Answer::json(429, r#"{"detail":"Too many requests"}"#)
            .header("x-ratelimit-limit", "60")
            .header("x-ratelimit-used", "60")
            .header("x-ratelimit-remaining", "0")
            .header("x-ratelimit-reset", "30"),
    );
    let invalid = ReplayServer::start();
    invalid.serve("/v3/locations/8118", Answer::json(422, r#""Date/time from must be older than date/time to""#));
    let source = |name: &str, server: &ReplayServer| {
        format!(
            "  - name: {name}\n    plugin: openaq-source\n    topic: airquality\n    config: {{ base_url: '{}', api_key: k, location_ids: 8118, interval: 200ms }}\n",
            server.url()
        )
    };
    let connectors = format!("{}{}", source("limited", &server), source("invalid", &invalid));
    let directory = tempfile::tempdir().unwrap();
    let output = directory.path().join("out");
    let host = Host::start(&host_config(directory.path(), &pipeline(&connectors, &output, "airquality")));
    host.wait_until("the 429 shown", WAIT, || throttled_reason(&host, "limited").is_some());
    assert!(throttled_reason(&host, "limited").unwrap().contains("Too many requests"));
    assert_eq!(server.received("/v3/locations/8118").len(), 1);
    assert_fails_for_good(&host, "invalid", "Date/time from must be older than date/time to");
    host.stop();
}

fn quote(price: &str) -> String {
    json!({"Global Quote": {"01. symbol": "IBM", "02. open": "184.35", "03. high": "186.40", "04. low": "183.90", "05. price": price,
        "06. volume": "4130583", "07. latest trading day": "2024-01-15", "08. previous close": "184.22", "09. change": "1.70",
        "10. change percent": "0.9235%"}})
    .to_string()
}

fn intraday(points: &[(&str, &str)]) -> String {
    let series: serde_json::Map<String, Value> = points
        .iter()
        .map(|(time, close)| {
            ((*time).to_owned(), json!({"1. open": "166.0", "2. high": "166.5", "3. low": "165.9", "4. close": close, "5. volume": "60"}))
        })
        .collect();
    json!({"Meta Data": {"1. Information": "Intraday (5min) open, high, low, close prices and volume", "2. Symbol": "IBM",
        "3. Last Refreshed": "2024-08-02 19:55:00", "4. Interval": "5min", "5. Output Size": "Compact", "6. Time Zone": "US/Eastern"},
        "Time Series (5min)": series})
    .to_string()
}

#[test]
fn alpha_vantage_converts_series_and_quotes_and_respects_its_quota() {
    let server = ReplayServer::start();
    server.serve(
        "/query?function=TIME_SERIES_INTRADAY",
        Answer::json(200, &intraday(&[("2024-08-02 19:50:00", "165.1"), ("2024-08-02 19:55:00", "166.1")])),
    );
    server.serve("/query?function=GLOBAL_QUOTE", Answer::json(200, &quote("185.92")));
    let quota = ReplayServer::start();
    quota.serve("/query", Answer::json(200, r#"{"Information": "Thank you for using Alpha Vantage! Our standard API rate limit is 25 requests per day. Please subscribe to any of the premium plans at https://www.alphavantage.co/premium/ to instantly remove all daily rate limits."}"#));
    let throttle = ReplayServer::start();
    throttle.serve("/query", Answer::json(200, r#"{"Note": "Thank you for using Alpha Vantage! Our standard API call frequency is 5 calls per minute and 500 calls per day."}"#));
    let invalid = ReplayServer::start();
    invalid.serve("/query", Answer::json(200, r#"{"Error Message": "the parameter apikey is invalid or missing. Please claim your free API key on (https://www.alphavantage.co/support/#api-key)."}"#));
    let premium = ReplayServer::start();
    premium.serve("/query", Answer::json(200, r#"{"Information": "Thank you for using Alpha Vantage! This is a premium endpoint. You may subscribe to any of the premium plans at https://www.alphavantage.co/premium/ to instantly unlock all premium endpoints"}"#));
    let source = |name: &str, server: &ReplayServer, extra: &str| {
        format!(
            "  - name: {name}
    plugin: alphavantage-source
    topic: markets
    config:
      base_url: {}
      api_key: ${{ALPHAVANTAGE_KEY}}
      interval: 200ms
{extra}",
            server.url()
        )
    };
    let connectors = [
        source("intraday", &server, "      function: TIME_SERIES_INTRADAY\n      request_budget: 3\n"),
        source("quote", &server, "      function: GLOBAL_QUOTE\n      request_budget: 100000\n"),
        source("quota", &quota, ""),
        source("throttle", &throttle, ""),
        source("invalid", &invalid, ""),
        source("premium", &premium, "      function: TIME_SERIES_INTRADAY\n      outputsize: full\n"),
    ]
    .concat();
    let directory = tempfile::tempdir().unwrap();
    let output = directory.path().join("out");
    let config = host_config(directory.path(), &pipeline(&connectors, &output, "markets"));
    let host = Host::start_with_env(&config, &[("ALPHAVANTAGE_KEY", PLANTED_KEY)]);
    host.wait_until("two points and a quote", WAIT, || lines(&output, "markets").len() == 3);
    // The budget of 3 requests: after them the source waits for the window, asking no more.
    host.wait_until("the budget used up", WAIT, || {
        throttled_reason(&host, "intraday").is_some_and(|reason| reason.contains("request budget"))
    });
    let intraday_requests =
        server.received("/query").iter().filter(|request| request.param("function").as_deref() == Some("TIME_SERIES_INTRADAY")).count();
    assert_eq!(intraday_requests, 3, "the budget is never exceeded");
    let markets = lines(&output, "markets");
    let points: Vec<&support::SinkLine> = markets.iter().filter(|line| line.value.get("interval").is_some()).collect();
    assert_eq!(points.len(), 2, "each point once: {markets:?}");
    assert_eq!(points[0].key.as_deref(), Some("IBM"));
    assert_eq!((points[0].value["time"].as_str(), points[0].value["close"].as_f64()), (Some("2024-08-02T23:50:00.000Z"), Some(165.1)));
    assert_eq!(points[1].timestamp, Some(wasm_connect_protocol::time::parse_rfc3339("2024-08-02T23:55:00Z").unwrap()));
    let quote_line = markets.iter().find(|line| line.value.get("price").is_some()).unwrap();
    assert_eq!((quote_line.value["price"].as_f64(), quote_line.value["change_percent"].as_f64()), (Some(185.92), Some(0.9235)));
    assert_eq!(quote_line.value["latest_trading_day"], "2024-01-15");

    host.wait_until("the daily quota shown", WAIT, || {
        throttled_reason(&host, "quota").is_some_and(|reason| reason.contains("25 requests per day"))
    });
    host.wait_until("the per-minute note shown", WAIT, || {
        throttled_reason(&host, "throttle").is_some_and(|reason| reason.contains("5 calls per minute"))
    });
    assert_eq!((quota.received("/query").len(), throttle.received("/query").len()), (1, 1));
    assert_fails_for_good(&host, "invalid", "check api_key");
    assert_fails_for_good(&host, "premium", "premium endpoint");
    // A new quote price is a new record; the same quote is not repeated.
    server.serve("/query?function=GLOBAL_QUOTE", Answer::json(200, &quote("186.10")));
    host.wait_until("the new price", WAIT, || lines(&output, "markets").len() == 4);
    let log = host.stop();
    assert!(!log.contains(PLANTED_KEY));
    assert_eq!(server.received("/query")[0].param("apikey").as_deref(), Some(PLANTED_KEY));
}

#[test]
fn malformed_and_truncated_answers_are_retried_not_fatal() {
    let server = ReplayServer::start();
    let path = "/opendata/station_status.json";
    let good = stations(&[(1, 5, 100)]);
    server
        .once(path, Answer { headers: vec![("content-type".into(), "text/html".into())], ..Answer::json(200, "<html>Bad gateway</html>") });
    server.once(path, Answer { cut_after: Some(good.len() / 2), ..Answer::json(200, &good) });
    server.serve(path, Answer::json(200, &good));
    let directory = tempfile::tempdir().unwrap();
    let output = directory.path().join("out");
    let config = host_config(directory.path(), &pipeline(&velib_connector(&server, ""), &output, "stations"));
    let host = Host::start_with_env(&config, &[("VELIB_KEY", PLANTED_KEY)]);
    host.wait_until("the record after two bad answers", WAIT, || keys_and_positions(&output).len() == 1);
    let metrics = host.get_text("/metrics");
    assert!(metric(&metrics, "wasm_connect_poll_retries_total", &[("connector", "velib")]) >= 2.0, "{metrics}");
    assert_eq!(metric(&metrics, "wasm_connect_task_restarts_total", &[("connector", "velib")]), 0.0);
    assert_eq!(task(&host, "velib"), ("RUNNING".to_owned(), String::new()), "the trace clears once a poll succeeds");
    let log = host.stop();
    assert!(log.contains("not valid JSON"), "the malformed answer is logged");
    assert!(!log.contains(PLANTED_KEY));
    assert!(server.received(path).len() >= 3);
}
