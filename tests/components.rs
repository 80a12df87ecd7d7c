//! The plugin components, driven through the host runtime: every simulator produces
//! well-formed, deterministic records for a seed and continues exactly from a stored
//! position; misbehaving components are stopped and classified.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use wasm_connect::runtime::{PluginCatalog, PluginFailure, PluginOrigin, Runtime, SourceInstance, TaskIdentity, TaskLimits};
use wasm_connect_protocol::{Record, decode};

struct Plugins {
    runtime: Runtime,
    catalog: PluginCatalog,
}

fn plugins(limits: TaskLimits) -> Plugins {
    let runtime = Runtime::new(&support::shared_cache_dir(), limits).unwrap();
    let (catalog, errors) = PluginCatalog::load_dir(&runtime, &support::test_plugins_dir()).unwrap();
    assert!(errors.is_empty(), "plugins failed to load: {errors:?}");
    Plugins { runtime, catalog }
}

fn default_plugins() -> Plugins {
    plugins(TaskLimits { memory_bytes: 64 << 20, call_timeout: Duration::from_secs(10) })
}

fn open(plugins: &Plugins, plugin: &str, config: &[(&str, &str)], position: Option<&str>) -> Result<SourceInstance, PluginFailure> {
    let loaded = plugins.catalog.find(plugin).unwrap();
    let identity = TaskIdentity { connector: Arc::from("test"), task: 0, plugin: Arc::from(plugin) };
    let mut instance = SourceInstance::new(&plugins.runtime, &loaded, identity, wasm_connect::capabilities::Grants::default())?;
    let config: Vec<(String, String)> = config.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect();
    instance.open(&config, position)?;
    Ok(instance)
}

/// Polls until `count` records arrived; returns them and the last position.
fn take(instance: &mut SourceInstance, count: usize) -> (Vec<Record>, Option<String>) {
    let mut records = Vec::new();
    let mut position = None;
    while records.len() < count {
        let outcome = instance.poll((count - records.len()) as u32).unwrap();
        records.extend(decode(&outcome.batch).unwrap().iter().map(|view| view.to_owned()));
        position = outcome.position.or(position);
        assert!(!outcome.finished || records.len() >= count, "source finished early");
    }
    (records, position)
}

fn seeded<'a>(seed: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut config = vec![("seed", seed), ("rate", "0"), ("start", "2024-03-01T00:00:00Z")];
    config.extend_from_slice(extra);
    config
}

fn json(record: &Record) -> Value {
    serde_json::from_slice(record.value.as_deref().expect("a value")).expect("the value is JSON")
}

const SIMULATORS: [&str; 4] = ["flight-simulator", "iot-sensor-simulator", "weblog-simulator", "payment-simulator"];

#[test]
fn simulators_are_deterministic_per_seed_and_differ_between_seeds() {
    let plugins = default_plugins();
    for simulator in SIMULATORS {
        let first = take(&mut open(&plugins, simulator, &seeded("11", &[]), None).unwrap(), 300).0;
        let again = take(&mut open(&plugins, simulator, &seeded("11", &[]), None).unwrap(), 300).0;
        let other = take(&mut open(&plugins, simulator, &seeded("12", &[]), None).unwrap(), 300).0;
        assert_eq!(first.len(), 300);
        assert_eq!(first, again, "{simulator}: same seed, same records");
        let differing = first.iter().zip(&other).filter(|(a, b)| a.value != b.value).count();
        assert!(differing > 250, "{simulator}: another seed changed only {differing} of 300 records");
        let timestamps: Vec<i64> = first.iter().map(|record| record.timestamp.unwrap()).collect();
        assert!(timestamps.windows(2).all(|pair| pair[0] <= pair[1]), "{simulator}: timestamps go forward");
        assert_eq!(timestamps[0], 1_709_251_200_000, "{simulator}: the first record is at `start`");
    }
}

#[test]
fn simulators_continue_exactly_from_a_stored_position() {
    let plugins = default_plugins();
    for simulator in SIMULATORS {
        let whole = take(&mut open(&plugins, simulator, &seeded("5", &[]), None).unwrap(), 400).0;
        let (head, position) = take(&mut open(&plugins, simulator, &seeded("5", &[]), None).unwrap(), 150);
        let position = position.expect("a position after records");
        let tail = take(&mut open(&plugins, simulator, &seeded("5", &[]), Some(&position)).unwrap(), 250).0;
        assert_eq!([head, tail].concat(), whole, "{simulator}: resumed output equals uninterrupted output");
    }
}

