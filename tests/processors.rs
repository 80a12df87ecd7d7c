//! Stream processors end to end on the real binary: a windowed aggregation killed
//! with SIGKILL in the middle of open windows emits every window once with the right
//! values, its late records go to the dead-letter topic with the reason, the last
//! windows close on the idle input by their wall-clock timeout, and the state left
//! behind is the one the input builds; a threshold alert processor killed alongside
//! it raises every alert once, and a join with a table topic enriches every record
//! once. The same kill on Kafka, with zombie transactions left open: every window,
//! alert and joined reading once for a `read_committed` reader, the state in the
//! changelog topics the one the input builds, and a reset that forgets it.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::topics::{feed, kafka, kafka_feed, kafka_read, read, runtime};
use support::{Host, percent_encode};
use wasm_connect::processing::Processor;
use wasm_connect::processing::aggregate::Aggregate;
use wasm_connect::transport::{EmbeddedTransport, StateEntry, Transport};
use wasm_connect_protocol::Record;

const DEVICES: i64 = 16;
const SECONDS: i64 = 1_200;
const MINUTE: i64 = 60_000;
/// Event time of the last record of every device, two windows after the others.
const LAST: i64 = (SECONDS + 120) * 1_000;

/// Where event time 0 of the input is: a whole number of minutes, a day before the
/// test started (Kafka producers take a timestamp of 0 for "now", and a broker's
/// retention removes records whose timestamps are older than a week).
fn epoch() -> i64 {
    static EPOCH: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        let day_before = now - 24 * 60 * MINUTE;
        day_before - day_before % MINUTE
    })
}

fn reading(device: i64, time: i64, temperature: i64) -> Record {
    Record {
        key: Some(format!("device-{device}").into_bytes()),
        value: Some(json!({"device": format!("device-{device}"), "t": temperature}).to_string().into_bytes()),
        timestamp: Some(epoch() + time),
        ..Record::default()
    }
}

/// The input, in event-time order but for a few records: some out of order within
/// the grace period (they count), some far behind it (late).
fn input() -> (Vec<Record>, Vec<Record>) {
    let (mut records, mut late) = (Vec::new(), Vec::new());
    for second in 0..SECONDS {
        for device in 0..DEVICES {
            let temperature = (second * 7 + device * 13) % 41 - 5;
            records.push(reading(device, second * 1_000, temperature));
        }
        if second % 97 == 50 {
            // 5 s back, with a grace of 10 s: counts in its window.
            records.push(reading(second % DEVICES, (second - 5) * 1_000 + 500, 99));
        }
        if second % 151 == 150 {
            // 150 s back: every window it falls into has closed.
            let record = reading((second + 3) % DEVICES, (second - 150) * 1_000, -99);
            late.push(record.clone());
            records.push(record);
        }
    }
    for device in 0..DEVICES {
        records.push(reading(device, LAST, 1));
    }
    (records, late)
}

/// Every threshold alert expected: (device, time of the third record in a row above
/// 10), each device's records in input order.
fn expected_alerts(records: &[Record]) -> Vec<(String, i64)> {
    let mut runs: BTreeMap<String, u32> = BTreeMap::new();
    let mut alerts = Vec::new();
    for record in records {
        let value: Value = serde_json::from_slice(record.value.as_deref().unwrap()).unwrap();
        let device = value["device"].as_str().unwrap().to_owned();
        let run = runs.entry(device.clone()).or_default();
        if value["t"].as_i64().unwrap() > 10 {
            *run += 1;
            if *run == 3 {
                alerts.push((device, record.timestamp.unwrap()));
            }
        } else {
            *run = 0;
        }
    }
    alerts.sort();
    alerts
}

/// Every window's expected result, computed from the input without the processor:
/// (device, window start) -> (count, avg, min, max).
fn expected(records: &[Record], late: &[Record]) -> BTreeMap<(String, i64), (u64, f64, i64, i64)> {
    let mut windows: BTreeMap<(String, i64), Vec<i64>> = BTreeMap::new();
    for record in records.iter().filter(|record| !late.contains(record)) {
        let value: Value = serde_json::from_slice(record.value.as_deref().unwrap()).unwrap();
        let time = record.timestamp.unwrap();
        let device = value["device"].as_str().unwrap().to_owned();
        windows.entry((device, time - time % MINUTE)).or_default().push(value["t"].as_i64().unwrap());
    }
    windows
        .into_iter()
        .map(|(window, values)| {
            let sum: i64 = values.iter().sum();
            let stats =
                (values.len() as u64, sum as f64 / values.len() as f64, *values.iter().min().unwrap(), *values.iter().max().unwrap());
            (window, stats)
        })
        .collect()
}

