//! Stream processors end to end on the real binary: a windowed aggregation killed
//! with SIGKILL in the middle of open windows emits every window once with the right
//! values, its late records go to the dead-letter topic with the reason, the last
//! windows close on the idle input by their wall-clock timeout, and the state left
//! behind is the one the input builds; a threshold alert processor killed alongside
//! it raises every alert once, and a join with a table topic enriches every record
//! once.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::topics::{feed, read, runtime};
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

fn reading(device: i64, time: i64, temperature: i64) -> Record {
    Record {
        key: Some(format!("device-{device}").into_bytes()),
        value: Some(json!({"device": format!("device-{device}"), "t": temperature}).to_string().into_bytes()),
        timestamp: Some(time),
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

fn config(directory: &Path, data_dir: &Path) -> std::path::PathBuf {
    let plugins = directory.join("no-plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let text = format!(
        r#"version: 1
data_dir: {data_dir}
admin:
  listen: 127.0.0.1:0
plugins:
  dir: {plugins}
connectors:
  - name: device-minutes
    plugin: aggregate
    topics: [readings]
    topic: device-minutes
    tasks_max: 2
    batch_size: 10
    errors:
      tolerance: all
      dead_letter_topic: readings-late
    config:
      size: 1m
      grace: 10s
      wall_clock_timeout: 3s
      aggregations: count, avg(t), min(t), max(t)
  - name: warm-devices
    plugin: threshold
    topics: [readings]
    topic: device-alerts
    tasks_max: 2
    batch_size: 7
    config: {{ field: t, above: 10, consecutive: 3 }}
  - name: readings-with-site
    plugin: join
    topics: [readings]
    topic: readings-with-site
    tasks_max: 2
    batch_size: 50
    config: {{ table: devices, on: device, fields: site }}
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
    entries.sort_by(|a, b| (&a.store, a.partition, &a.key).cmp(&(&b.store, b.partition, &b.key)));
    entries
}

#[test]
fn a_killed_aggregation_emits_every_window_once_with_the_right_values() {
    let directory = tempfile::tempdir().unwrap();
    let data_dir = directory.path().join("data");
    let (records, late) = input();
    feed(&data_dir, "readings", records.clone());
    // The join's table: a site per device, the newest entry winning; device-15's
    // removed by a tombstone.
    let entry = |device: i64, site: &str| Record {
        key: Some(format!("device-{device}").into_bytes()),
        value: Some(json!({"site": site, "floor": 2}).to_string().into_bytes()),
        ..Record::default()
    };
    let mut table: Vec<Record> = (0..DEVICES).map(|device| entry(device, "old")).collect();
    table.extend((0..DEVICES).map(|device| entry(device, &format!("site-{}", device % 3))));
    table.push(Record { key: Some(b"device-15".to_vec()), value: None, ..Record::default() });
    feed(&data_dir, "devices", table);
    let expected = expected(&records, &late);
    let config = config(directory.path(), &data_dir);

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
    assert_eq!(entry["value"]["closed_through"], json!(LAST - LAST % MINUTE + MINUTE), "{answer}");
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

    let found = results(&data_dir);
    let mut emitted: BTreeMap<(String, i64), (u64, f64, i64, i64)> = BTreeMap::new();
    for result in &found {
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
    for (window, (count, avg, min, max)) in &expected {
        let got = emitted[window];
        assert_eq!((got.0, got.2, got.3), (*count, *min, *max), "{window:?}");
        assert!((got.1 - avg).abs() < 1e-9, "{window:?}: avg {} != {avg}", got.1);
    }

    // The threshold alerts, each once, by the same kill and restart.
    let mut alerts: Vec<(String, i64)> = read(&data_dir, "device-alerts")
        .iter()
        .map(|record| {
            let alert: Value = serde_json::from_slice(record.value.as_deref().unwrap()).unwrap();
            assert_eq!(alert["values"].as_array().unwrap().len(), 3, "{alert}");
            let at = wasm_connect_protocol::time::parse_rfc3339(alert["at"].as_str().unwrap()).unwrap();
            (alert["key"].as_str().unwrap().to_owned(), at)
        })
        .collect();
    alerts.sort();
    let wanted_alerts = expected_alerts(&records);
    assert!(wanted_alerts.len() > 100, "{} alerts", wanted_alerts.len());
    assert_eq!(alerts, wanted_alerts, "every alert once");

    // Every reading once through the join, with its device's newest site.
    let joined = read(&data_dir, "readings-with-site");
    assert_eq!(joined.len(), records.len(), "every record once");
    let mut by_device: BTreeMap<String, (Vec<i64>, Vec<i64>)> = BTreeMap::new();
    for record in &joined {
        let value: Value = serde_json::from_slice(record.value.as_deref().unwrap()).unwrap();
        let device = value["device"].as_str().unwrap().to_owned();
        let number: i64 = device.trim_start_matches("device-").parse().unwrap();
        let wanted = if number == 15 { Value::Null } else { json!(format!("site-{}", number % 3)) };
        assert_eq!((value["site"].clone(), value.get("floor")), (wanted, None), "{value}");
        by_device.entry(device).or_default().0.push(record.timestamp.unwrap());
    }
    for record in &records {
        let value: Value = serde_json::from_slice(record.value.as_deref().unwrap()).unwrap();
        by_device.entry(value["device"].as_str().unwrap().to_owned()).or_default().1.push(record.timestamp.unwrap());
    }
    for (device, (got, wanted)) in &by_device {
        assert_eq!(got, wanted, "{device}'s readings, in order");
    }

    // The late records, each once (a dead letter may repeat after a crash: none here
    // before the kill point is asserted), with the reason.
    let letters = read(&data_dir, "readings-late");
    let mut late_values: Vec<_> = letters.iter().map(|letter| (letter.key.clone(), letter.timestamp)).collect();
    late_values.sort();
    late_values.dedup();
    let mut wanted: Vec<_> = late.iter().map(|record| (record.key.clone(), record.timestamp)).collect();
    wanted.sort();
    assert_eq!(late_values, wanted);
    for letter in &letters {
        let header = |name: &str| {
            letter
                .headers
                .iter()
                .find(|(key, _)| key == name)
                .and_then(|(_, value)| value.clone())
                .map(|value| String::from_utf8(value).unwrap())
        };
        assert!(header("__connect.errors.exception.message").unwrap().starts_with("late: event time "), "{:?}", letter.headers);
        assert_eq!(header("__connect.errors.topic").as_deref(), Some("readings"));
    }

    // The state left behind is the one the input builds, in the partitions as stored.
    let mut rebuilt = Aggregate::new(
        &[("size", "1m"), ("grace", "10s"), ("wall_clock_timeout", "3s"), ("aggregations", "count, avg(t), min(t), max(t)")]
            .map(|(key, value)| (key.to_owned(), value.to_owned())),
    )
    .unwrap();
    let mut out = wasm_connect::processing::Processed::default();
    rebuilt.process(read(&data_dir, "readings"), 0, &mut out);
    rebuilt.fire_timers(i64::MAX, &mut out);
    assert_eq!(out.records.len(), expected.len());
    let mut rebuilt_state: Vec<StateEntry> = rebuilt
        .take_changes()
        .into_iter()
        .filter_map(|change| Some(StateEntry { store: change.store, partition: change.partition, key: change.key, value: change.value? }))
        .collect();
    rebuilt_state.sort_by(|a, b| (&a.store, a.partition, &a.key).cmp(&(&b.store, b.partition, &b.key)));
    let stored = state(&data_dir, &[0, 1, 2, 3]);
    assert!(!stored.is_empty());
    assert_eq!(stored, rebuilt_state);
}
