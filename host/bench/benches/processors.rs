//! The `aggregate` processor on the embedded transport: a tumbling count per key, one
//! task, from a topic filled beforehand to its result topic. Prints records/s (from
//! the first record the processor read to the last) and the process's CPU time per
//! record for 10,000 and 1,000,000 keys; the memory its state takes per key (the
//! process's resident memory with every key in an open window, less before); and the
//! processor's own cost without the transport (records/s of `Aggregate::process`
//! alone, and the cost of taking and encoding the changes of one checkpoint). Then the
//! same through the example WASM processor plugin, `silence-detector` (from plugins/dist).
//! Last, the tumbling count on Kafka (noida-db's broker, out of process), where each
//! batch is a transaction with its changelog records and offsets: with batches of 1,000
//! and of 100 records, which shows a transaction's cost.
//!
//! `cargo bench -p wasm-connect-bench --bench processors [-- RECORDS] [kafka]` (`kafka`:
//! only the runs on Kafka).

#[allow(dead_code)]
#[path = "../../../tests/support/kafka.rs"]
mod kafka;
#[allow(dead_code)]
#[path = "../../../tests/support/services.rs"]
mod services;

/// What the test support's Kafka brokers need of their parent module.
fn repo_root() -> std::path::PathBuf {
    wasm_connect_bench::repository()
}

use std::path::Path;
use std::time::Instant;

use tokio_util::sync::CancellationToken;
use wasm_connect::processing::aggregate::Aggregate;
use wasm_connect::processing::{Processed, Processor};
use wasm_connect::transport::kafka::ClusterTopics;
use wasm_connect::transport::{EmbeddedTransport, KafkaTransport, Transport};
use wasm_connect_bench::{measure_delivery, metric, rss_mib, write_config};
use wasm_connect_protocol::Record;

const BATCH: u32 = 1_000;

/// Event time 0 of the readings: a whole hour a day back (a Kafka producer takes a
/// timestamp of 0 for "now", and retention removes records older than a week).
fn epoch() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let day_before = now - 86_400_000;
    day_before - day_before % 3_600_000
}

/// `records` small JSON readings over `keys` keys, one per millisecond of event time.
fn readings(records: usize, keys: usize) -> Vec<Record> {
    let epoch = epoch();
    (0..records)
        .map(|n| Record {
            topic: "readings".into(),
            key: Some(format!("device-{}", (n * 7_919) % keys).into_bytes()),
            value: Some(format!(r#"{{"t":{}}}"#, n % 50).into_bytes()),
            timestamp: Some(epoch + n as i64),
            ..Record::default()
        })
        .collect()
}

/// A host with one processor `counts` in batches of `batch`: `processor` is its
/// `plugin:` and `config:` lines; on the Kafka cluster at `kafka`, if given.
fn config(directory: &Path, port: u16, processor: &str, batch: u32, kafka: Option<&str>) -> std::path::PathBuf {
    let plugins = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/dist");
    let kafka = kafka.map_or(String::new(), |bootstrap| format!("kafka:\n  bootstrap_servers: {bootstrap}\n"));
    let text = format!(
        r#"version: 1
data_dir: {data}
admin:
  listen: 127.0.0.1:{port}
plugins:
  dir: {plugins}
{kafka}connectors:
  - name: counts
    topics: [readings]
    topic: counts
    batch_size: {batch}
{processor}
"#,
        data = directory.join("data").display(),
        plugins = plugins.display(),
    );
    write_config(directory, &text)
}

/// The `aggregate` processor with windows of `size`.
fn aggregate(size: &str) -> String {
    format!("    plugin: aggregate\n    config:\n      size: {size}\n      wall_clock_timeout: 1h")
}

/// One run of `records` over `keys` keys through `processor` (see [`config`]); prints its figures.
fn run(label: &str, records: usize, keys: usize, processor: &str) {
    run_on(label, records, keys, processor, BATCH, None);
}

/// [`run`] in batches of `batch`, on the Kafka cluster at `kafka` if given (its topic
/// `readings` made beforehand).
fn run_on(label: &str, records: usize, keys: usize, processor: &str, batch: u32, kafka: Option<&str>) {
    let directory = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let transport: Box<dyn Transport> = match kafka {
            Some(bootstrap) => Box::new(KafkaTransport::new(bootstrap, &Default::default(), ClusterTopics::named("bench"))),
            None => Box::new(EmbeddedTransport::open(&directory.path().join("data"), 4).unwrap()),
        };
        transport.ensure_topics(&["readings".to_owned()]).await.unwrap();
        let mut producer = transport.producer("feeder").await.unwrap();
        for chunk in readings(records, keys).chunks(10_000) {
            producer.send(chunk.to_vec(), None).await.unwrap();
        }
    });
    let rss_before = rss_mib();
    let port = services::free_port();
    let loaded =
        wasm_connect::config::load(&config(directory.path(), port, processor, batch, kafka)).unwrap_or_else(|errors| panic!("{errors}"));
    let shutdown = CancellationToken::new();
    let host = runtime.spawn(wasm_connect::run(loaded, shutdown.clone()));
    let throughput =
        measure_delivery(records, "records the processor read", || metric(port, "wasm_connect_records_consumed_total{", "counts") as usize);
    let rss_after = rss_mib();
    let results = metric(port, "wasm_connect_records_produced_total{", "counts") as usize;
    shutdown.cancel();
    runtime.block_on(host).unwrap().unwrap();
    println!(
        "{label}: {:.0} records/s, {:.2} µs CPU per record; {results} results; resident memory {rss_before:.0} -> {rss_after:.0} MiB ({:.0} bytes per key)",
        throughput.records_per_second,
        throughput.cpu_per_record.as_secs_f64() * 1e6,
        (rss_after - rss_before).max(0.0) * 1_048_576.0 / keys as f64,
    );
}

