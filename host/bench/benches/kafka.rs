//! Kafka, timed with the real `wasm-connect` binary (`target/release/wasm-connect`,
//! built first with `cargo build --release`): a simulator's records through Kafka to
//! the file sink, in records/s,
//! - on one broker (tansu behind the test front) in plaintext, over TLS, and over
//!   SASL_SSL with SCRAM-SHA-512, the same front piping each;
//! - on librdkafka's mock cluster with no compression, zstd, and lz4;
//!
//! and the time from the restart that follows a SIGKILL to the sink's first write, on
//! noida-db's broker (which honours static group membership, as Kafka does since 2.3)
//! and on the mock cluster (which does not). Prints the figures.
//!
//! Then (`paths`, run alone) issue 17's two pipelines through Kafka, the flight
//! simulator into the file sink and the host's own path, on tansu and on the mock;
//! and (`sources`, run alone) the same two pipelines on noida-db, whose transactions
//! are Kafka's, with sources writing each batch in a transaction
//! (`exactly.once.source.support: enabled`, the default) and without (`disabled`).
//!
//! `cargo bench -p wasm-connect-bench --bench kafka [-- RECORDS | restarts | paths [RECORDS] | sources [RECORDS]]`
//! (`restarts`: only the restart figures; `paths`: only issue 17's pipelines).

// The tests' broker helpers, which find `services` and `repo_root` beside them.
#[allow(dead_code)]
#[path = "../../../tests/support/kafka.rs"]
mod kafka;
#[allow(dead_code)]
#[path = "../../../tests/support/services.rs"]
mod services;

fn repo_root() -> PathBuf {
    wasm_connect_bench::repository()
}

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kafka::{Listener, MockBroker, NoidaKafka, PASSWORD, SecuredBroker, USER};
use wasm_connect_bench::{HostProcess, measure_delivery_with, repository, write_config};

const START: &str = "2024-05-01T00:00:00Z";

/// Lines the file sink wrote under `output` (every file, every topic).
fn lines_written(output: &Path) -> usize {
    let Ok(topics) = std::fs::read_dir(output) else { return 0 };
    let mut lines = 0;
    for entry in topics.flatten() {
        let path = entry.path();
        let files: Vec<PathBuf> =
            if path.is_dir() { std::fs::read_dir(&path).unwrap().flatten().map(|file| file.path()).collect() } else { vec![path] };
        for file in files {
            if let Ok(bytes) = std::fs::read(&file) {
                lines += bytes.iter().filter(|byte| **byte == b'\n').count();
            }
        }
    }
    lines
}

/// A sensor simulator (`records` readings replayed as fast as the host goes, in
/// batches of 500) into `topic`, and a file sink reading it with `sink_tasks` tasks.
fn config(
    directory: &Path,
    bootstrap: &str,
    client: &str,
    topic: &str,
    records: usize,
    sink_tasks: usize,
    rate_and_start: (u32, &str),
) -> PathBuf {
    let (rate, start) = rate_and_start;
    let text = format!(
        "version: 1\ndata_dir: {data}\nadmin:\n  listen: 127.0.0.1:0\nplugins:\n  dir: {plugins}\n\
         kafka:\n  bootstrap_servers: {bootstrap}\n  offsets_topic: {topic}-offsets\n  config_topic: {topic}-configs\n  client:\n{client}    session.timeout.ms: 6000\n\
         connectors:\n  - name: sensors\n    plugin: iot-sensor-simulator\n    topic: {topic}\n    batch_size: 500\n    config:\n      seed: 3\n      rate: {rate}\n      start: {start}\n      limit: {records}\n\
         \x20 - name: files\n    plugin: file-sink\n    topics: [{topic}]\n    tasks_max: {sink_tasks}\n    batch_size: 500\n    config:\n      directory: {output}\n",
        data = directory.join("data").display(),
        plugins = repository().join("plugins/dist").display(),
        output = directory.join("output").display(),
    );
    write_config(directory, &text)
}

