//! The examples run, not only validate: each is started as written, with only the
//! addresses of the compose stack replaced by the test servers (MongoDB, CQL,
//! Elasticsearch, a replay of the AirLabs API) and its topics kept in the embedded
//! store instead of the stack's Kafka. The data must land in the stores with the
//! examples' own mappings (field names, column types, ids), and no record may be
//! dead-lettered.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::{Document, doc};
use serde_json::{Value, json};
use support::replay::{Answer, ReplayServer};
use support::{Host, repo_root, services, topics};

const WAIT: Duration = Duration::from_secs(90);

/// Writes `examples/NAME` into `directory` as a runnable configuration: without its
/// `kafka` block, with its data and admin port local to the test, absolute paths to
/// the plugins and the compose files, and each `(from, to)` replaced.
fn example(name: &str, directory: &Path, replacements: &[(&str, String)]) -> std::path::PathBuf {
    let root = repo_root();
    let text = std::fs::read_to_string(root.join("examples").join(name)).unwrap();
    let mut lines = Vec::new();
    let mut in_kafka = false;
    for line in text.lines() {
        if line.starts_with("kafka:") {
            in_kafka = true;
            continue;
        }
        if in_kafka && line.starts_with("  ") {
            continue;
        }
        in_kafka = false;
        let line = if line.starts_with("data_dir:") {
            format!("data_dir: {}", directory.join("data").display())
        } else if line.trim_start().starts_with("listen:") {
            "  listen: 127.0.0.1:0".to_owned()
        } else {
            line.replace("../plugins/dist", &root.join("plugins/dist").display().to_string())
                .replace("../compose/", &format!("{}/", root.join("compose").display()))
        };
        lines.push(line);
    }
    let mut text = lines.join("\n") + "\n";
    for (from, to) in replacements {
        assert!(text.contains(from), "{name} contains {from}");
        text = text.replace(from, to);
    }
    support::write_config(directory, &text)
}

fn no_dead_letters(directory: &Path, topics_to_check: &[&str]) {
    for topic in topics_to_check {
        assert!(topics::read(&directory.join("data"), topic).is_empty(), "records were dead-lettered to {topic}");
    }
}

async fn mongo_documents(url: &str, database: &str, collection: &str) -> Vec<Document> {
    let client = mongodb::Client::with_uri_str(url).await.unwrap();
    client.database(database).collection::<Document>(collection).find(doc! {}).await.unwrap().try_collect().await.unwrap()
}

#[test]
fn flights_to_mongodb_keeps_one_document_per_aircraft_and_every_position() {
    let mongo = services::mongodb();
    let directory = tempfile::tempdir().unwrap();
    let uri = "mongodb://localhost:27017/?directConnection=true";
    let config = example(
        "flights-to-mongodb.yaml",
        directory.path(),
        &[
            (uri, mongo.url.clone()),
            ("interval: 10s ", "interval: 1s ".to_owned()),
            ("database: aviation", "database: aviation_example".to_owned()),
        ],
    );
    let host = Host::start(&config);
    let runtime = topics::runtime();
    let count = |collection: &str| runtime.block_on(mongo_documents(&mongo.url, "aviation_example", collection)).len();
    host.wait_until("every aircraft and two reports of each", WAIT, || count("aircraft_latest") == 200 && count("position_history") >= 400);
    host.stop();
    let latest = runtime.block_on(mongo_documents(&mongo.url, "aviation_example", "aircraft_latest"));
    for document in &latest {
        assert_eq!(document.get_str("_id").unwrap(), document.get_str("hex").unwrap(), "upserted by hex: {document}");
    }
    let history = runtime.block_on(mongo_documents(&mongo.url, "aviation_example", "position_history"));
    let ids: BTreeSet<String> = history.iter().map(|document| document.get("_id").unwrap().to_string()).collect();
    assert_eq!(ids.len(), history.len(), "each position once");
    let reports_of_one = history.iter().filter(|document| document.get_str("hex").ok() == latest[0].get_str("hex").ok()).count();
    assert!(reports_of_one >= 2, "the history keeps every report of an aircraft");
}