/// The processor alone: records/s of `process` and the cost of one checkpoint's changes.
fn alone(label: &str, records: usize, keys: usize, options: &[(&str, &str)]) {
    let options: Vec<(String, String)> = options.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect();
    let mut aggregate = Aggregate::new(&options).unwrap();
    let input = readings(records, keys);
    let started = Instant::now();
    let (mut changes, mut checkpoint_time, mut batches) = (0, std::time::Duration::ZERO, 0);
    for batch in input.chunks(BATCH as usize) {
        let mut out = Processed::default();
        aggregate.process(batch.to_vec(), 0, &mut out);
        let taking = Instant::now();
        changes += aggregate.take_changes().len();
        checkpoint_time += taking.elapsed();
        batches += 1;
    }
    let elapsed = started.elapsed();
    println!(
        "aggregate alone, {label}, {keys} keys: {:.0} records/s; a checkpoint takes {:.0} changed keys and {:.0} µs to encode them",
        records as f64 / elapsed.as_secs_f64(),
        changes as f64 / batches as f64,
        checkpoint_time.as_secs_f64() * 1e6 / batches as f64,
    );
}

fn main() {
    let records: usize = std::env::args().skip(1).find_map(|argument| argument.parse().ok()).unwrap_or(1_000_000);
    if std::env::args().any(|argument| argument == "kafka") {
        return on_kafka(records);
    }
    alone("tumbling 1 m", records, 10_000, &[("size", "1m")]);
    // Each key's records 10 s of event time apart: one session per key, open throughout.
    alone("sessions, gap 30 s", records, 10_000, &[("window", "session"), ("gap", "30s")]);
    // 10,000 keys in one-minute windows: 60,000 records per window, each closes as the next begins.
    run("tumbling count, 10 000 keys, 1 m windows", records, 10_000, &aggregate("1m"));
    // 1,000,000 keys all in one open window (1 h of event time): the state at its largest.
    run("tumbling count, 1 000 000 keys, one open window", records.max(1_000_000), 1_000_000, &aggregate("1h"));
    // The example processor plugin (WASM): per record two state reads, a write and a
    // timer moved. Each key comes back every 10 s of event time: with a silence of 1 h
    // no timer comes due; with 5 s each key is reported silent and back every time,
    // and nearly every record brings a timer due, so the batch is cut there.
    let silence = |silence: &str| format!("    plugin: silence-detector\n    config: {{ silence: {silence} }}");
    run("silence-detector (WASM), 10 000 keys, no timer due", records, 10_000, &silence("1h"));
    run("silence-detector (WASM), 10 000 keys, a timer due after nearly every record", records / 4, 10_000, &silence("5s"));
    on_kafka(records);
}

/// The tumbling count on Kafka: a transaction per batch, with the changed keys to the
/// changelog topic; `records / 5` records (noida-db is slower than the embedded store).
fn on_kafka(records: usize) {
    for batch in [1_000, 100] {
        let broker = kafka::NoidaKafka::start();
        broker.create_topic("readings", 4);
        let label = format!("on Kafka (noida-db 0.2.3), tumbling count, 10 000 keys, 1 m windows, batches of {batch}");
        run_on(&label, records / 5, 10_000, &aggregate("1m"), batch, Some(&broker.bootstrap));
    }
}