#[test]
fn a_limit_finishes_the_source_after_that_many_records() {
    let plugins = default_plugins();
    let mut instance = open(&plugins, "weblog-simulator", &seeded("1", &[("limit", "70")]), None).unwrap();
    let first = instance.poll(50).unwrap();
    assert_eq!(decode(&first.batch).unwrap().len(), 50);
    assert!(!first.finished);
    let second = instance.poll(50).unwrap();
    assert_eq!(decode(&second.batch).unwrap().len(), 20);
    assert!(second.finished);
    assert_eq!(second.position.as_deref(), Some("{\"next\":70,\"start_ms\":1709251200000}"));
}

#[test]
fn flight_records_are_shaped_like_airlabs_flights() {
    let plugins = default_plugins();
    let records = take(&mut open(&plugins, "flight-simulator", &seeded("3", &[("flights", "40")]), None).unwrap(), 400).0;
    let mut aircraft = HashSet::new();
    for record in &records {
        let flight = json(record);
        let hex = flight["hex"].as_str().unwrap();
        assert!(hex.len() == 6 && hex.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "hex {hex}");
        assert_eq!(record.key.as_deref(), Some(hex.as_bytes()), "keyed by hex");
        aircraft.insert(hex.to_owned());
        let flag = flight["flag"].as_str().unwrap();
        assert!(flag.len() == 2 && flag.chars().all(|c| c.is_ascii_uppercase()), "flag {flag}");
        for field in ["reg_number", "flag", "flight_icao", "flight_iata", "airline_icao", "aircraft_icao", "status", "type"] {
            assert!(flight[field].is_string(), "{field} in {flight}");
        }
        let (lat, lng) = (flight["lat"].as_f64().unwrap(), flight["lng"].as_f64().unwrap());
        assert!((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lng), "position {lat},{lng}");
        assert!((0.0..360.0).contains(&flight["dir"].as_f64().unwrap()));
        assert!(flight["alt"].as_f64().unwrap() >= 0.0 && flight["alt"].as_f64().unwrap() < 13_500.0);
        let (dep, arr) = (flight["dep_icao"].as_str().unwrap(), flight["arr_icao"].as_str().unwrap());
        assert!(dep.len() == 4 && arr.len() == 4 && dep != arr, "route {dep}-{arr}");
        assert!(["en-route", "landed"].contains(&flight["status"].as_str().unwrap()));
        assert_eq!(flight["updated"].as_i64().unwrap(), record.timestamp.unwrap() / 1000);
        assert!(flight["flight_icao"].as_str().unwrap().starts_with(flight["airline_icao"].as_str().unwrap()));
    }
    assert_eq!(aircraft.len(), 40, "every aircraft reports");
}

#[test]
fn iot_readings_are_well_formed_and_anomalies_are_flagged() {
    let plugins = default_plugins();
    let config = seeded("9", &[("devices", "20"), ("anomaly_probability", "0.2")]);
    let records = take(&mut open(&plugins, "iot-sensor-simulator", &config, None).unwrap(), 600).0;
    let mut anomalies = 0;
    for record in &records {
        let reading = json(record);
        let device = reading["device_id"].as_str().unwrap();
        assert!(device.starts_with("sensor-") && record.key.as_deref() == Some(device.as_bytes()));
        assert!(reading["temperature_c"].is_f64() && reading["pm25_ugm3"].as_f64().unwrap() >= 0.0);
        assert!((0.0..=100.0).contains(&reading["humidity_pct"].as_f64().unwrap()));
        let flagged = reading["anomaly"].as_bool().unwrap();
        assert_eq!(flagged, !reading["anomaly_kind"].is_null(), "{reading}");
        if flagged {
            anomalies += 1;
            assert!(
                ["temperature_spike", "pm25_spike", "stuck_sensor", "humidity_dropout"]
                    .contains(&reading["anomaly_kind"].as_str().unwrap())
            );
        }
    }
    assert!((60..=180).contains(&anomalies), "{anomalies} anomalies in 600 readings at p=0.2");
}

#[test]
fn weblog_events_are_well_formed() {
    let plugins = default_plugins();
    let records = take(&mut open(&plugins, "weblog-simulator", &seeded("2", &[]), None).unwrap(), 500).0;
    let mut server_errors = 0;
    for record in &records {
        let event = json(record);
        let ip = event["ip"].as_str().unwrap();
        assert_eq!(ip.split('.').filter_map(|octet| octet.parse::<u8>().ok()).count(), 4, "ip {ip}");
        assert_eq!(record.key.as_deref(), Some(ip.as_bytes()));
        assert!(["GET", "POST"].contains(&event["method"].as_str().unwrap()));
        assert!(event["path"].as_str().unwrap().starts_with('/'));
        let status = event["status"].as_u64().unwrap();
        assert!([200, 301, 304, 404, 500, 502, 503].contains(&status), "status {status}");
        server_errors += u32::from(status >= 500);
        assert!(event["latency_ms"].as_f64().unwrap() > 0.0);
        assert!(event["user_agent"].as_str().is_some_and(|agent| !agent.is_empty()));
    }
    assert!(server_errors > 0 && server_errors < 50, "{server_errors} server errors in 500 events");
}