#[test]
fn simulators_reach_cassandra_and_mongodb_with_the_examples_column_mappings() {
    let cql = support::cql_server::start();
    let mongo = services::mongodb();
    let runtime = topics::runtime();
    let (session, keyspace) = cql_keyspace(&runtime, &cql.contact_points, "example");
    let directory = tempfile::tempdir().unwrap();
    let config = example(
        "simulators-to-cassandra-and-mongodb.yaml",
        directory.path(),
        &[
            ("mongodb://localhost:27017/?directConnection=true", mongo.url.clone()),
            ("contact_points: localhost:9042", format!("contact_points: \"{}\"", cql.contact_points)),
            ("keyspace: telemetry", format!("keyspace: {keyspace}")),
            ("database: payments", "database: payments_example".to_owned()),
        ],
    );
    let host = Host::start(&config);
    let rows = |table: &str, column: &str| -> usize {
        runtime.block_on(async {
            let statement = format!("SELECT {column} FROM {keyspace}.{table}");
            match session.query_unpaged(statement, ()).await {
                Ok(result) => result.into_rows_result().map_or(0, |rows| rows.rows_num()),
                Err(_) => 0,
            }
        })
    };
    let documents = |collection: &str| runtime.block_on(mongo_documents(&mongo.url, "payments_example", collection));
    host.wait_until("rows and documents from every simulator", WAIT, || {
        rows("sim_weblogs", "ip") >= 50
            && rows("sim_iot_readings", "device_id") >= 25
            && documents("sim_transactions").len() >= 20
            && !documents("sim_by_account").is_empty()
    });
    host.stop();
    no_dead_letters(directory.path(), &["sim-weblogs-dlq", "sim-iot-readings-dlq", "sim-payments-dlq"]);
    let transactions = documents("sim_transactions");
    for transaction in &transactions {
        assert_eq!(transaction.get_str("_id").unwrap(), transaction.get_str("transaction_id").unwrap(), "{transaction}");
    }
    let by_account = documents("sim_by_account");
    let accounts: BTreeSet<&str> = transactions.iter().map(|transaction| transaction.get_str("account_id").unwrap()).collect();
    assert!(!by_account.is_empty() && by_account.len() <= accounts.len(), "one document per account");
    // The typed columns hold the simulators' values.
    let (temperature, anomaly): (f64, bool) = runtime.block_on(async {
        let statement = format!("SELECT temperature, anomaly FROM {keyspace}.sim_iot_readings");
        let result = session.query_unpaged(statement, ()).await.unwrap().into_rows_result().unwrap();
        result.first_row::<(f64, bool)>().unwrap()
    });
    assert!((-40.0..60.0).contains(&temperature), "temperature {temperature}, anomaly {anomaly}");
}

