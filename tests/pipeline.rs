//! The pipeline end to end, through the real binary: simulators -> topics -> file
//! sink, on the embedded transport and on Kafka. Every record the simulators produce
//! arrives exactly once when the host is stopped cleanly; a host killed with SIGKILL
//! loses nothing and repeats at most the batches it had not committed.
//!
//! The Kafka test uses librdkafka's in-process mock cluster, or the cluster named by
//! `WASM_CONNECT_TEST_KAFKA_BOOTSTRAP` when set (topics get a unique suffix then).

mod support;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use support::{Host, SinkLine, read_sink_output, simulated_values, sorted_texts, write_config};
use wasm_connect::transport::EmbeddedTransport;

const START: &str = "2024-05-01T00:00:00Z";
const SIMULATORS: [(&str, &str); 4] =
    [("flight-simulator", "flights"), ("iot-sensor-simulator", "iot"), ("weblog-simulator", "weblogs"), ("payment-simulator", "payments")];
const SINK_TASKS: u32 = 2;
const SINK_BATCH: u32 = 200;

fn pipeline_config(data_dir: &Path, output: &Path, kafka: Option<&str>, suffix: &str, limit: usize) -> String {
    let mut text = format!(
        "version: 1\ndata_dir: {}\nadmin:\n  listen: 127.0.0.1:0\nplugins:\n  dir: {}\n",
        data_dir.display(),
        support::test_plugins_dir().display()
    );
    if let Some(bootstrap) = kafka {
        text.push_str(&format!(
            "kafka:\n  bootstrap_servers: {bootstrap}\n  offsets_topic: wasm-connect-offsets{suffix}\n  client:\n    topic.metadata.refresh.interval.ms: 500\n"
        ));
    }
    text.push_str("connectors:\n");
    for (plugin, topic) in SIMULATORS {
        text.push_str(&format!(
            "  - name: {topic}-sim\n    plugin: {plugin}\n    topic: {topic}{suffix}\n    batch_size: 250\n    config:\n      seed: 21\n      rate: 0\n      start: {START}\n      limit: {limit}\n"
        ));
    }
    let topics: Vec<String> = SIMULATORS.iter().map(|(_, topic)| format!("{topic}{suffix}")).collect();
    text.push_str(&format!(
        "  - name: files\n    plugin: file-sink\n    topics: [{}]\n    tasks_max: {SINK_TASKS}\n    batch_size: {SINK_BATCH}\n    config:\n      directory: {}\n      max_file_bytes: 262144\n",
        topics.join(", "),
        output.display()
    ));
    text
}

fn line_count(output: &Path) -> usize {
    read_sink_output(output).values().map(Vec::len).sum()
}

/// Every topic got exactly the simulator's records: no loss, no duplicate, and each
/// (partition, offset) once; offsets per partition are contiguous from 0.
fn assert_exactly_once(output: &BTreeMap<String, Vec<SinkLine>>, suffix: &str, limit: usize) {
    for (plugin, topic) in SIMULATORS {
        let topic = format!("{topic}{suffix}");
        let lines = output.get(&topic).unwrap_or_else(|| panic!("no output for {topic}"));
        assert_eq!(lines.len(), limit, "{topic}: every record once");
        let coordinates: HashSet<(i64, i64)> = lines.iter().map(|line| (line.partition, line.offset)).collect();
        assert_eq!(coordinates.len(), limit, "{topic}: no (partition, offset) twice");
        support::assert_contiguous(&coordinates, &topic);
        let expected = simulated_values(plugin, "21", START, limit);
        assert_eq!(sorted_texts(lines.iter().map(|line| &line.value)), sorted_texts(&expected), "{topic}: the simulator's records");
    }
}

/// Every topic got every one of the simulator's records, each (partition, offset) at
/// least once and any repeat a copy of the same record; at most `repeats` lines are
/// repeats. On Kafka, a rebalance that takes partitions from a task while it writes a
/// batch has the new owner deliver that batch again (one batch per task at most): it
/// happens when the two sink tasks join the group in different rounds, on a busy
/// machine about one run in four.
fn assert_every_record(output: &BTreeMap<String, Vec<SinkLine>>, suffix: &str, limit: usize, repeats: usize) {
    for (plugin, topic) in SIMULATORS {
        let topic = format!("{topic}{suffix}");
        let lines = output.get(&topic).unwrap_or_else(|| panic!("no output for {topic}"));
        let coordinates: HashSet<(i64, i64)> = lines.iter().map(|line| (line.partition, line.offset)).collect();
        assert_eq!(coordinates.len(), limit, "{topic}: every record");
        assert!(lines.len() - limit <= repeats, "{topic}: {} repeats, more than one batch per task", lines.len() - limit);
        support::assert_contiguous(&coordinates, &topic);
        let mut unique: BTreeMap<(i64, i64), &SinkLine> = BTreeMap::new();
        for line in lines {
            let first = unique.entry((line.partition, line.offset)).or_insert(line);
            assert_eq!(first.value, line.value, "{topic}: a repeat of ({}, {}) differs", line.partition, line.offset);
        }
        let expected = simulated_values(plugin, "21", START, limit);
        assert_eq!(sorted_texts(unique.values().map(|line| &line.value)), sorted_texts(&expected), "{topic}: the simulator's records");
    }
}