#[test]
fn payments_are_well_formed_with_unique_ids_and_flagged_patterns() {
    let plugins = default_plugins();
    let config = seeded("4", &[("suspicious_probability", "0.1")]);
    let records = take(&mut open(&plugins, "payment-simulator", &config, None).unwrap(), 500).0;
    let mut ids = HashSet::new();
    let mut suspicious = 0;
    for record in &records {
        let payment = json(record);
        let id = payment["transaction_id"].as_str().unwrap();
        assert_eq!(id.len(), 36, "uuid-shaped id {id}");
        assert!(ids.insert(id.to_owned()), "duplicate transaction id {id}");
        assert_eq!(record.key.as_deref(), Some(payment["account_id"].as_str().unwrap().as_bytes()));
        assert!(payment["amount"].as_f64().unwrap() > 0.0);
        assert!(["EUR", "USD", "GBP", "CHF"].contains(&payment["currency"].as_str().unwrap()));
        let flagged = payment["suspicious"].as_bool().unwrap();
        assert_eq!(flagged, !payment["pattern"].is_null());
        suspicious += u32::from(flagged);
        if payment["pattern"] == "high_amount" {
            assert!(payment["amount"].as_f64().unwrap() >= 9_000.0);
        }
    }
    assert!((20..=90).contains(&suspicious), "{suspicious} suspicious of 500 at p=0.1");
}

#[test]
fn misbehaving_plugins_are_stopped_and_classified() {
    let plugins = plugins(TaskLimits { memory_bytes: 16 << 20, call_timeout: Duration::from_millis(300) });
    let failure_of = |behaviour: &str| {
        let mut instance = open(&plugins, "misbehaving-source", &[("behaviour", behaviour), ("good_polls", "1")], None).unwrap();
        let good = instance.poll(10).unwrap();
        assert_eq!(decode(&good.batch).unwrap().len(), 1, "{behaviour}: behaves on the first poll");
        instance.poll(10).unwrap_err()
    };
    assert!(matches!(failure_of("trap"), PluginFailure::Trapped(_)), "trap");
    assert_eq!(failure_of("loop"), PluginFailure::TimedOut(Duration::from_millis(300)), "endless loop");
    assert!(matches!(failure_of("oom"), PluginFailure::OutOfMemory(_)), "memory bomb");
    assert_eq!(failure_of("fatal"), PluginFailure::Fatal("misbehaving-source fails on purpose".into()));
    // A broken instance does not poison the plugin: a fresh one works.
    let mut fresh = open(&plugins, "misbehaving-source", &[("behaviour", "trap"), ("good_polls", "5")], None).unwrap();
    assert_eq!(decode(&fresh.poll(10).unwrap().batch).unwrap().len(), 1);
}

#[test]
fn compiled_components_are_cached_on_disk_and_reused() {
    let cache = tempfile::tempdir().unwrap();
    let limits = TaskLimits { memory_bytes: 16 << 20, call_timeout: Duration::from_secs(5) };
    // By inode: a file compiled again is renamed into place as a new one (a load only
    // refreshes the modification time, which marks the file used).
    let cached_files = || {
        use std::os::unix::fs::MetadataExt;
        let mut files: Vec<(String, u64)> = std::fs::read_dir(cache.path())
            .unwrap()
            .map(|entry| entry.unwrap())
            .map(|entry| (entry.file_name().to_string_lossy().into_owned(), entry.metadata().unwrap().ino()))
            .collect();
        files.sort();
        files
    };
    let first = PluginCatalog::load_dir(&Runtime::new(cache.path(), limits).unwrap(), &support::test_plugins_dir()).unwrap().0;
    let after_first = cached_files();
    let components = |catalog: &PluginCatalog| catalog.plugins().iter().filter(|plugin| plugin.origin != PluginOrigin::Builtin).count();
    assert_eq!(after_first.len(), components(&first), "one compiled artifact per plugin (built-in processors have none)");
    assert!(after_first.iter().all(|(name, _)| name.ends_with(".cwasm")));
    let second = PluginCatalog::load_dir(&Runtime::new(cache.path(), limits).unwrap(), &support::test_plugins_dir()).unwrap().0;
    assert_eq!(second.plugins().len(), first.plugins().len());
    assert_eq!(cached_files(), after_first, "the second start reuses the cache without recompiling");
}