#[test]
fn airlabs_flights_reach_elasticsearch_under_the_geo_point_mapping() {
    // Runtime fields are Elasticsearch's (OpenSearch has none): the ES-8-flavoured
    // server, or the cluster in ES_URL.
    let flavour = if std::env::var_os("ES_URL").is_some() { "external" } else { "noida" };
    let store = services::elasticsearch(flavour);
    let api = ReplayServer::start();
    let flights: Vec<Value> = (0..30)
        .map(|n| json!({"hex": format!("4ca{n:03x}"), "lat": 48.0 + n as f64 / 10.0, "lng": 2.0, "alt": 10668, "updated": 1_714_521_600 + n, "status": "en-route"}))
        .collect();
    let body = json!({"request": {"key": {"limits_by_month": 1000}}, "response": flights, "terms": "t"}).to_string();
    api.serve("/api/v9/flights", Answer::json(200, &body));
    let directory = tempfile::tempdir().unwrap();
    let index = format!("airlabs-flights-{}", std::process::id());
    let config = example(
        "airlabs-to-elasticsearch.yaml",
        directory.path(),
        &[
            ("      api_key: ${AIRLABS_KEY}", format!("      api_key: ${{AIRLABS_KEY}}\n      base_url: {}/api/v9", api.url())),
            ("http://localhost:9200", store.url.clone()),
            ("index: airlabs-flights", format!("index: {index}")),
        ],
    );
    let host = Host::start_with_env(&config, &[("AIRLABS_KEY", "test-key")]);
    host.wait_until("every aircraft indexed", WAIT, || topics::elasticsearch_documents(&store.url, &index).len() == 30);
    host.stop();
    no_dead_letters(directory.path(), &["airlabs-flights-dlq"]);
    let documents = topics::elasticsearch_documents(&store.url, &index);
    assert_eq!(documents["4ca00a"]["lat"], 49.0, "indexed by hex: {documents:?}");
    let (status, mapping) = services::http("GET", &format!("{}/{index}/_mapping", store.url), None);
    assert_eq!(status, 200, "{mapping}");
    let mapping: Value = serde_json::from_str(&mapping).unwrap();
    let mappings = &mapping[&index]["mappings"];
    assert_eq!(mappings["runtime"]["location"]["type"], "geo_point", "{mapping}");
    assert_eq!(mappings["properties"]["lat"]["type"], "double", "{mapping}");
    assert_eq!(mappings["properties"]["updated"]["type"], "date", "{mapping}");
    assert_eq!(api.received("/api/v9/flights").first().and_then(|request| request.param("api_key")).as_deref(), Some("test-key"));
}