/// On the embedded transport, or on the Kafka cluster `kafka` = (bootstrap, suffix of
/// every topic and connector name).
fn config(directory: &Path, data_dir: &Path, kafka: Option<(&str, &str)>) -> std::path::PathBuf {
    let plugins = directory.join("no-plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let s = kafka.map_or("", |(_, suffix)| suffix);
    let kafka_block = kafka.map_or(String::new(), |(bootstrap, suffix)| {
        format!(
            "kafka:\n  bootstrap_servers: {bootstrap}\n  offsets_topic: wasm-connect-offsets{suffix}\n  config_topic: wasm-connect-configs{suffix}\n"
        )
    });
    // On Kafka each batch is a transaction.
    let (aggregate_batch, threshold_batch, join_batch) = if kafka.is_some() { (100, 70, 500) } else { (10, 7, 50) };
    let text = format!(
        r#"version: 1
data_dir: {data_dir}
admin:
  listen: 127.0.0.1:0
plugins:
  dir: {plugins}
{kafka_block}connectors:
  - name: device-minutes{s}
    plugin: aggregate
    topics: [readings{s}]
    topic: device-minutes{s}
    tasks_max: 2
    batch_size: {aggregate_batch}
    errors:
      tolerance: all
      dead_letter_topic: readings-late{s}
    config:
      size: 1m
      grace: 10s
      wall_clock_timeout: 3s
      aggregations: count, avg(t), min(t), max(t)
  - name: warm-devices{s}
    plugin: threshold
    topics: [readings{s}]
    topic: device-alerts{s}
    tasks_max: 2
    batch_size: {threshold_batch}
    config: {{ field: t, above: 10, consecutive: 3 }}
  - name: readings-with-site{s}
    plugin: join
    topics: [readings{s}]
    topic: readings-with-site{s}
    tasks_max: 2
    batch_size: {join_batch}
    config: {{ table: devices{s}, on: device, fields: site }}
"#,
        data_dir = data_dir.display(),
        plugins = plugins.display()
    );
    let path = directory.join("connectors.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn results(data_dir: &Path) -> Vec<Value> {
    read(data_dir, "device-minutes").iter().map(|record| serde_json::from_slice(record.value.as_deref().unwrap()).unwrap()).collect()
}

fn state(data_dir: &Path, partitions: &[i32]) -> Vec<StateEntry> {
    let mut entries = runtime().block_on(async {
        EmbeddedTransport::open(data_dir, 4).unwrap().processor_state("device-minutes", Some(partitions)).await.unwrap()
    });
    sort_state(&mut entries);
    entries
}

#[test]
fn a_killed_aggregation_emits_every_window_once_with_the_right_values() {
    let directory = tempfile::tempdir().unwrap();
    let data_dir = directory.path().join("data");
    let (records, late) = input();
    feed(&data_dir, "readings", records.clone());
    feed(&data_dir, "devices", sites());
    let expected = expected(&records, &late);
    let config = config(directory.path(), &data_dir, None);

    let host = Host::start(&config);
    host.wait_until("some windows to close", Duration::from_secs(120), || results(&data_dir).len() >= 60);
    host.kill();
    let at_kill = results(&data_dir).len();
    assert!(at_kill < expected.len() - DEVICES as usize, "the kill must land mid-stream ({at_kill} of {} windows)", expected.len());

    let host = Host::start(&config);
    host.wait_until("every window but the last ones", Duration::from_secs(180), || {
        results(&data_dir).len() >= expected.len() - DEVICES as usize
    });
    // The input is idle now: the last windows close by their wall-clock timeout.
    let idle_since = Instant::now();
    host.wait_until("the last windows, on the idle input", Duration::from_secs(60), || results(&data_dir).len() >= expected.len());
    eprintln!("the last windows closed {:.1} s after the input went idle (timeout 3 s)", idle_since.elapsed().as_secs_f64());
    host.wait_until("every reading joined", Duration::from_secs(60), || read(&data_dir, "readings-with-site").len() >= records.len());
    let alert_count = expected_alerts(&records).len();
    host.wait_until("every threshold alert", Duration::from_secs(60), || read(&data_dir, "device-alerts").len() >= alert_count);
    std::thread::sleep(Duration::from_millis(1_500));

    // The state, asked through the API: every window of device-3 closed, the last one at
    // the window of its last record.
    let (status, answer) = host.call("GET", "/connectors/device-minutes/state?key=device-3", None);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["total"], json!(1), "{answer}");
    let entry = &answer["entries"][0];
    assert_eq!((entry["key"].clone(), entry["store"].clone()), (json!("device-3"), json!("windows")), "{answer}");
    assert_eq!(entry["value"]["windows"], json!({}), "{answer}");
    assert_eq!(entry["value"]["closed_through"], json!(epoch() + LAST - LAST % MINUTE + MINUTE), "{answer}");
    let (_, page) = host.call("GET", "/connectors/device-minutes/state?prefix=device-1&limit=5", None);
    let keys: Vec<&str> = page["entries"].as_array().unwrap().iter().map(|entry| entry["key"].as_str().unwrap()).collect();
    assert_eq!(
        (keys, page["total"].clone(), page["next_offset"].clone()),
        (vec!["device-1", "device-10", "device-11", "device-12", "device-13"], json!(7), json!(5))
    );
    let (_, rest) = host.call("GET", "/connectors/device-minutes/state?prefix=device-1&limit=5&offset=5", None);
    assert_eq!((rest["entries"].as_array().unwrap().len(), rest["next_offset"].clone()), (2, Value::Null), "{rest}");
    let (_, both) = host.call("GET", "/connectors/device-minutes/state?key=device-13&prefix=device-1", None);
    assert_eq!((both["total"].clone(), both["entries"][0]["key"].clone()), (json!(1), json!("device-13")), "{both}");
    let (_, neither) = host.call("GET", "/connectors/device-minutes/state?key=device-3&prefix=device-1", None);
    assert_eq!(neither["total"], json!(0), "{neither}");
    let (_, stream_time) = host.call("GET", "/connectors/device-minutes/state?store=stream-time", None);
    assert_eq!(stream_time["total"], json!(4), "one stream time per input partition: {stream_time}");
    let (status, refused) = host.call("GET", "/connectors/device-minutes/state?limit=0", None);
    assert_eq!(status, 400, "{refused}");
    // Past 1,024 characters a key or a prefix is refused by us, not by the HTTP server's
    // URI limit, even both at once in four-byte characters.
    let longest = "device-".to_owned() + &"\u{1F600}".repeat(1_017);
    let (status, empty) = host.call("GET", &format!("/connectors/device-minutes/state?key={}", percent_encode(&longest)), None);
    assert_eq!((status, empty["total"].clone()), (200, json!(0)), "{empty}");
    let too_long = percent_encode(&(longest + "x"));
    let (status, refused) = host.call("GET", &format!("/connectors/device-minutes/state?key=device-1&prefix={too_long}"), None);
    assert_eq!(status, 400, "{refused}");
    let (status, refused) = host.call("GET", &format!("/connectors/device-minutes/state?key={too_long}&prefix={too_long}"), None);
    assert_eq!(status, 400, "{refused}");
    host.stop();

    assert_every_window_once(&results(&data_dir), &expected);

    // The threshold alerts, each once, by the same kill and restart.
    assert_every_alert_once(&read(&data_dir, "device-alerts"), &records);

    // Every reading once through the join, with its device's newest site.
    assert_every_reading_joined(&read(&data_dir, "readings-with-site"), &records);

    // The late records, each once (a dead letter may repeat after a crash: none here
    // before the kill point is asserted), with the reason.
    assert_late_letters(&read(&data_dir, "readings-late"), &late, "readings");

    // The state left behind is the one the input builds, in the partitions as stored.
    let rebuilt_state = rebuilt_state(read(&data_dir, "readings"), expected.len());
    let stored = state(&data_dir, &[0, 1, 2, 3]);
    assert!(!stored.is_empty());
    assert_eq!(stored, rebuilt_state);
}

/// The join's table: a site per device, the newest entry winning; device-15's removed
/// by a tombstone.
fn sites() -> Vec<Record> {
    let entry = |device: i64, site: &str| Record {
        key: Some(format!("device-{device}").into_bytes()),
        value: Some(json!({"site": site, "floor": 2}).to_string().into_bytes()),
        ..Record::default()
    };
    let mut table: Vec<Record> = (0..DEVICES).map(|device| entry(device, "old")).collect();
    table.extend((0..DEVICES).map(|device| entry(device, &format!("site-{}", device % 3))));
    table.push(Record { key: Some(b"device-15".to_vec()), value: None, ..Record::default() });
    table
}

/// `joined` holds every reading of `input` once, each device's in order, with the
/// device's newest site from [`sites`].
fn assert_every_reading_joined(joined: &[Record], input: &[Record]) {
    assert_eq!(joined.len(), input.len(), "every record once");
    let mut by_device: BTreeMap<String, (Vec<i64>, Vec<i64>)> = BTreeMap::new();
    for record in joined {
        let value: Value = serde_json::from_slice(record.value.as_deref().unwrap()).unwrap();
        let device = value["device"].as_str().unwrap().to_owned();
        let number: i64 = device.trim_start_matches("device-").parse().unwrap();
        let wanted = if number == 15 { Value::Null } else { json!(format!("site-{}", number % 3)) };
        assert_eq!((value["site"].clone(), value.get("floor")), (wanted, None), "{value}");
        by_device.entry(device).or_default().0.push(record.timestamp.unwrap());
    }
    for record in input {
        let value: Value = serde_json::from_slice(record.value.as_deref().unwrap()).unwrap();
        by_device.entry(value["device"].as_str().unwrap().to_owned()).or_default().1.push(record.timestamp.unwrap());
    }
    for (device, (got, wanted)) in &by_device {
        assert_eq!(got, wanted, "{device}'s readings, in order");
    }
}

/// Every window of `found` (the results) is one of `expected`, with its values, once.
fn assert_every_window_once(found: &[Value], expected: &BTreeMap<(String, i64), (u64, f64, i64, i64)>) {
    let mut emitted: BTreeMap<(String, i64), (u64, f64, i64, i64)> = BTreeMap::new();
    for result in found {
        let start = wasm_connect_protocol::time::parse_rfc3339(result["window_start"].as_str().unwrap()).unwrap();
        assert_eq!(wasm_connect_protocol::time::parse_rfc3339(result["window_end"].as_str().unwrap()), Some(start + MINUTE), "{result}");
        let stats = (
            result["count"].as_u64().unwrap(),
            result["avg_t"].as_f64().unwrap(),
            result["min_t"].as_i64().unwrap(),
            result["max_t"].as_i64().unwrap(),
        );
        let previous = emitted.insert((result["key"].as_str().unwrap().to_owned(), start), stats);
        assert!(previous.is_none(), "the window {result} was emitted twice");
    }
    assert_eq!(emitted.len(), expected.len(), "every window once");
    for (window, (count, avg, min, max)) in expected {
        let got = emitted[window];
        assert_eq!((got.0, got.2, got.3), (*count, *min, *max), "{window:?}");
        assert!((got.1 - avg).abs() < 1e-9, "{window:?}: avg {} != {avg}", got.1);
    }
}

/// The threshold alerts in `written` are those `input` raises, each once.
fn assert_every_alert_once(written: &[Record], input: &[Record]) {
    assert_every_alert(written, input, 1);
}

/// The threshold alerts in `written` are those `input` raises, each `times` times.
fn assert_every_alert(written: &[Record], input: &[Record], times: usize) {
    let mut alerts: Vec<(String, i64)> = written
        .iter()
        .map(|record| {
            let alert: Value = serde_json::from_slice(record.value.as_deref().unwrap()).unwrap();
            assert_eq!(alert["values"].as_array().unwrap().len(), 3, "{alert}");
            let at = wasm_connect_protocol::time::parse_rfc3339(alert["at"].as_str().unwrap()).unwrap();
            (alert["key"].as_str().unwrap().to_owned(), at)
        })
        .collect();
    alerts.sort();
    let once = expected_alerts(input);
    assert!(once.len() > 100, "{} alerts", once.len());
    let mut wanted_alerts: Vec<(String, i64)> = once.iter().flat_map(|alert| std::iter::repeat_n(alert.clone(), times)).collect();
    wanted_alerts.sort();
    assert_eq!(alerts, wanted_alerts, "every alert {times} time(s)");
}

/// The dead letters are the late records (a letter may repeat after a crash), each
/// with the reason and the input topic `topic`.
fn assert_late_letters(letters: &[Record], late: &[Record], topic: &str) {
    let mut late_values: Vec<_> = letters.iter().map(|letter| (letter.key.clone(), letter.timestamp)).collect();
    late_values.sort();
    late_values.dedup();
    let mut wanted: Vec<_> = late.iter().map(|record| (record.key.clone(), record.timestamp)).collect();
    wanted.sort();
    assert_eq!(late_values, wanted);
    for letter in letters {
        let header = |name: &str| {
            letter
                .headers
                .iter()
                .find(|(key, _)| key == name)
                .and_then(|(_, value)| value.clone())
                .map(|value| String::from_utf8(value).unwrap())
        };
        assert!(header("__connect.errors.exception.message").unwrap().starts_with("late: event time "), "{:?}", letter.headers);
        assert_eq!(header("__connect.errors.topic").as_deref(), Some(topic));
    }
}

/// The state the aggregation builds from `input` (records with their partitions),
/// after closing every window, sorted by (store, partition, key); `windows` is how
/// many results it must emit.
fn rebuilt_state(input: Vec<Record>, windows: usize) -> Vec<StateEntry> {
    let mut rebuilt = Aggregate::new(
        &[("size", "1m"), ("grace", "10s"), ("wall_clock_timeout", "3s"), ("aggregations", "count, avg(t), min(t), max(t)")]
            .map(|(key, value)| (key.to_owned(), value.to_owned())),
    )
    .unwrap();
    let mut out = wasm_connect::processing::Processed::default();
    rebuilt.process(input, 0, &mut out);
    rebuilt.fire_timers(i64::MAX, &mut out);
    assert_eq!(out.records.len(), windows);
    let mut rebuilt_state: Vec<StateEntry> = rebuilt
        .take_changes()
        .into_iter()
        .filter_map(|change| Some(StateEntry { store: change.store, partition: change.partition, key: change.key, value: change.value? }))
        .collect();
    sort_state(&mut rebuilt_state);
    rebuilt_state
}

fn sort_state(entries: &mut [StateEntry]) {
    entries.sort_by(|a, b| (&a.store, a.partition, &a.key).cmp(&(&b.store, b.partition, &b.key)));
}

/// The same kill and restart on Kafka: the aggregation and the threshold alerts write
/// in transactions, with their state in changelog topics; every window and alert is
/// there once for a `read_committed` reader, and the state in the changelogs is the one
/// the input builds. On noida-db (out of process, transactions as Kafka's), or the
/// cluster in `WASM_CONNECT_TEST_KAFKA_BOOTSTRAP` (names get a unique suffix then).
#[test]
fn a_killed_aggregation_on_kafka_emits_every_window_once_in_transactions() {
    let external = std::env::var("WASM_CONNECT_TEST_KAFKA_BOOTSTRAP").ok();
    let noida = external.is_none().then(support::kafka::NoidaKafka::start);
    let bootstrap = external.unwrap_or_else(|| noida.as_ref().unwrap().bootstrap.clone());
    let s = if noida.is_none() { format!("-{}", std::process::id()) } else { String::new() };
    let name = |base: &str| format!("{base}{s}");
    support::kafka::create_topic(&bootstrap, &name("readings"), 4);
    support::kafka::create_topic(&bootstrap, &name("devices"), 1);
    let (records, late) = input();
    kafka_feed(&bootstrap, &name("readings"), records.clone());
    kafka_feed(&bootstrap, &name("devices"), sites());
    let expected = expected(&records, &late);
    let directory = tempfile::tempdir().unwrap();
    let config = config(directory.path(), &directory.path().join("data"), Some((&bootstrap, &s)));
    let windows = || -> Vec<Value> {
        kafka_read(&bootstrap, &name("device-minutes"))
            .iter()
            .map(|record| serde_json::from_slice(record.value.as_deref().unwrap()).unwrap())
            .collect()
    };

    let host = Host::start(&config);
    host.wait_until("some windows to close", Duration::from_secs(180), || windows().len() >= 60);
    host.kill();
    let at_kill = windows().len();
    assert!(at_kill < expected.len() - DEVICES as usize, "the kill must land mid-stream ({at_kill} of {} windows)", expected.len());

    // Zombies: transactions left open under the ids of task 0 and of a task 3 (of an
    // earlier tasks_max of 4), with a bogus window and a bogus state entry each, and a
    // timeout of 10 minutes. The restarted connector fences both ids, which aborts them
    // at once: neither shows, and no reader waits for them to time out.
    let zombies = r#"
import os, sys
from confluent_kafka import Producer
bootstrap, connector, output = sys.argv[1:4]
for task, partition in ((0, 0), (3, 3)):
    producer = Producer({'bootstrap.servers': bootstrap, 'transactional.id': f'wasm-connect-{connector}-{task}',
                         'transaction.timeout.ms': 600000})
    producer.init_transactions(30)
    producer.begin_transaction()
    window = '{"key": "zombie", "window_start": "2020-01-01T00:00:00Z", "window_end": "2020-01-01T00:01:00Z", "count": 999}'
    producer.produce(output, key=b'zombie', value=window.encode(), partition=0)
    producer.produce(connector + '-windows-changelog', key=b'device-1', value=b'{"zombie": true}', partition=partition,
                     headers=[('wasm-connect-connector', connector.encode())])
    assert producer.flush(30) == 0, 'the zombie records were not all written'
os._exit(0)
"#;
    let venv = support::services::cached_venv("confluent-kafka==2.12.1", &[&["confluent-kafka==2.12.1"]]);
    let opened = std::process::Command::new(venv.join("bin/python"))
        .args(["-c", zombies, &bootstrap, &name("device-minutes"), &name("device-minutes")])
        .output()
        .unwrap();
    assert!(opened.status.success(), "the zombie transactions failed: {}", String::from_utf8_lossy(&opened.stderr));

    let started = Instant::now();
    let host = Host::start(&config);
    host.wait_until("every window", Duration::from_secs(180), || windows().len() >= expected.len());
    eprintln!("the restarted host emitted the {} other windows in {:.1} s", expected.len() - at_kill, started.elapsed().as_secs_f64());
    let alert_count = expected_alerts(&records).len();
    host.wait_until("every threshold alert", Duration::from_secs(60), || {
        kafka_read(&bootstrap, &name("device-alerts")).len() >= alert_count
    });
    host.wait_until("every reading joined", Duration::from_secs(60), || {
        kafka_read(&bootstrap, &name("readings-with-site")).len() >= records.len()
    });
    std::thread::sleep(Duration::from_millis(1_500));
    // The state through the API, read from the changelog topics.
    let (status, answer) = host.call("GET", &format!("/connectors/{}/state?key=device-3", name("device-minutes")), None);
    assert_eq!((status, answer["total"].clone()), (200, json!(1)), "{answer}");
    assert_eq!(answer["entries"][0]["value"]["closed_through"], json!(epoch() + LAST - LAST % MINUTE + MINUTE), "{answer}");

    assert_every_window_once(&windows(), &expected);
    assert_every_alert_once(&kafka_read(&bootstrap, &name("device-alerts")), &records);
    assert_late_letters(&kafka_read(&bootstrap, &name("readings-late")), &late, &name("readings"));
    assert_every_reading_joined(&kafka_read(&bootstrap, &name("readings-with-site")), &records);
    let rebuilt = rebuilt_state(kafka_read(&bootstrap, &name("readings")), expected.len());
    let mut stored = runtime().block_on(async { kafka(&bootstrap).processor_state(&name("device-minutes"), None).await.unwrap() });
    sort_state(&mut stored);
    assert!(!stored.is_empty());
    assert_eq!(stored, rebuilt);

    // The transactions committed the input offsets: the end of every partition. A reset
    // of the stopped alert processor forgets its offsets and its state together; resumed,
    // it raises every alert once more.
    let alerts = name("warm-devices");
    assert_eq!(host.call("PUT", &format!("/connectors/{alerts}/stop"), None).0, 204);
    let (_, offsets) = host.call("GET", &format!("/connectors/{alerts}/offsets"), None);
    let committed: BTreeMap<i64, i64> = offsets["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| (entry["partition"]["kafka_partition"].as_i64().unwrap(), entry["offset"]["kafka_offset"].as_i64().unwrap()))
        .collect();
    let ends: BTreeMap<i64, i64> = runtime().block_on(async {
        let topics = kafka(&bootstrap).describe_topics(Some(&name("readings"))).await.unwrap();
        topics[0].partitions.iter().map(|range| (i64::from(range.partition), range.end)).collect()
    });
    assert_eq!(committed, ends, "{offsets}");
    let (status, reset) = host.call("DELETE", &format!("/connectors/{alerts}/offsets"), None);
    assert_eq!(status, 200, "{reset}");
    let (_, runs) = host.call("GET", &format!("/connectors/{alerts}/state"), None);
    assert_eq!(runs["total"], json!(0), "{runs}");
    assert_eq!(host.call("PUT", &format!("/connectors/{alerts}/resume"), None).0, 202);
    host.wait_until("every alert a second time", Duration::from_secs(60), || {
        kafka_read(&bootstrap, &name("device-alerts")).len() >= 2 * alert_count
    });
    std::thread::sleep(Duration::from_millis(1_000));
    assert_every_alert(&kafka_read(&bootstrap, &name("device-alerts")), &records, 2);
    let log = host.stop();
    // Reading the changelogs to their end is no error.
    assert!(!log.contains("reached end of partition"), "{log}");
}

const HEARTBEAT_DEVICES: i64 = 24;
const TICKS: i64 = 240;
const TICK: i64 = 10_000;
const SILENCE: i64 = 60_000;
const START: i64 = 1_790_000_000_000;

/// The ticks device `device` reports at: every one, but for a gap of 200 s (devices
/// 1, 5, 9...: silent, then back), the end from some tick on (2, 6, 10...: silent for
/// good) or a gap of 50 s, shorter than the silence (3, 7, 11...).
fn reports(device: i64, tick: i64) -> bool {
    match device % 4 {
        1 => !(30 + device * 3..50 + device * 3).contains(&tick),
        2 => tick < 120 + device * 4,
        3 => !(100..104).contains(&tick),
        _ => true,
    }
}

fn heartbeats() -> Vec<Record> {
    let mut records = Vec::new();
    for tick in 0..TICKS {
        for device in (0..HEARTBEAT_DEVICES).filter(|device| reports(*device, tick)) {
            records.push(Record {
                key: Some(format!("device-{device}").into_bytes()),
                value: Some(json!({"device": device, "battery": 90 - tick / 10}).to_string().into_bytes()),
                timestamp: Some(START + tick * TICK),
                ..Record::default()
            });
        }
    }
    records
}

/// What an event-time silence detector makes of `records` (as stored, with their
/// partitions), computed record by record: the reports (group, status, last seen,
/// detected or back at) and the state left (last seen, silent since).
#[allow(clippy::type_complexity)]
fn expected_silences(records: &[Record]) -> (Vec<(String, String, i64, i64)>, BTreeMap<String, i64>, BTreeMap<String, i64>) {
    let mut reports = Vec::new();
    let (mut last_seen, mut silent): (BTreeMap<String, i64>, BTreeMap<String, i64>) = Default::default();
    let mut partitions: BTreeMap<i32, Vec<&Record>> = BTreeMap::new();
    for record in records {
        partitions.entry(record.partition.unwrap()).or_default().push(record);
    }
    for records in partitions.values() {
        let mut stream_time = i64::MIN;
        let mut waiting: BTreeMap<String, i64> = BTreeMap::new();
        for record in records {
            let (device, time) = (String::from_utf8(record.key.clone().unwrap()).unwrap(), record.timestamp.unwrap());
            stream_time = stream_time.max(time);
            if let Some(since) = silent.remove(&device) {
                reports.push((device.clone(), "back".to_owned(), since, time));
            }
            let last = last_seen.get(&device).map_or(time, |last| (*last).max(time));
            last_seen.insert(device.clone(), last);
            waiting.insert(device, last);
            let due: Vec<String> =
                waiting.iter().filter(|(_, last)| **last + SILENCE <= stream_time).map(|(device, _)| device.clone()).collect();
            for device in due {
                let last = waiting.remove(&device).unwrap();
                last_seen.remove(&device);
                silent.insert(device.clone(), last);
                reports.push((device, "silent".to_owned(), last, last + SILENCE));
            }
        }
    }
    reports.sort();
    (reports, last_seen, silent)
}

fn silence_reports(data_dir: &Path, topic: &str) -> Vec<(String, String, i64, i64)> {
    read(data_dir, topic)
        .iter()
        .map(|record| {
            let report: Value = serde_json::from_slice(record.value.as_deref().unwrap()).unwrap();
            let time = |field: &str| wasm_connect_protocol::time::parse_rfc3339(report[field].as_str().unwrap()).unwrap();
            let status = report["status"].as_str().unwrap().to_owned();
            let at = time(if status == "silent" { "detected_at" } else { "back_at" });
            assert_eq!(record.key.as_deref(), report["group"].as_str().map(str::as_bytes), "{report}");
            (report["group"].as_str().unwrap().to_owned(), status, time("last_seen"), at)
        })
        .collect()
}

/// The state entries of `store` through the API, as key -> number.
fn state_numbers(host: &Host, connector: &str, store: &str) -> BTreeMap<String, i64> {
    let answer = host.get_json(&format!("/connectors/{connector}/state?store={store}&limit=1000"));
    answer["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| (entry["key"].as_str().unwrap().to_owned(), entry["value"].as_i64().unwrap()))
        .collect()
}

#[test]
fn a_killed_wasm_processor_reports_every_silence_once_by_event_time_and_by_the_wall_clock() {
    let directory = tempfile::tempdir().unwrap();
    let data_dir = directory.path().join("data");
    feed(&data_dir, "heartbeats", heartbeats());
    let stored = read(&data_dir, "heartbeats");
    let (expected, last_seen, silent) = expected_silences(&stored);
    assert_eq!(expected.len(), 18, "{expected:?}");
    let config = support::write_config(
        directory.path(),
        &format!(
            r#"version: 1
data_dir: {data_dir}
admin:
  listen: 127.0.0.1:0
plugins:
  dir: {plugins}
connectors:
  - name: silences
    plugin: silence-detector
    topics: [heartbeats]
    topic: silences
    tasks_max: 2
    batch_size: 5
    config: {{ silence: 1m }}
  - name: silences-batched
    plugin: silence-detector
    topics: [heartbeats]
    topic: silences-batched
    batch_size: 500
    config: {{ silence: 1m }}
  - name: idle-devices
    plugin: silence-detector
    topics: [heartbeats]
    topic: idle-devices
    batch_size: 500
    config: {{ silence: 3s, clock: wall-clock }}
"#,
            data_dir = data_dir.display(),
            plugins = support::test_plugins_dir().display()
        ),
    );

    let host = Host::start(&config);
    let (_, plugins) = host.call("GET", "/connector-plugins", None);
    let described = plugins.as_array().unwrap().iter().find(|plugin| plugin["class"] == json!("silence-detector")).cloned();
    assert_eq!(described.map(|plugin| plugin["type"].clone()), Some(json!("processor")), "{plugins}");
    host.wait_until("some silences", Duration::from_secs(60), || read(&data_dir, "silences").len() >= 5);
    host.kill();
    let at_kill = read(&data_dir, "silences").len();
    assert!(at_kill < expected.len(), "the kill must land mid-stream ({at_kill} of {} reports)", expected.len());

    let host = Host::start(&config);
    host.wait_until("every silence", Duration::from_secs(120), || {
        read(&data_dir, "silences").len() >= expected.len() && read(&data_dir, "silences-batched").len() >= expected.len()
    });
    let idle_since = Instant::now();
    // By the wall clock, every device goes silent once the input is idle.
    let last_report = |data_dir: &Path| {
        let mut last: BTreeMap<String, (String, i64)> = BTreeMap::new();
        for (device, status, seen, _) in silence_reports(data_dir, "idle-devices") {
            last.insert(device, (status, seen));
        }
        last
    };
    host.wait_until("every device silent by the wall clock", Duration::from_secs(60), || {
        let last = last_report(&data_dir);
        last.len() == HEARTBEAT_DEVICES as usize && last.values().all(|(status, _)| status == "silent")
    });
    eprintln!("every device was reported silent {:.1} s after the input went idle (silence 3 s)", idle_since.elapsed().as_secs_f64());
    std::thread::sleep(Duration::from_millis(1_000));
    assert_eq!(state_numbers(&host, "silences", "last-seen"), last_seen);
    assert_eq!(state_numbers(&host, "silences", "silent"), silent);
    host.stop();

    let mut found = silence_reports(&data_dir, "silences");
    found.sort();
    assert_eq!(found, expected, "every silence and return once, with its times");
    // In batches of 500 records (about 21 ticks), a device's last record before a gap,
    // the record that makes it silent and its return often share a batch: the same.
    let mut batched = silence_reports(&data_dir, "silences-batched");
    batched.sort();
    assert_eq!(batched, expected, "the same reports whatever the batching");
    // Each device's last record, and reports that alternate: silent, back, silent...
    let mut last_times: BTreeMap<String, i64> = BTreeMap::new();
    for record in &stored {
        last_times.insert(String::from_utf8(record.key.clone().unwrap()).unwrap(), record.timestamp.unwrap());
    }
    let mut by_device: BTreeMap<String, Vec<(String, i64)>> = BTreeMap::new();
    for (device, status, seen, _) in silence_reports(&data_dir, "idle-devices") {
        by_device.entry(device).or_default().push((status, seen));
    }
    for (device, reports) in &by_device {
        for (index, (status, _)) in reports.iter().enumerate() {
            assert_eq!(status, if index % 2 == 0 { "silent" } else { "back" }, "{device}: {reports:?}");
        }
        assert_eq!(reports.last().unwrap().1, last_times[device], "{device}: {reports:?}");
    }
}

#[test]
fn a_processor_plugin_that_breaks_the_state_contract_fails_its_own_task_and_stores_nothing() {
    let directory = tempfile::tempdir().unwrap();
    let data_dir = directory.path().join("data");
    feed(&data_dir, "events", (0..40).map(|index| reading(index % 8, index * 1_000, 20)).collect());
    let connector = |name: &str, misbehave: &str| {
        format!(
            "  - {{ name: {name}, plugin: scripted-processor, topics: [events], topic: {name}-out, config: {{ misbehave: {misbehave} }} }}\n"
        )
    };
    let config = support::write_config(
        directory.path(),
        &format!(
            "version: 1\ndata_dir: {}\nadmin:\n  listen: 127.0.0.1:0\nplugins:\n  dir: {}\nconnectors:\n{}{}{}{}{}{}",
            data_dir.display(),
            support::test_plugins_dir().display(),
            connector("well-behaved", "none"),
            connector("foreign", "foreign-partition"),
            connector("huge", "huge-value"),
            connector("forger", "host-store"),
            connector("panicking", "panic"),
            "  - { name: router, plugin: scripted-processor, topics: [events], topic: router-out, config: { misbehave: route },\n      \
             errors: { tolerance: all, dead_letter_topic: router-dlq } }\n",
        ),
    );
    let host = Host::start(&config);
    let failures = [
        ("foreign", "partition 999 is not one of this task's input partitions"),
        ("huge", "a state value has at most 1 MiB"),
        ("forger", "the state store name timers is the host's own"),
        ("panicking", "wasm `unreachable` instruction executed"),
    ];
    for (name, reason) in failures {
        // A trap is not permanent: the task restarts from its last checkpoint, with backoff.
        host.wait_until(&format!("{name} to fail"), Duration::from_secs(60), || {
            let status = host.get_json(&format!("/connectors/{name}/status"));
            status["tasks"][0]["state"] == json!("RESTARTING")
                && status["tasks"][0]["trace"].as_str().is_some_and(|trace| trace.contains(reason))
        });
    }
    host.wait_until("the well-behaved processor's records", Duration::from_secs(60), || read(&data_dir, "well-behaved-out").len() == 40);
    // One count per input partition the records went to.
    let counts = host.get_json("/connectors/well-behaved/state?store=seen");
    let total: i64 = counts["entries"].as_array().unwrap().iter().map(|entry| entry["value"].as_i64().unwrap()).sum();
    assert_eq!(total, 40, "{counts}");
    assert_eq!(host.get_json("/connectors/well-behaved/status")["tasks"][0]["state"], json!("RUNNING"));
    // Routed per record, by the input offset: to `routed`, or, to a topic name that
    // cannot be or back to the input, to the dead-letter topic with the reason. Each
    // input record has its own timestamp.
    let input = read(&data_dir, "events");
    let timestamps_of = |kind: i64| -> Vec<i64> {
        let mut found: Vec<i64> =
            input.iter().filter(|record| record.offset.unwrap() % 3 == kind).map(|record| record.timestamp.unwrap()).collect();
        found.sort();
        found
    };
    host.wait_until("the router's records", Duration::from_secs(60), || {
        read(&data_dir, "routed").len() + read(&data_dir, "router-dlq").len() == input.len()
    });
    assert_eq!(read(&data_dir, "router-out").len(), 0);
    let mut routed: Vec<i64> = read(&data_dir, "routed").iter().map(|record| record.timestamp.unwrap()).collect();
    routed.sort();
    assert_eq!(routed, timestamps_of(0));
    let letters = read(&data_dir, "router-dlq");
    let refused = |text: &str| {
        let mut found: Vec<i64> = letters
            .iter()
            .filter(|letter| {
                letter.headers.iter().any(|(name, value)| {
                    name == "__connect.errors.exception.message"
                        && value.as_deref().is_some_and(|value| String::from_utf8_lossy(value).contains(text))
                })
            })
            .map(|letter| letter.timestamp.unwrap())
            .collect();
        found.sort();
        found
    };
    assert_eq!(refused("may contain only letters"), timestamps_of(1), "{letters:?}");
    assert_eq!(refused("which it reads: its output would come back"), timestamps_of(2), "{letters:?}");
    for (name, _) in failures {
        assert_eq!(read(&data_dir, &format!("{name}-out")).len(), 0, "{name} wrote");
        assert_eq!(host.get_json(&format!("/connectors/{name}/state"))["total"], json!(0), "{name} kept state");
    }
    host.stop();
}