/// Runs the pipeline until the sink wrote `records` lines; records/s from the sink's
/// first line to its last (start-up and the group join left out).
fn throughput(directory: &Path, bootstrap: &str, client: &str, topic: &str, records: usize) -> f64 {
    std::fs::create_dir_all(directory).unwrap();
    let config = config(directory, bootstrap, client, topic, records, 1, (0, START));
    let output = directory.join("output");
    let host = HostProcess::start(&config);
    let started = Instant::now();
    let (mut first, mut first_at) = (0, None);
    loop {
        let written = lines_written(&output);
        if written > 0 && first_at.is_none() {
            (first, first_at) = (written, Some(Instant::now()));
        }
        if written >= records {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "{topic}: {written} of {records} written after 10 minutes; see {}",
            directory.join("host.log").display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let elapsed = first_at.unwrap().elapsed().as_secs_f64();
    host.stop();
    (records - first) as f64 / elapsed
}

/// One of issue 17's two pipelines through Kafka: its source connector into `topic`,
/// its sink connector (named `sink`) reading it; admin API on `port`.
struct Path17 {
    name: &'static str,
    plugins: &'static str,
    source: &'static str,
    sink: &'static str,
}

/// flight-simulator (a replay as fast as the host polls) -> file-sink, as the
/// embedded `pipeline` bench runs it; and the host's own path, as `host_path` runs it.
const PATHS: [Path17; 2] = [
    Path17 {
        name: "flight-simulator -> file-sink",
        plugins: "plugins/dist",
        source: "plugin: flight-simulator\n    config: { flights: 2000, rate: 0, seed: 7, start: \"2024-01-01T00:00:00Z\", limit: RECORDS }",
        sink: "plugin: file-sink\n    config: { directory: OUTPUT, max_file_bytes: 1073741824 }",
    },
    Path17 {
        name: "prebuilt-source -> counting-sink",
        plugins: "plugins/test-dist",
        source: "plugin: prebuilt-source\n    config: { value_bytes: 500, limit: RECORDS }",
        sink: "plugin: counting-sink",
    },
];

/// The host's own topics beside `<topic>` on brokers that refuse CreateTopics (the
/// config topic is `<topic>-configs`, and names the assignments and status topics).
const INTERNAL_TOPICS: [&str; 5] = ["offsets", "configs", "configs-assignments", "configs-status", "configs-plugins"];

/// Runs `path` through the broker at `bootstrap` until its sink acknowledged `records`
/// (the host's `records_written` metric); records/s from the first acknowledgement to
/// the last, and the host's CPU time per record over the same span. `cluster`: lines
/// of the `kafka.cluster` block, indented by four spaces.
fn path_throughput(directory: &Path, bootstrap: &str, path: &Path17, topic: &str, records: usize, cluster: &str) -> (f64, Duration) {
    std::fs::create_dir_all(directory).unwrap();
    let port = services::free_port();
    let cluster = if cluster.is_empty() { String::new() } else { format!("  cluster:\n{cluster}") };
    let text = format!(
        "version: 1\ndata_dir: {data}\nadmin:\n  listen: 127.0.0.1:{port}\nplugins:\n  dir: {plugins}\n\
         kafka:\n  bootstrap_servers: {bootstrap}\n  offsets_topic: {topic}-offsets\n  config_topic: {topic}-configs\n{cluster}\
         connectors:\n  - name: source\n    topic: {topic}\n    {source}\n  - name: sink\n    topics: [{topic}]\n    {sink}\n",
        data = directory.join("data").display(),
        plugins = repository().join(path.plugins).display(),
        source = path.source.replace("RECORDS", &records.to_string()),
        sink = path.sink.replace("OUTPUT", &directory.join("output").display().to_string()),
    );
    let host = HostProcess::start(&write_config(directory, &text));
    let what = format!("{topic}: records written (see {})", directory.join("host.log").display());
    let run = measure_delivery_with(
        records,
        &what,
        || host.cpu_time(),
        || wasm_connect_bench::metric(port, "wasm_connect_records_written_total{", "sink") as usize,
    );
    host.stop();
    (run.records_per_second, run.cpu_per_record)
}

/// Issue 17's pipelines on brokers in processes of their own: tansu (memory engine,
/// clients connected to it directly) and librdkafka's mock cluster.
fn paths(directory: &Path, records: usize) {
    println!("\nissue 17's pipelines through Kafka (best of 3; records/s from the sink's first acknowledgement, host CPU per record):");
    for path in &PATHS {
        for broker in ["tansu 0.6, memory engine, direct", "librdkafka mock cluster"] {
            let mut runs = Vec::new();
            for run in 0..3 {
                let topic = format!("path-{run}");
                let directory = directory.join(format!("{}-{}-{run}", path.plugins.replace('/', "-"), broker.len()));
                runs.push(if broker.starts_with("tansu") {
                    let broker = SecuredBroker::start(Listener::Direct, &directory.join("certificates"));
                    path_throughput(&directory, &broker.bootstrap, path, &topic, records, "")
                } else {
                    let mut mock = MockBroker::start();
                    // The mock keeps about 5 MB per partition, dropping the oldest
                    // beyond: 16 partitions carry 80,000 records of about 500 bytes.
                    mock.create_topic(&topic, 16);
                    for internal in INTERNAL_TOPICS {
                        mock.create_topic(&format!("{topic}-{internal}"), 1);
                    }
                    path_throughput(&directory, &mock.bootstrap, path, &topic, records.min(80_000), "")
                });
            }
            let best = runs.iter().map(|run| run.0).fold(0.0, f64::max);
            let worst = runs.iter().map(|run| run.0).fold(f64::MAX, f64::min);
            let cpu = runs.iter().map(|run| run.1).min().unwrap().as_secs_f64() * 1e6;
            println!("  {:<34} {broker:<36} {best:>8.0} records/s (worst {worst:.0}), {cpu:.2} µs CPU per record", path.name);
        }
    }
}

/// Issue 17's pipelines on noida-db with transactional sources and without: what a
/// transaction per source batch costs.
fn sources(directory: &Path, records: usize) {
    println!(
        "\nsources on noida-db 0.2.3 with and without a transaction per batch (best of 3; records/s from the sink's first acknowledgement, host CPU per record):"
    );
    for path in &PATHS {
        for (support, name) in [("enabled", "a transaction per batch"), ("disabled", "idempotent, position after")] {
            let mut runs = Vec::new();
            for run in 0..3 {
                let noida = NoidaKafka::start();
                let topic = format!("sources-{run}");
                noida.create_topic(&topic, 4);
                let directory = directory.join(format!("{}-{support}-{run}", path.plugins.replace('/', "-")));
                let cluster = format!("    exactly.once.source.support: {support}\n");
                runs.push(path_throughput(&directory, &noida.bootstrap, path, &topic, records, &cluster));
            }
            let best = runs.iter().map(|run| run.0).fold(0.0, f64::max);
            let worst = runs.iter().map(|run| run.0).fold(f64::MAX, f64::min);
            let cpu = runs.iter().map(|run| run.1).min().unwrap().as_secs_f64() * 1e6;
            println!("  {:<34} {name:<28} {best:>8.0} records/s (worst {worst:.0}), {cpu:.2} µs CPU per record", path.name);
        }
    }
}

fn print_row(what: &str, rate: f64, baseline: f64) {
    println!("{what:<44} {rate:>10.0} records/s  {:>6.2}x", rate / baseline);
}

/// The time from each restart after a SIGKILL to the sink's next line, `runs` times,
/// on the broker at `bootstrap` (whose topic `restarts` has 4 partitions, or is made by
/// the host).
fn restart_to_first_write(directory: &Path, bootstrap: &str, runs: usize) -> Vec<Duration> {
    std::fs::create_dir_all(directory).unwrap();
    // A steady stream (not a replay) that outlasts every run.
    let config = config(directory, bootstrap, "", "restarts", 1_000_000, 2, (2_000, "now"));
    let output = directory.join("output");
    let mut host = HostProcess::start(&config);
    let mut figures = Vec::new();
    for _ in 0..runs {
        let before = lines_written(&output);
        let deadline = Instant::now() + Duration::from_secs(120);
        while lines_written(&output) < before + 2_000 {
            assert!(Instant::now() < deadline, "the sink did not write 2,000 lines in 2 minutes");
            std::thread::sleep(Duration::from_millis(50));
        }
        host.kill();
        let at_kill = lines_written(&output);
        host = HostProcess::start(&config);
        let restarted = Instant::now();
        while lines_written(&output) == at_kill {
            assert!(restarted.elapsed() < Duration::from_secs(300), "the sink did not write within 5 minutes of the restart");
            std::thread::sleep(Duration::from_millis(50));
        }
        figures.push(restarted.elapsed());
    }
    host.stop();
    figures
}

fn main() {
    let records: usize = std::env::args().skip(1).find_map(|argument| argument.parse().ok()).unwrap_or(50_000);
    let directory = tempfile::tempdir().unwrap();
    if std::env::args().any(|argument| argument == "restarts") {
        return restarts(directory.path());
    }
    if std::env::args().any(|argument| argument == "sources") {
        return sources(directory.path(), std::env::args().skip(1).find_map(|argument| argument.parse().ok()).unwrap_or(100_000));
    }
    if std::env::args().any(|argument| argument == "paths") {
        return paths(directory.path(), std::env::args().skip(1).find_map(|argument| argument.parse().ok()).unwrap_or(200_000));
    }
    println!(
        "{records} sensor readings (about 200 bytes each) from a simulator through Kafka to the file sink; records/s from the sink's first line to its last"
    );

    println!("\none broker (tansu 0.6, memory engine) behind the test front (Python asyncio), which pipes every connection:");
    let mut plain = 0.0;
    for (name, listener) in [("plaintext", Listener::Plain), ("TLS", Listener::Tls), ("SASL_SSL, SCRAM-SHA-512", Listener::SaslSsl)] {
        let run = directory.path().join(name.replace([' ', ',', '_'], "-"));
        let broker = SecuredBroker::start(listener, &run.join("certificates"));
        let ca = broker.certificates.join("ca.pem");
        let client = match listener {
            Listener::Plain => String::new(),
            Listener::Tls => format!("    security.protocol: SSL\n    ssl.ca.location: {}\n", ca.display()),
            _ => {
                let secret = run.join("password");
                std::fs::write(&secret, PASSWORD).unwrap();
                format!(
                    "    security.protocol: SASL_SSL\n    ssl.ca.location: {}\n    sasl.mechanisms: SCRAM-SHA-512\n    sasl.username: {USER}\n    sasl.password: ${{file:{}}}\n",
                    ca.display(),
                    secret.display()
                )
            }
        };
        let rate = throughput(&run, &broker.bootstrap, &client, "readings", records);
        if listener == Listener::Plain {
            plain = rate;
        }
        print_row(name, rate, plain);
    }

    println!("\nlibrdkafka's mock cluster (one broker, its own process), plaintext:");
    let mut none = 0.0;
    for codec in ["none", "zstd", "lz4"] {
        let mut mock = MockBroker::start();
        mock.create_topic("readings", 4);
        for internal in INTERNAL_TOPICS {
            mock.create_topic(&format!("readings-{internal}"), 1);
        }
        let run = directory.path().join(format!("mock-{codec}"));
        // The mock keeps about 5 MB per partition: more records would drop the first.
        let rate = throughput(&run, &mock.bootstrap, &format!("    compression.type: {codec}\n"), "readings", records.min(80_000));
        if codec == "none" {
            none = rate;
        }
        print_row(&format!("compression.type: {codec}"), rate, none);
    }

    restarts(directory.path());
}

fn restarts(directory: &Path) {
    println!("\nrestart after a SIGKILL to the sink's first write (2 sink tasks, 2,000 records/s):");
    let noida = NoidaKafka::start();
    noida.create_topic("restarts", 4);
    let figures = restart_to_first_write(&directory.join("restarts-noida"), &noida.bootstrap, 3);
    print_restarts("noida-db 0.2.3, static members", &figures);
    drop(noida);
    let mut mock = MockBroker::start();
    mock.create_topic("restarts", 4);
    for internal in INTERNAL_TOPICS {
        mock.create_topic(&format!("restarts-{internal}"), 1);
    }
    let figures = restart_to_first_write(&directory.join("restarts-mock"), &mock.bootstrap, 3);
    print_restarts("librdkafka mock, no static membership", &figures);
}

fn print_restarts(broker: &str, figures: &[Duration]) {
    let runs: Vec<String> = figures.iter().map(|figure| format!("{:.2} s", figure.as_secs_f64())).collect();
    println!("{broker:<44} {}", runs.join(", "));
}