#[test]
fn embedded_pipeline_delivers_every_record_exactly_once() {
    const LIMIT: usize = 3_000;
    let directory = tempfile::tempdir().unwrap();
    let (data_dir, output) = (directory.path().join("data"), directory.path().join("output"));
    let config = write_config(directory.path(), &pipeline_config(&data_dir, &output, None, "", LIMIT));
    let host = Host::start(&config);
    host.wait_until("all records in the file sink", Duration::from_secs(120), || line_count(&output) >= 4 * LIMIT);
    let metrics = host.get_text("/metrics");
    assert_eq!(support::metric(&metrics, "wasm_connect_records_written_total", &[("connector", "files")]), (4 * LIMIT) as f64);
    assert_eq!(support::metric(&metrics, "wasm_connect_records_produced_total", &[("connector", "flights-sim")]), LIMIT as f64);
    let status = host.get_json("/connectors/files/status");
    assert_eq!(status["type"], "sink");
    assert_eq!(status["tasks"].as_array().unwrap().len(), SINK_TASKS as usize);
    assert_eq!(host.get_json("/connectors")[4], "weblogs-sim");
    assert_eq!(host.get_json("/connectors/flights-sim")["config"]["connector.class"], "flight-simulator");
    let (code, body) = support::http_get(&format!("{}/connectors/nope/status", host.admin_url()));
    assert_eq!((code, body.as_str()), (404, r#"{"error_code":404,"message":"Connector nope not found"}"#));
    assert!(status["tasks"].as_array().unwrap().iter().all(|task| task["state"] == "RUNNING"), "{status}");
    host.stop();

    assert!(support::every_file_ends_with_a_newline(&output));
    let written = read_sink_output(&output);
    assert_exactly_once(&written, "", LIMIT);
    // The file sink wrote what the topics hold, record for record.
    let store = EmbeddedTransport::open(&data_dir, 4).unwrap();
    for (_, topic) in SIMULATORS {
        let stored = store.read_all(topic).unwrap();
        let mut stored_lines: Vec<(i64, i64, Option<String>)> = stored
            .iter()
            .map(|record| {
                (record.partition.unwrap().into(), record.offset.unwrap(), record.key.clone().map(|key| String::from_utf8(key).unwrap()))
            })
            .collect();
        let mut sink_lines: Vec<(i64, i64, Option<String>)> =
            written[topic].iter().map(|line| (line.partition, line.offset, line.key.clone())).collect();
        stored_lines.sort();
        sink_lines.sort();
        assert_eq!(sink_lines, stored_lines, "{topic}: sink output matches the stored topic");
    }
    assert!(std::fs::read_dir(&output).unwrap().count() > 4, "files rotated at max_file_bytes");
}

#[test]
fn kafka_pipeline_delivers_every_record_exactly_once() {
    const LIMIT: usize = 2_000;
    let external = std::env::var("WASM_CONNECT_TEST_KAFKA_BOOTSTRAP").ok();
    let mock = match external {
        Some(_) => None,
        None => Some(rdkafka::mocking::MockCluster::new(1).expect("starting librdkafka's mock cluster")),
    };
    let suffix = if external.is_some() { format!("-{}", std::process::id()) } else { String::new() };
    if let Some(mock) = &mock {
        for (_, topic) in SIMULATORS {
            mock.create_topic(topic, 4, 1).unwrap();
        }
        mock.create_topic("wasm-connect-offsets", 1, 1).unwrap();
        // The mock does not answer CreateTopics: the cluster's assignments topic, which
        // a host cannot start without, is made here as an operator would, with the
        // status topic.
        mock.create_topic("wasm-connect-assignments", 4, 1).unwrap();
        mock.create_topic("wasm-connect-status", 1, 1).unwrap();
    }
    let bootstrap = external.clone().unwrap_or_else(|| mock.as_ref().unwrap().bootstrap_servers());
    let directory = tempfile::tempdir().unwrap();
    let (data_dir, output) = (directory.path().join("data"), directory.path().join("output"));
    let config = write_config(directory.path(), &pipeline_config(&data_dir, &output, Some(&bootstrap), &suffix, LIMIT));
    let host = Host::start(&config);
    host.wait_until("all records in the file sink", Duration::from_secs(180), || line_count(&output) >= 4 * LIMIT);
    // Nothing more arrives: the sources are finished and nothing is redelivered.
    std::thread::sleep(Duration::from_secs(2));
    let log = host.stop();
    assert!(log.contains("transport=\"kafka\"") || log.contains("transport=kafka"), "ran on Kafka:\n{log}");
    assert_every_record(&read_sink_output(&output), &suffix, LIMIT, (SINK_BATCH * SINK_TASKS) as usize);
}

/// A source at full speed is polled for its next batch while the last one is stored.
/// Restarted meanwhile, a task delivers the batch it read ahead once the one before is
/// stored (each with its own position) and stops; the source resumes from the last
/// stored position, so the topic holds every record once.
#[test]
fn a_source_restarted_while_it_reads_ahead_stores_every_record_once() {
    const LIMIT: usize = 100_000;
    let directory = tempfile::tempdir().unwrap();
    let data_dir = directory.path().join("data");
    let text = format!(
        "version: 1\ndata_dir: {}\nadmin:\n  listen: 127.0.0.1:0\nplugins:\n  dir: {}\nconnectors:\n  - name: sim\n    plugin: flight-simulator\n    topic: flights\n    batch_size: 100\n    config:\n      seed: 21\n      rate: 0\n      start: {START}\n      limit: {LIMIT}\n",
        data_dir.display(),
        support::test_plugins_dir().display()
    );
    let host = Host::start(&write_config(directory.path(), &text));
    let produced = || support::metric(&host.get_text("/metrics"), "wasm_connect_records_produced_total", &[("connector", "sim")]);
    host.wait_until("the source to produce", Duration::from_secs(60), || produced() > 0.0);
    let mut mid_stream = 0;
    for _ in 0..5 {
        if produced() < LIMIT as f64 {
            mid_stream += 1;
        }
        assert_eq!(host.call("POST", "/connectors/sim/tasks/0/restart", None).0, 204);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(mid_stream > 0, "no restart landed before the source finished");
    eprintln!("{mid_stream} of 5 task restarts landed while the source produced");
    host.wait_until("every record stored", Duration::from_secs(120), || produced() >= LIMIT as f64);
    host.stop();
    let stored = EmbeddedTransport::open(&data_dir, 4).unwrap().read_all("flights").unwrap();
    let values: Vec<serde_json::Value> =
        stored.iter().map(|record| serde_json::from_slice(record.value.as_deref().unwrap()).unwrap()).collect();
    assert_eq!(values.len(), LIMIT, "{mid_stream} restarts mid-stream: every record once");
    assert_eq!(sorted_texts(&values), sorted_texts(&simulated_values("flight-simulator", "21", START, LIMIT)));
}

#[test]
fn a_killed_host_loses_nothing_and_repeats_at_most_the_uncommitted_batches() {
    const LIMIT: usize = 25_000;
    let directory = tempfile::tempdir().unwrap();
    let (data_dir, output) = (directory.path().join("data"), directory.path().join("output"));
    let config = write_config(directory.path(), &pipeline_config(&data_dir, &output, None, "", LIMIT));

    let host = Host::start(&config);
    host.wait_until("the sink to be mid-stream", Duration::from_secs(120), || line_count(&output) >= 8_000);
    host.kill();
    let at_kill = line_count(&output);
    assert!(at_kill < 4 * LIMIT, "the kill must land mid-stream ({at_kill} of {} written)", 4 * LIMIT);

    let host = Host::start(&config);
    host.wait_until("every record after the restart", Duration::from_secs(300), || {
        let written = read_sink_output(&output);
        SIMULATORS.iter().all(|(_, topic)| {
            written
                .get(*topic)
                .is_some_and(|lines| lines.iter().map(|line| (line.partition, line.offset)).collect::<HashSet<_>>().len() >= LIMIT)
        })
    });
    host.stop();

    assert!(support::every_file_ends_with_a_newline(&output), "no torn line is left behind");
    let written = read_sink_output(&output);
    let mut duplicates = 0;
    for (plugin, topic) in SIMULATORS {
        let lines = &written[topic];
        let mut seen: BTreeMap<(i64, i64), &SinkLine> = BTreeMap::new();
        for line in lines {
            if let Some(first) = seen.insert((line.partition, line.offset), line) {
                assert_eq!(first, line, "{topic}: a repeated record is identical to the first copy");
                duplicates += 1;
            }
        }
        assert_eq!(seen.len(), LIMIT, "{topic}: no record lost");
        support::assert_contiguous(&seen.keys().copied().collect(), topic);
        // The sources resumed exactly: the topic holds each simulated record once.
        let expected = simulated_values(plugin, "21", START, LIMIT);
        assert_eq!(sorted_texts(seen.values().map(|line| &line.value)), sorted_texts(&expected), "{topic}");
    }
    // At the kill, each sink task can hold one written but uncommitted batch.
    let bound = (SINK_TASKS * SINK_BATCH) as usize;
    eprintln!("killed at {at_kill} of {} lines; {duplicates} repeated after the restart (bound {bound})", 4 * LIMIT);
    assert!(duplicates <= bound, "{duplicates} repeated records; at most {bound} (one batch per sink task) may repeat");
}

#[test]
fn an_unreachable_kafka_cluster_is_a_clear_start_up_error() {
    let directory = tempfile::tempdir().unwrap();
    // Port 1 on loopback: nothing listens there.
    let config = write_config(
        directory.path(),
        &pipeline_config(&directory.path().join("data"), &directory.path().join("output"), Some("127.0.0.1:1"), "", 10),
    );
    let output = support::command().arg("run").arg(&config).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("error: cannot reach the Kafka cluster at 127.0.0.1:1 to check the connectors' topics"), "{stderr}");
    assert!(stderr.contains("check kafka.bootstrap_servers"), "{stderr}");
}