#[test]
fn a_plugin_that_is_not_a_component_is_refused_with_a_reason() {
    let directory = tempfile::tempdir().unwrap();
    std::fs::write(directory.path().join("broken.wasm"), b"\0asm garbage").unwrap();
    std::fs::copy(support::test_plugins_dir().join("log-sink.wasm"), directory.path().join("log-sink.wasm")).unwrap();
    let runtime = Runtime::new(directory.path(), TaskLimits { memory_bytes: 16 << 20, call_timeout: Duration::from_secs(5) }).unwrap();
    let (catalog, errors) = PluginCatalog::load_dir(&runtime, directory.path()).unwrap();
    let components: Vec<String> = catalog
        .plugins()
        .iter()
        .filter(|plugin| plugin.origin != PluginOrigin::Builtin)
        .map(|plugin| plugin.description.name.clone())
        .collect();
    assert_eq!(components, vec!["log-sink".to_owned()], "the healthy plugin still loads");
    assert_eq!(errors.len(), 1);
    assert!(errors[0].reason.starts_with("not a valid WebAssembly component"), "{}", errors[0].reason);
}

/// The wasm-connect interfaces a component imports and exports, with their versions.
fn wasm_connect_interfaces(plugins: &Plugins, path: &std::path::Path) -> Vec<String> {
    let component = wasmtime::component::Component::from_file(&plugins.runtime.engine, path).unwrap();
    let component_type = component.component_type();
    component_type
        .imports(&plugins.runtime.engine)
        .map(|(name, _)| name.to_owned())
        .chain(component_type.exports(&plugins.runtime.engine).map(|(name, _)| name.to_owned()))
        .filter(|name| name.starts_with("wasm-connect:"))
        .collect()
}

#[test]
fn a_plugin_built_against_wit_0_1_0_still_loads_and_writes() {
    let plugins = default_plugins();
    let legacy = plugins.catalog.find("legacy-sink").expect("legacy-sink loads");
    // It really is a 0.1.0 component: every wasm-connect import and export says so.
    let names = wasm_connect_interfaces(&plugins, &legacy.path);
    assert!(names.len() >= 3 && names.iter().all(|name| name.ends_with("@0.1.0")), "{names:?}");
    // Its `directory` option keeps the 0.1.0 grant.
    let directory_option = legacy.description.options.iter().find(|option| option.name == "directory").unwrap();
    assert_eq!(directory_option.option_type, wasm_connect::runtime::OptionType::Directory);

    let output = tempfile::tempdir().unwrap();
    let grants = wasm_connect::capabilities::Grants { directory: Some(output.path().to_path_buf()), ..Default::default() };
    let identity = TaskIdentity { connector: Arc::from("legacy"), task: 0, plugin: Arc::from("legacy-sink") };
    let mut sink = wasm_connect::runtime::SinkInstance::new(&plugins.runtime, &legacy, identity, grants).unwrap();
    sink.open(&[("directory".to_owned(), "ignored".to_owned())]).unwrap();
    let records: Vec<Record> = (0..3)
        .map(|n| Record {
            topic: "t".into(),
            partition: Some(0),
            offset: Some(n),
            value: Some(format!("{{\"n\":{n}}}").into_bytes()),
            ..Record::default()
        })
        .collect();
    sink.write(wasm_connect_protocol::encode(&records)).unwrap();
    let written = std::fs::read_to_string(output.path().join("legacy.jsonl")).unwrap();
    assert_eq!(written, "{\"n\":0}\n{\"n\":1}\n{\"n\":2}\n");
}

#[test]
fn a_source_built_against_wit_0_1_1_still_runs_on_a_0_1_2_host() {
    let plugins = default_plugins();
    let legacy = plugins.catalog.find("legacy-source").expect("legacy-source loads");
    let names = wasm_connect_interfaces(&plugins, &legacy.path);
    assert!(names.len() >= 3 && names.iter().all(|name| name.ends_with("@0.1.1")), "{names:?}");
    let mut instance = open(&plugins, "legacy-source", &[("count", "3")], Some("1")).unwrap();
    let (records, position) = take(&mut instance, 2);
    let values: Vec<&[u8]> = records.iter().map(|record| record.value.as_deref().unwrap()).collect();
    assert_eq!(values, vec![&b"{\"n\":1}"[..], b"{\"n\":2}"]);
    assert_eq!(records[1].key.as_deref(), Some(&b"2"[..]));
    assert_eq!(position.as_deref(), Some("3"));
}