#[test]
fn velib_by_postcode_sums_each_stations_newest_bikes_per_postcode_into_mongodb() {
    let mongo = services::mongodb();
    let api = ReplayServer::start();
    let postcodes = ["75001", "75002", "75011", "92100"];
    // 30 stations: 105 has no post_code (it goes to velib-no-postcode), 129 is not in
    // station_information (the join drops it).
    let information: Vec<Value> = (100..129)
        .map(|id| {
            let mut station = json!({"station_id": id, "name": format!("Station {id}"), "capacity": 30});
            if id != 105 {
                station["post_code"] = json!(postcodes[id as usize % 4]);
            }
            station
        })
        .collect();
    // Two snapshots of the status feed, a second apart: every station reports again
    // with other counts. Gauges: a window sums each station's newest count, never both.
    let bikes = |id: i64, snapshot: i64| (id * (3 + snapshot)) % 13;
    let status = |snapshot: i64| -> String {
        let stations: Vec<Value> = (100..130)
            .map(|id| {
                let bikes = bikes(id, snapshot);
                json!({"station_id": id, "num_bikes_available": bikes, "num_docks_available": 30 - bikes, "last_reported": 1_764_930_000 + id + snapshot * 60})
            })
            .collect();
        json!({"data": {"stations": stations}}).to_string()
    };
    let feed = "/opendata/Velib_Metropole";
    api.serve(&format!("{feed}/station_information.json"), Answer::json(200, &json!({"data": {"stations": information}}).to_string()));
    api.once(&format!("{feed}/station_status.json"), Answer::json(200, &status(0)));
    api.serve(&format!("{feed}/station_status.json"), Answer::json(200, &status(1)));
    let directory = tempfile::tempdir().unwrap();
    let config = example(
        "velib-by-postcode.yaml",
        directory.path(),
        &[
            ("https://velib-metropole-opendata.smovengo.cloud/opendata/Velib_Metropole", format!("{}{feed}", api.url())),
            ("mongodb://localhost:27017/?directConnection=true", mongo.url.clone()),
            ("database: velib", "database: velib_example".to_owned()),
            ("wall_clock_timeout: 6m", "wall_clock_timeout: 3s".to_owned()),
            ("interval: 60s", "interval: 1s".to_owned()),
        ],
    );
    // Computed from the feeds without the host: per postcode and snapshot, its
    // stations' bikes, docks and number.
    let sums = |snapshot: i64| {
        let mut sums: std::collections::BTreeMap<String, (i64, i64, i64)> = Default::default();
        for id in (100..129).filter(|id| *id != 105) {
            let entry = sums.entry(postcodes[id as usize % 4].to_owned()).or_default();
            *entry = (entry.0 + bikes(id, snapshot), entry.1 + 30 - bikes(id, snapshot), entry.2 + 1);
        }
        sums
    };
    let (first, second) = (sums(0), sums(1));
    assert_ne!(first, second);
    let host = Host::start(&config);
    let runtime = topics::runtime();
    let documents = || runtime.block_on(mongo_documents(&mongo.url, "velib_example", "bikes_by_postcode"));
    let figures = |document: &Document| {
        let number = |name: &str| document.get(name).and_then(|value| value.as_i64().or_else(|| value.as_i32().map(i64::from))).unwrap();
        (number("bikes_available"), number("docks_available"), number("stations"))
    };
    // Both snapshots fall in one window, or the first closes a window of its own when
    // the second passes its end: the newest window of each postcode has the newest counts.
    let newest = |found: &[Document]| -> std::collections::BTreeMap<String, (String, (i64, i64, i64))> {
        let mut newest: std::collections::BTreeMap<String, (String, (i64, i64, i64))> = Default::default();
        for document in found {
            let postcode = document.get_str("post_code").unwrap().to_owned();
            let start = document.get_str("window_start").unwrap().to_owned();
            if newest.get(&postcode).is_none_or(|(known, _)| *known < start) {
                newest.insert(postcode, (start, figures(document)));
            }
        }
        newest
    };
    host.wait_until("the newest window of every postcode", WAIT, || {
        let newest = newest(&documents());
        newest.len() == postcodes.len() && newest.iter().all(|(postcode, (_, figures))| *figures == second[postcode])
    });
    std::thread::sleep(Duration::from_secs(1));
    host.stop();

    let found = documents();
    assert!(found.len() == postcodes.len() || found.len() == 2 * postcodes.len(), "one or two windows per postcode: {found:?}");
    for document in &found {
        let postcode = document.get_str("post_code").unwrap().to_owned();
        let start = document.get_str("window_start").unwrap();
        assert_eq!(document.get_str("_id").unwrap(), format!("{postcode}@{start}"), "{document}");
        let is_newest = newest(&found)[&postcode].0 == start;
        let wanted = if is_newest { second[&postcode] } else { first[&postcode] };
        assert_eq!(figures(document), wanted, "{document}");
    }
    let clean = topics::read(&directory.path().join("data"), "velib-projet-clean");
    assert_eq!(clean.len(), found.len(), "each window once in the clean topic");
    let without_postcode = topics::read(&directory.path().join("data"), "velib-no-postcode");
    assert_eq!(without_postcode.len(), 2, "station 105 once per snapshot");
    for letter in &without_postcode {
        let reason = letter.headers.iter().find(|(name, _)| name == "__connect.errors.exception.message").unwrap();
        assert_eq!(reason.1.as_deref(), Some(&b"the value has no field post_code (group_by)"[..]));
    }
}

/// A CQL session on `contact_points` and a keyspace of its own for this test process.
fn cql_keyspace(runtime: &tokio::runtime::Runtime, contact_points: &str, name: &str) -> (scylla::client::session::Session, String) {
    let keyspace = format!("{name}_{}", std::process::id());
    let session = runtime.block_on(async {
        let session = scylla::client::session_builder::SessionBuilder::new()
            .known_node(contact_points)
            .auto_await_schema_agreement(false)
            .build()
            .await
            .unwrap();
        let create =
            format!("CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}");
        session.query_unpaged(create, ()).await.unwrap();
        session
    });
    (session, keyspace)
}

