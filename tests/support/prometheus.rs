//! Prometheus for the tests: one scraping a host with given rule files, instant
//! queries, and the alerts it fires.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::services::{self, Server};
use super::{Host, percent_encode};

/// Prometheus scraping `host` every `interval` (and evaluating its rules as often),
/// with each `(file name, text)` of `rules` written into `directory` and loaded.
pub fn scraping(directory: &Path, host: &Host, interval: &str, rules: &[(&str, &str)]) -> Server {
    for (name, text) in rules {
        std::fs::write(directory.join(name), text).unwrap();
    }
    let files = rules.iter().map(|(name, _)| format!("'{name}'")).collect::<Vec<_>>().join(", ");
    let target = host.admin_url().trim_start_matches("http://").to_owned();
    let config = format!(
        "global: {{ scrape_interval: {interval}, evaluation_interval: {interval} }}
rule_files: [{files}]
scrape_configs:
  - job_name: wasm-connect
    static_configs: [{{ targets: ['{target}'] }}]
"
    );
    std::fs::write(directory.join("prometheus.yml"), config).unwrap();
    services::prometheus(&directory.join("prometheus.yml"))
}

/// An instant query's result (a vector), or a panic with Prometheus's error.
pub fn query(prometheus: &Server, expression: &str) -> Value {
    let body = format!("query={}", percent_encode(expression));
    let response = services::http_request(
        "POST",
        &format!("{}/api/v1/query", prometheus.url),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    );
    let answer: Value = serde_json::from_str(&response.body).unwrap_or_else(|error| panic!("{expression}: {error}: {}", response.body));
    assert_eq!(answer["status"], "success", "{expression}: {answer}");
    answer["data"]["result"].clone()
}

/// The firing alerts: name -> the `connector/task` (or instance) each fires for.
pub fn firing_alerts(prometheus: &Server) -> std::collections::BTreeMap<String, BTreeSet<String>> {
    let response = services::http_request("GET", &format!("{}/api/v1/alerts", prometheus.url), &[], b"");
    let answer: Value = serde_json::from_str(&response.body).unwrap();
    let mut firing: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
    for alert in answer["data"]["alerts"].as_array().unwrap().iter().filter(|alert| alert["state"] == "firing") {
        let labels = &alert["labels"];
        let subject = match (labels["connector"].as_str(), labels["task"].as_str()) {
            (Some(connector), Some(task)) => format!("{connector}/{task}"),
            (Some(connector), None) => connector.to_owned(),
            _ => labels["instance"].as_str().unwrap_or_default().to_owned(),
        };
        firing.entry(labels["alertname"].as_str().unwrap().to_owned()).or_default().insert(subject);
    }
    firing
}

/// Waits (up to a minute) until `alert` fires; what it fires for.
pub fn wait_for_alert(prometheus: &Server, alert: &str) -> BTreeSet<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let firing = firing_alerts(prometheus);
        if let Some(subjects) = firing.get(alert) {
            return subjects.clone();
        }
        assert!(Instant::now() < deadline, "{alert} did not fire within 60 s; firing: {firing:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}
