//! Live management, timed: start-up of the default pipeline (four simulators and the
//! file sink) until every task is RUNNING, with a cold compile cache and a warm one;
//! `POST /plugins` of a Rust plugin until a connector on it is RUNNING (and until a
//! running connector has moved to another version); and admin API requests per
//! second from concurrent clients while the pipeline runs. Prints the figures.
//!
//! `cargo bench -p wasm-connect-bench --bench management`

#[allow(dead_code)]
#[path = "../../../tests/support/services.rs"]
mod services;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use wasm_connect_bench::{pipeline_config, repository};

fn call(port: u16, method: &str, path: &str, content_type: &str, body: &[u8]) -> (u16, Value) {
    let response = services::http_request(method, &format!("http://127.0.0.1:{port}{path}"), &[("Content-Type", content_type)], body);
    (response.status, serde_json::from_str(&response.body).unwrap_or(Value::Null))
}

/// True when the admin API answers and every task of every connector is RUNNING.
fn all_running(port: u16, expected: usize) -> bool {
    if std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        return false;
    }
    let (_, statuses) = call(port, "GET", "/connectors?expand=status", "application/json", b"");
    let Some(connectors) = statuses.as_object() else { return false };
    connectors.len() == expected
        && connectors.values().all(|connector| {
            let tasks = connector["status"]["tasks"].as_array();
            tasks.is_some_and(|tasks| !tasks.is_empty() && tasks.iter().all(|task| task["state"] == "RUNNING"))
        })
}

/// Starts the host in this process and returns the time until every task runs.
async fn start(config: &Path, port: u16, expected: usize) -> (Duration, CancellationToken, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let started = Instant::now();
    let loaded = wasm_connect::config::load(config).unwrap_or_else(|errors| panic!("{errors}"));
    let shutdown = CancellationToken::new();
    let host = tokio::spawn(wasm_connect::run(loaded, shutdown.clone()));
    while !tokio::task::spawn_blocking(move || all_running(port, expected)).await.unwrap() {
        assert!(started.elapsed() < Duration::from_secs(120), "the pipeline did not start in 2 minutes");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    (started.elapsed(), shutdown, host)
}

async fn wait_running(port: u16, connector: &'static str, since: Instant) -> Duration {
    loop {
        let (_, status) =
            tokio::task::spawn_blocking(move || call(port, "GET", &format!("/connectors/{connector}/status"), "application/json", b""))
                .await
                .unwrap();
        if status["tasks"].as_array().is_some_and(|tasks| !tasks.is_empty() && tasks.iter().all(|task| task["state"] == "RUNNING")) {
            return since.elapsed();
        }
        assert!(since.elapsed() < Duration::from_secs(60), "{connector} did not start: {status}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn milliseconds(duration: Duration) -> String {
    format!("{:.0} ms", duration.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let directory = tempfile::tempdir().unwrap();
    let port = services::free_port();
    let config = pipeline_config(directory.path(), port);

    // Start-up: cold (empty compile cache), then warm three times.
    let (cold, shutdown, host) = start(&config, port, 5).await;
    shutdown.cancel();
    host.await.unwrap().unwrap();
    let mut warm = Vec::new();
    for _ in 0..3 {
        let (time, shutdown, host) = start(&config, port, 5).await;
        warm.push(time);
        shutdown.cancel();
        host.await.unwrap().unwrap();
    }
    warm.sort();
    println!("start-up to all 5 connectors (6 tasks) RUNNING, cold compile cache: {}", milliseconds(cold));
    println!(
        "start-up to all 5 connectors (6 tasks) RUNNING, warm compile cache: {} (best of 3; worst {})",
        milliseconds(warm[0]),
        milliseconds(warm[2])
    );

    // Hot-add while the pipeline runs: upload, create, RUNNING.
    let (_, shutdown, host) = start(&config, port, 5).await;
    let plugins = repository().join("plugins/test-dist");
    let version_one = std::fs::read(plugins.join("counter-source.wasm")).unwrap();
    let version_two = std::fs::read(plugins.join("counter-source-v2.wasm")).unwrap();
    let size_kb = version_one.len() / 1024;
    let since = Instant::now();
    let (status, _) = tokio::task::spawn_blocking(move || call(port, "POST", "/plugins", "application/wasm", &version_one)).await.unwrap();
    assert_eq!(status, 201);
    let uploaded = since.elapsed();
    let counter =
        json!({"name": "counter", "config": {"connector.class": "counter-source@1.0.0", "topic": "counts", "rate": "100"}}).to_string();
    let (status, _) =
        tokio::task::spawn_blocking(move || call(port, "POST", "/connectors", "application/json", counter.as_bytes())).await.unwrap();
    assert_eq!(status, 201);
    let hot_add = wait_running(port, "counter", since).await;
    println!(
        "POST /plugins ({size_kb} KB Rust component, cold compile) answered in {}; connector on it RUNNING after {}",
        milliseconds(uploaded),
        milliseconds(hot_add)
    );
    let since = Instant::now();
    let (status, _) = tokio::task::spawn_blocking(move || call(port, "POST", "/plugins", "application/wasm", &version_two)).await.unwrap();
    assert_eq!(status, 201);
    let patch = json!({"connector.class": "counter-source@2.0.0"}).to_string();
    let (status, _) =
        tokio::task::spawn_blocking(move || call(port, "PATCH", "/connectors/counter/config", "application/json", patch.as_bytes()))
            .await
            .unwrap();
    assert_eq!(status, 200);
    let upgrade = wait_running(port, "counter", since).await;
    println!("upload of version 2.0.0 and the running connector moved to it: RUNNING after {}", milliseconds(upgrade));

    // Admin requests per second from concurrent clients, the pipeline running.
    let seconds = 5.0;
    for (clients, path) in
        [(4, "/connectors/flights-sim/status"), (4, "/connectors?expand=status&expand=info"), (16, "/connectors/flights-sim/status")]
    {
        let deadline = Instant::now() + Duration::from_secs_f64(seconds);
        let workers: Vec<_> = (0..clients)
            .map(|_| {
                std::thread::spawn(move || {
                    let (mut answered, mut failed) = (0u64, 0u64);
                    while Instant::now() < deadline {
                        match services::http_request("GET", &format!("http://127.0.0.1:{port}{path}"), &[], b"").status {
                            200 => answered += 1,
                            _ => failed += 1,
                        }
                    }
                    (answered, failed)
                })
            })
            .collect();
        let (answered, failed) =
            workers.into_iter().map(|worker| worker.join().unwrap()).fold((0, 0), |sum, one| (sum.0 + one.0, sum.1 + one.1));
        println!(
            "GET {path}, {clients} clients, a new connection per request, pipeline running: {:.0} requests/s ({failed} failed)",
            answered as f64 / seconds
        );
    }
    shutdown.cancel();
    host.await.unwrap().unwrap();
}