/// The values of each record of `topic`, in the order of its partitions and offsets,
/// with the record's timestamp.
fn values(data_dir: &Path, topic: &str) -> Vec<(Value, i64)> {
    let records = topics::read(data_dir, topic);
    records.iter().map(|record| (serde_json::from_slice(record.value.as_deref().unwrap()).unwrap(), record.timestamp.unwrap())).collect()
}

const MINUTE_MS: i64 = 60_000;

fn minute_of(value: &Value) -> i64 {
    let time = wasm_connect_protocol::time::parse_rfc3339(value["timestamp"].as_str().unwrap()).unwrap();
    time - time.rem_euclid(MINUTE_MS)
}

/// Count, sum, min and max of a series, for comparison with a window's results.
#[derive(Default, Debug)]
struct Stats {
    count: i64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Stats {
    fn add(&mut self, value: f64) {
        (self.min, self.max) = if self.count == 0 { (value, value) } else { (self.min.min(value), self.max.max(value)) };
        self.count += 1;
        self.sum += value;
    }

    fn avg(&self) -> f64 {
        self.sum / self.count as f64
    }
}

fn close(found: f64, wanted: f64) -> bool {
    (found - wanted).abs() <= 1e-9 * wanted.abs().max(1.0)
}

/// examples/monitoring-platform.yaml as written, its three simulators replaying ten
/// minutes of an afternoon from a fixed start, against a CQL server, MongoDB and
/// Prometheus with the shipped rule and dashboard: every window and every alert is
/// checked against what the test computes from the simulators' topics.
#[test]
fn monitoring_platform_stores_every_window_and_raises_every_alert_once() {
    // An afternoon: the warmest devices pass 27 °C around 14:00.
    fn replay(rate: &'static str, limit: u64) -> (&'static str, String) {
        (rate, format!("{rate}\n      start: \"2026-01-01T13:30:00Z\"\n      limit: {limit}"))
    }
    let (weblogs, readings, payments) = (30_000, 15_000, 12_000); // ten minutes each
    let cql = support::cql_server::start();
    let mongo = services::mongodb();
    let runtime = topics::runtime();
    let (session, keyspace) = cql_keyspace(&runtime, &cql.contact_points, "monitoring");
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().join("data");
    let config = example(
        "monitoring-platform.yaml",
        directory.path(),
        &[
            replay("rate: 50", weblogs),
            replay("rate: 25", readings),
            replay("rate: 20", payments),
            ("mongodb://localhost:27017/?directConnection=true", mongo.url.clone()),
            ("localhost:9042", cql.contact_points.clone()),
            ("keyspace: telemetry", format!("keyspace: {keyspace}")),
            ("database: monitoring", "database: monitoring_example".to_owned()),
            // Long enough that no window closes by the wall clock while the replay runs.
            ("wall_clock_timeout: 70s", "wall_clock_timeout: 10s".to_owned()),
        ],
    );
    let rules = std::fs::read_to_string(repo_root().join("compose/prometheus/monitoring-platform.yml")).unwrap();
    let checked =
        services::promtool(&["check", "rules", repo_root().join("compose/prometheus/monitoring-platform.yml").to_str().unwrap()], None);
    assert!(checked.contains("SUCCESS: 1 rules found"), "{checked}");
    let host = Host::start(&config);
    let prometheus = support::prometheus::scraping(directory.path(), &host, "1s", &[("monitoring-platform.yml", &rules)]);
    host.wait_until("every simulated record", WAIT, || {
        [("weblogs", weblogs), ("iot-readings", readings), ("payments", payments)]
            .iter()
            .all(|(topic, count)| topics::read(&data, topic).len() == *count as usize)
    });

    // What the processors must find, computed from their input topics.
    let mut device_minutes: std::collections::BTreeMap<(String, i64), [Stats; 3]> = Default::default();
    let mut overheats: BTreeSet<(String, String, String, String)> = BTreeSet::new();
    let mut runs: std::collections::HashMap<String, Vec<(f64, i64)>> = Default::default();
    for (reading, timestamp) in values(&data, "iot-readings") {
        let device = reading["device_id"].as_str().unwrap().to_owned();
        let stats = device_minutes.entry((device.clone(), minute_of(&reading))).or_default();
        for (slot, field) in ["temperature_c", "humidity_pct", "pm25_ugm3"].iter().enumerate() {
            stats[slot].add(reading[field].as_f64().unwrap());
        }
        let temperature = reading["temperature_c"].as_f64().unwrap();
        let run = runs.entry(device.clone()).or_default();
        if temperature > 27.0 {
            run.push((temperature, timestamp));
            if run.len() == 3 {
                let values = Value::from(run.iter().map(|(value, _)| *value).collect::<Vec<_>>()).to_string();
                let since = wasm_connect_protocol::time::format_rfc3339(run[0].1);
                overheats.insert((device, values, since, wasm_connect_protocol::time::format_rfc3339(timestamp)));
            }
        } else {
            run.clear();
        }
    }
    let mut web_errors: std::collections::BTreeMap<(i64, i64), (Stats, BTreeSet<String>)> = Default::default();
    for (event, _) in values(&data, "weblogs") {
        let status = event["status"].as_i64().unwrap();
        if status >= 400 {
            let (stats, clients) = web_errors.entry((status, minute_of(&event))).or_default();
            stats.add(event["latency_ms"].as_f64().unwrap());
            clients.insert(event["ip"].as_str().unwrap().to_owned());
        }
    }
    let mut per_account_minute: std::collections::BTreeMap<(String, i64), Stats> = Default::default();
    for (payment, _) in values(&data, "payments") {
        let account = payment["account_id"].as_str().unwrap().to_owned();
        per_account_minute.entry((account, minute_of(&payment))).or_default().add(payment["amount"].as_f64().unwrap());
    }
    let bursts: Vec<_> = per_account_minute.into_iter().filter(|(_, stats)| stats.count > 5).collect();
    assert!(!overheats.is_empty() && !bursts.is_empty(), "the replay has alerts of both kinds to find");

    let rows = |statement: &str| -> Option<scylla::response::query_result::QueryRowsResult> {
        runtime.block_on(session.query_unpaged(statement.replace("KS", &keyspace), ())).ok()?.into_rows_result().ok()
    };
    let alerts = || runtime.block_on(mongo_documents(&mongo.url, "monitoring_example", "alerts"));
    host.wait_until("every window in Cassandra and every alert in MongoDB", WAIT, || {
        rows("SELECT device_id FROM KS.device_minutes").is_some_and(|found| found.rows_num() == device_minutes.len())
            && rows("SELECT status FROM KS.web_errors_by_minute").is_some_and(|found| found.rows_num() == web_errors.len())
            && alerts().len() == overheats.len() + bursts.len()
    });

    // Per device and minute: count, averages, minima and maxima.
    type DeviceRow = (String, scylla::value::CqlTimestamp, i64, f64, f64, f64, f64, f64, f64, f64, f64);
    let found = rows("SELECT device_id, window_start, readings, avg_temperature, min_temperature, max_temperature, avg_humidity, min_humidity, max_humidity, avg_pm25, max_pm25 FROM KS.device_minutes").unwrap();
    for row in found.rows::<DeviceRow>().unwrap() {
        let (device, start, count, avg_t, min_t, max_t, avg_h, min_h, max_h, avg_p, max_p) = row.unwrap();
        let [t, h, p] = &device_minutes[&(device.clone(), start.0)];
        assert_eq!(count, t.count, "{device} at {}", start.0);
        let pairs = [
            (avg_t, t.avg()),
            (min_t, t.min),
            (max_t, t.max),
            (avg_h, h.avg()),
            (min_h, h.min),
            (max_h, h.max),
            (avg_p, p.avg()),
            (max_p, p.max),
        ];
        assert!(pairs.iter().all(|(found, wanted)| close(*found, *wanted)), "{device} at {}: {pairs:?}", start.0);
    }
    // Per error status and minute: requests, distinct clients, latency.
    let found =
        rows("SELECT status, window_start, requests, clients, avg_latency_ms, max_latency_ms FROM KS.web_errors_by_minute").unwrap();
    for row in found.rows::<(i32, scylla::value::CqlTimestamp, i64, i64, f64, f64)>().unwrap() {
        let (status, start, requests, clients, avg, max) = row.unwrap();
        let (stats, distinct) = &web_errors[&(i64::from(status), start.0)];
        assert_eq!((requests, clients), (stats.count, distinct.len() as i64), "{status} at {}", start.0);
        assert!(close(avg, stats.avg()) && close(max, stats.max), "{status} at {}: {avg} {max} {stats:?}", start.0);
    }
    // Each window and alert once in its topic (the stores upsert, so they cannot show a repeat).
    for (topic, count) in
        [("device-minutes", device_minutes.len()), ("web-errors-by-minute", web_errors.len()), ("alerts", overheats.len() + bursts.len())]
    {
        assert_eq!(topics::read(&data, topic).len(), count, "{topic}");
    }
    // Every alert once, each with its rule.
    let documents = alerts();
    let mut found_overheats = BTreeSet::new();
    let mut found_bursts = Vec::new();
    for document in &documents {
        let key = document.get_str("key").unwrap().to_owned();
        match document.get_str("rule").unwrap() {
            "sensor-overheat" => {
                let values: Vec<f64> = document.get_array("values").unwrap().iter().map(|value| value.as_f64().unwrap()).collect();
                let (since, at) = (document.get_str("since").unwrap().to_owned(), document.get_str("at").unwrap().to_owned());
                found_overheats.insert((key, Value::from(values).to_string(), since, at));
            }
            "payment-burst" => {
                let start = wasm_connect_protocol::time::parse_rfc3339(document.get_str("window_start").unwrap()).unwrap();
                let payments = document.get("payments").and_then(|value| value.as_i64().or_else(|| value.as_i32().map(i64::from))).unwrap();
                found_bursts.push(((key, start), payments, document.get_f64("amount").unwrap()));
            }
            other => panic!("an alert of rule {other}: {document}"),
        }
    }
    assert_eq!(found_overheats, overheats, "every run above 27 °C alerted once");
    found_bursts.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(found_bursts.len(), bursts.len(), "{found_bursts:?}");
    for ((found_at, payments, amount), (wanted_at, stats)) in found_bursts.iter().zip(&bursts) {
        assert_eq!((found_at, *payments), (wanted_at, stats.count), "an account's payments in a minute");
        assert!(close(*amount, stats.sum), "{found_at:?}: {amount} {}", stats.sum);
    }
    assert!(topics::read(&data, "monitoring-late").is_empty(), "nothing was late");

    // The shipped rule fires for both processors, and each panel of the example's
    // dashboard finds data.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let both = BTreeSet::from(["payment-bursts".to_owned(), "sensor-overheat".to_owned()]);
    loop {
        let firing = support::prometheus::firing_alerts(&prometheus);
        if firing.get("MonitoringAlertRaised") == Some(&both) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "MonitoringAlertRaised did not fire for both rules: {firing:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(repo_root().join("compose/grafana/dashboards/monitoring-platform.json")).unwrap())
            .unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        // A rate or an increase needs two scrapes of a series.
        let expression = panel["targets"][0]["expr"].as_str().unwrap().replace("$__rate_interval", "30s");
        support::wait_until(&format!("data for the panel {}: {expression}", panel["title"]), Duration::from_secs(30), || {
            support::prometheus::query(&prometheus, &expression).as_array().is_some_and(|series| !series.is_empty())
        });
    }
    host.stop();
}
