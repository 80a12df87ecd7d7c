//! The host's own path, with plugins that do next to nothing: `prebuilt-source` (one
//! prebuilt 500-byte value, copied into every batch) -> a topic -> `counting-sink`
//! (acknowledges without reading), one task each, in the bench process on the embedded
//! transport. What is left is the host's work per record: the plugin calls and their
//! batch encoding, the store's writes and reads, offsets, metrics. Prints records/s
//! from the sink's first acknowledged record to its last, best of several runs, and
//! the process's CPU time per record.
//!
//! Then what the host costs at rest: an idle host without connectors, and 25
//! `iot-sensor-simulator` connectors at 1 record/s, each into its own topic, read by 25
//! `counting-sink` connectors (the issue's 50 connectors), as a share of one core.
//!
//! `cargo bench -p wasm-connect-bench --bench host_path [-- RECORDS] [path|idle] [batch=N]`
//! (`batch=N`: both connectors' `batch_size`, 500 by default.)

#[allow(dead_code)]
#[path = "../../../tests/support/services.rs"]
mod services;

use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wasm_connect_bench::{Throughput, cpu_time, measure_delivery, metric, repository, write_config};

const RUNS: usize = 5;
const VALUE_BYTES: usize = 500;

fn config(directory: &Path, port: u16, records: usize, batch: u32) -> std::path::PathBuf {
    let text = format!(
        r#"version: 1
data_dir: {data}
admin:
  listen: 127.0.0.1:{port}
plugins:
  dir: {plugins}
connectors:
  - name: prebuilt
    plugin: prebuilt-source
    topic: path
    batch_size: {batch}
    config:
      limit: {records}
      value_bytes: {VALUE_BYTES}
  - name: counting
    plugin: counting-sink
    topics: [path]
    batch_size: {batch}
"#,
        data = directory.join("data").display(),
        plugins = repository().join("plugins/test-dist").display(),
    );
    write_config(directory, &text)
}

/// One run in a fresh directory; components come from the shared compiled cache.
async fn run(records: usize, batch: u32) -> Throughput {
    let directory = tempfile::tempdir().unwrap();
    let port = services::free_port();
    let loaded = wasm_connect::config::load(&config(directory.path(), port, records, batch)).unwrap_or_else(|errors| panic!("{errors}"));
    let shutdown = CancellationToken::new();
    let host = tokio::spawn(wasm_connect::run(loaded, shutdown.clone()));
    // Acknowledged by the sink's plugin, as the host counts them.
    let run = measure_delivery(records, "records the sink acknowledged", || {
        metric(port, "wasm_connect_records_written_total{", "counting") as usize
    });
    shutdown.cancel();
    host.await.unwrap().unwrap();
    run
}

/// The share of one core the host uses over `IDLE_SPAN` with `connectors` (YAML list
/// items), after they had `IDLE_WARM_UP` to start.
async fn at_rest(connectors: &str) -> f64 {
    let directory = tempfile::tempdir().unwrap();
    let port = services::free_port();
    let text = format!(
        "version: 1\ndata_dir: {}\nadmin:\n  listen: 127.0.0.1:{port}\nplugins:\n  dir: {}\nconnectors:{connectors}\n",
        directory.path().join("data").display(),
        repository().join("plugins/test-dist").display(),
    );
    let loaded = wasm_connect::config::load(&write_config(directory.path(), &text)).unwrap_or_else(|errors| panic!("{errors}"));
    let shutdown = CancellationToken::new();
    let host = tokio::spawn(wasm_connect::run(loaded, shutdown.clone()));
    tokio::time::sleep(IDLE_WARM_UP).await;
    let before = cpu_time();
    tokio::time::sleep(IDLE_SPAN).await;
    let share = cpu_time().saturating_sub(before).as_secs_f64() / IDLE_SPAN.as_secs_f64();
    shutdown.cancel();
    host.await.unwrap().unwrap();
    share * 100.0
}

const IDLE_WARM_UP: Duration = Duration::from_secs(5);
const IDLE_SPAN: Duration = Duration::from_secs(20);

fn main() {
    let records: usize = std::env::args().skip(1).find_map(|arg| arg.parse().ok()).unwrap_or(1_000_000);
    let only = std::env::args().skip(1).find(|arg| arg == "path" || arg == "idle");
    let batch = std::env::args()
        .skip(1)
        .find_map(|arg| arg.strip_prefix("batch=")?.parse().ok())
        .unwrap_or(wasm_connect::config::ConnectorConfig::DEFAULT_BATCH_SIZE);
    // The components are compiled once, by the first run, into a cache all runs share.
    let cache = tempfile::tempdir().unwrap();
    // SAFETY: set before any other thread exists.
    unsafe { std::env::set_var(wasm_connect::runtime::CACHE_VARIABLE, cache.path()) };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    if only.as_deref() != Some("idle") {
        let runs: Vec<Throughput> = (0..RUNS).map(|_| runtime.block_on(run(records, batch))).collect();
        let best = runs.iter().map(|run| run.records_per_second).fold(0.0, f64::max);
        let worst = runs.iter().map(|run| run.records_per_second).fold(f64::MAX, f64::min);
        let cpu = runs.iter().map(|run| run.cpu_per_record).min().unwrap().as_secs_f64() * 1e6;
        println!(
            "prebuilt-source -> embedded topic -> counting-sink, {records} records of {VALUE_BYTES} bytes, batches of {batch}, best of {RUNS}:"
        );
        println!("  {best:.0} records/s (worst {worst:.0}), {cpu:.2} µs CPU per record");
    }
    if only.as_deref() != Some("path") {
        let idle = runtime.block_on(at_rest(" []"));
        let mut fifty = String::new();
        for n in 0..25 {
            fifty += &format!(
                "\n  - {{ name: sensors-{n}, plugin: iot-sensor-simulator, topic: t{n}, config: {{ rate: 1 }} }}\n  - {{ name: sink-{n}, plugin: counting-sink, topics: [t{n}] }}"
            );
        }
        let busy = runtime.block_on(at_rest(&fifty));
        println!("At rest, share of one core over {} s (after {} s to start):", IDLE_SPAN.as_secs(), IDLE_WARM_UP.as_secs());
        println!("  an idle host without connectors: {idle:.2} %");
        println!("  25 sources at 1 record/s and 25 sinks, a topic each: {busy:.2} %");
    }
}
