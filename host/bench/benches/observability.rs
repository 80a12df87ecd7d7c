//! What observability costs and how fast the topic tools are: the metrics a sink
//! records per batch (ns per record, end-to-end latency histogram included), one
//! `/metrics` scrape of a host with 50 connectors, and `topics read` / `topics write`
//! on the embedded store (records/s).
//! Run: `cargo bench -p wasm-connect-bench --bench observability`.

use std::io::Cursor;
use std::time::Instant;

use wasm_connect::runtime::PluginKind;
use wasm_connect::telemetry::{Metrics, State, StatusBoard, TaskLabels};
use wasm_connect::topic_tools::{self, ReadOptions, WriteOptions};
use wasm_connect::transport::{EmbeddedTransport, StartAt, Transport};
use wasm_connect_bench::sample_records;

const BATCH: usize = 500;
const BATCHES: usize = 2_000;
const CONNECTORS: usize = 50;
const TOPIC_RECORDS: usize = 100_000;

fn main() {
    sink_metrics_per_record();
    scrape_of_a_busy_host();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(topic_tools_throughput());
}

fn sink_metrics_per_record() {
    let metrics = Metrics::new(StatusBoard::new("bench"));
    let labels = TaskLabels { connector: "flights-to-es".into(), task: "0".into(), plugin: "elasticsearch-sink".into() };
    metrics.task_started(&labels, PluginKind::Sink);
    let batch = sample_records(BATCH);
    let started = Instant::now();
    for _ in 0..BATCHES {
        metrics.records_consumed(&labels, &batch);
        metrics.records_written(&labels, &batch);
    }
    let per_record = started.elapsed().as_nanos() as f64 / (BATCH * BATCHES) as f64;
    println!("sink metrics per record (consumed + written + end-to-end latency): {per_record:.1} ns");
}

fn scrape_of_a_busy_host() {
    let status = StatusBoard::new("bench");
    let metrics = Metrics::new(status.clone());
    let batch = sample_records(BATCH);
    for connector in 0..CONNECTORS {
        let name = format!("connector-{connector:02}");
        status.set_connector(&name, PluginKind::Sink, 2, State::Running);
        for task in 0..2 {
            status.set_task(&name, task, State::Running, None);
            let labels = TaskLabels { connector: name.clone(), task: task.to_string(), plugin: "elasticsearch-sink".into() };
            metrics.task_started(&labels, PluginKind::Sink);
            metrics.records_consumed(&labels, &batch);
            metrics.records_written(&labels, &batch);
        }
    }
    for openmetrics in [false, true] {
        let rounds = 50;
        let started = Instant::now();
        let mut bytes = 0;
        for _ in 0..rounds {
            bytes = metrics.render(openmetrics).len();
        }
        let each = started.elapsed() / rounds;
        let format = if openmetrics { "OpenMetrics" } else { "Prometheus text" };
        println!("/metrics of {CONNECTORS} connectors x 2 tasks ({format}): {:.2} ms, {} KiB", each.as_secs_f64() * 1000.0, bytes / 1024);
    }
}

async fn topic_tools_throughput() {
    let directory = tempfile::tempdir().unwrap();
    let transport = EmbeddedTransport::open(directory.path(), 4).unwrap();
    let lines: String = sample_records(TOPIC_RECORDS)
        .iter()
        .map(|record| {
            format!(
                "{}|{}\n",
                String::from_utf8_lossy(record.key.as_ref().unwrap()),
                String::from_utf8_lossy(record.value.as_ref().unwrap())
            )
        })
        .collect();
    let options = WriteOptions { topic: "flights".into(), key_separator: Some("|".into()), headers: Vec::new() };
    let started = Instant::now();
    let written = topic_tools::write(&transport, &options, &mut Cursor::new(lines.into_bytes())).await.unwrap();
    let seconds = started.elapsed().as_secs_f64();
    println!("topics write, embedded: {:.0} records/s ({written} records of ~230 bytes in {seconds:.2} s)", written as f64 / seconds);
    for json in [true, false] {
        let options = ReadOptions { topic: "flights".into(), partition: None, start: StartAt::Beginning, max: None, follow: false, json };
        let started = Instant::now();
        let read = topic_tools::read(&transport as &dyn Transport, &options, &mut std::io::sink()).await.unwrap();
        let seconds = started.elapsed().as_secs_f64();
        let form = if json { "--json" } else { "readable, pretty JSON" };
        println!("topics read ({form}), embedded: {:.0} records/s ({read} records in {seconds:.2} s)", read as f64 / seconds);
    }
}
