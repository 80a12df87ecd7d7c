//! Transforms in running pipelines, through the real binary on the embedded
//! transport: a Kafka Connect configuration with a chain and a predicate posted by a
//! Kafka Connect client shapes the records as Kafka Connect would; records a transform
//! fails go to the dead-letter topic with the TRANSFORMATION stage, from a source as
//! from a sink; a host killed mid-stream with a chain that drops and one that routes
//! loses nothing and repeats at most the uncommitted batches.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Map, Value, json};
use support::{Host, SinkLine, canonical, read_sink_output, simulated_values, sorted_texts, write_config};

const START: &str = "2024-05-01T00:00:00Z";

fn header(directory: &Path) -> String {
    format!(
        "version: 1\ndata_dir: {}\nadmin:\n  listen: 127.0.0.1:0\nplugins:\n  dir: {}\n  restart_backoff: 100ms\nconnectors:\n",
        directory.join("data").display(),
        support::test_plugins_dir().display()
    )
}

fn simulator(plugin: &str, topic: &str, limit: usize) -> String {
    format!(
        "  - name: {topic}-sim\n    plugin: {plugin}\n    topic: {topic}\n    batch_size: 250\n    config: {{ seed: 21, rate: 0, start: \"{START}\", limit: {limit} }}\n"
    )
}

/// Runs the Kafka Connect client (kafka-connect-py's `kc`) against the host.
fn kc(host: &Host, args: &[&str]) -> Value {
    let output =
        Command::new(support::services::kafka_connect_client()).args(["--url", &host.admin_url()]).args(args).output().expect("running kc");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "kc {args:?}: {stdout}{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_str(stdout.trim()).unwrap_or_else(|error| panic!("kc {args:?} printed no JSON ({error}): {stdout}"))
}

/// What Kafka Connect's chain below makes of a payment: MaskField empties the account,
/// Flatten joins `merchant.*` with `_`, InsertField adds a static field (the offset
/// field is checked on its own).
fn shaped_payment(payment: &Value) -> Value {
    let mut out = Map::new();
    for (name, value) in payment.as_object().unwrap() {
        match (name.as_str(), value) {
            ("account_id", _) => {
                out.insert(name.clone(), json!(""));
            }
            (_, Value::Object(fields)) => {
                for (inner, value) in fields {
                    out.insert(format!("{name}_{inner}"), value.clone());
                }
            }
            _ => {
                out.insert(name.clone(), value.clone());
            }
        }
    }
    out.insert("pipeline".into(), json!("wasm-connect"));
    Value::Object(out)
}

#[test]
fn a_kafka_connect_chain_with_a_predicate_posted_by_a_kafka_connect_client_shapes_the_records_as_kafka_connect_does() {
    const LIMIT: usize = 1_500;
    let directory = tempfile::tempdir().unwrap();
    let output = directory.path().join("output");
    let text =
        header(directory.path()) + &simulator("payment-simulator", "payments", LIMIT) + &simulator("iot-sensor-simulator", "iot", LIMIT);
    let host = Host::start(&write_config(directory.path(), &text));

    // A connector configuration as Kafka Connect users write it: converters, full and
    // short class names, a predicate with negate, and the sink's own keys.
    let config = json!({
        "connector.class": "file-sink",
        "tasks.max": "2",
        "topics": "payments,iot",
        "directory": output.display().to_string(),
        "key.converter": "org.apache.kafka.connect.storage.StringConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "false",
        "transforms": "onlyPayments,mask,flatten,insert,route",
        "transforms.onlyPayments.type": "org.apache.kafka.connect.transforms.Filter",
        "transforms.onlyPayments.predicate": "isPayments",
        "transforms.onlyPayments.negate": "true",
        "transforms.mask.type": "org.apache.kafka.connect.transforms.MaskField$Value",
        "transforms.mask.fields": "account_id",
        "transforms.flatten.type": "Flatten$Value",
        "transforms.flatten.delimiter": "_",
        "transforms.insert.type": "InsertField$Value",
        "transforms.insert.static.field": "pipeline",
        "transforms.insert.static.value": "wasm-connect",
        "transforms.insert.offset.field": "kafka_offset",
        "transforms.route.type": "org.apache.kafka.connect.transforms.RegexRouter",
        "transforms.route.regex": "payments",
        "transforms.route.replacement": "payments-shaped",
        "predicates": "isPayments",
        "predicates.isPayments.type": "org.apache.kafka.connect.transforms.predicates.TopicNameMatches",
        "predicates.isPayments.pattern": "payments",
    });
    let created = kc(&host, &["create", "--config-data", &json!({"name": "shaped", "config": config}).to_string()]);
    assert_eq!(created["name"], "shaped", "{created}");

    host.wait_until("every payment in the file sink", Duration::from_secs(120), || {
        read_sink_output(&output).values().map(Vec::len).sum::<usize>() >= LIMIT
    });
    // The iot records are all dropped, so the offsets commit past them too.
    host.wait_until("the sink's offsets at the end of both topics", Duration::from_secs(60), || {
        let offsets = host.get_json("/connectors/shaped/offsets");
        let committed: BTreeMap<String, i64> = offsets["offsets"].as_array().unwrap().iter().fold(BTreeMap::new(), |mut sums, entry| {
            *sums.entry(entry["partition"]["kafka_topic"].as_str().unwrap().to_owned()).or_default() +=
                entry["offset"]["kafka_offset"].as_i64().unwrap();
            sums
        });
        // Offsets are the topics read (not the renamed one): Kafka Connect's KIP-793.
        committed == BTreeMap::from([("iot".to_owned(), LIMIT as i64), ("payments".to_owned(), LIMIT as i64)])
    });
    // The configuration reads back as it was posted, converters and chain included.
    let mut expected = config.as_object().unwrap().clone();
    expected.insert("name".into(), json!("shaped"));
    let read_back = kc(&host, &["config", "shaped"]);
    let read_back = read_back.as_object().unwrap();
    for (key, value) in &expected {
        assert_eq!(read_back.get(key), Some(value), "{key} reads back as posted: {read_back:?}");
    }
    // Try the chain on samples: what each transform made of them, nothing written.
    let payment = json!({"account_id": "ACC1", "merchant": {"name": "Bistro", "mcc": "5812", "country": "FR"}, "amount": 5});
    let samples = json!({"records": [
        {"topic": "payments", "partition": 1, "offset": 7, "key": "ACC1", "value": payment},
        {"topic": "iot", "value": {"device": "d1"}},
    ]});
    let (status, answer) = host.call("POST", "/connectors/shaped/transforms/test", Some(&samples));
    assert_eq!(status, 200, "{answer}");
    let tried = &answer["records"][0];
    let stages: Vec<(&str, bool)> =
        tried["stages"].as_array().unwrap().iter().map(|stage| (stage["transform"].as_str().unwrap(), stage["applied"] == true)).collect();
    assert_eq!(stages, [("onlyPayments", false), ("mask", true), ("flatten", true), ("insert", true), ("route", true)], "{tried}");
    assert_eq!(tried["stages"][1]["record"]["value"]["account_id"], "", "{tried}");
    assert_eq!(tried["output"]["topic"], "payments-shaped");
    assert_eq!(tried["output"]["key"], "ACC1");
    assert_eq!(
        canonical(&tried["output"]["value"]),
        canonical(&json!({"account_id": "", "merchant_name": "Bistro", "merchant_mcc": "5812", "merchant_country": "FR", "amount": 5,
                          "pipeline": "wasm-connect", "kafka_offset": 7}))
    );
    assert_eq!(
        (answer["records"][1]["dropped"].as_bool(), answer["records"][1]["stages"][0]["applied"].as_bool()),
        (Some(true), Some(true))
    );
    let (status, _) = host.call("POST", "/connectors/nope/transforms/test", Some(&samples));
    assert_eq!(status, 404);
    let (status, answer) = host.call("POST", "/connectors/shaped/transforms/test", Some(&json!({"records": [{"colour": "red"}]})));
    assert_eq!(status, 400, "{answer}");
    // The same without a connector: a configuration's chain.
    let config_only = json!({
        "config": {"transforms": "large", "transforms.large.type": "Jq$Value", "transforms.large.expression": "select(.amount > 1000)"},
        "records": [{"value": {"amount": 5}}, {"value": {"amount": 5000}}, {"value": "text"}],
    });
    let (status, answer) = host.call("POST", "/transforms/test", Some(&config_only));
    assert_eq!(status, 200, "{answer}");
    let outcomes: Vec<(bool, Value, bool)> = answer["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|record| (record["dropped"] == true, record["output"]["value"].clone(), record["error"]["transform"] == "large"))
        .collect();
    assert_eq!(outcomes, [(true, Value::Null, false), (false, json!({"amount": 5000}), false), (false, Value::Null, true)]);
    let (status, answer) = host.call(
        "POST",
        "/transforms/test",
        Some(&json!({"config": {"transforms": "x", "transforms.x.type": "Jq$Value", "transforms.x.expression": ".a >"}, "records": []})),
    );
    assert_eq!(status, 400);
    assert!(answer["message"].as_str().unwrap().contains("transforms.x.expression"), "{answer}");

    let status = kc(&host, &["status", "shaped"]);
    assert!(status["tasks"].as_array().unwrap().iter().all(|task| task["state"] == "RUNNING"), "{status}");
    let metrics = host.get_text("/metrics");
    assert!(metrics.contains("wasm_connect_records_failed_total{connector=\"shaped\""), "{metrics}");
    assert_eq!(support::metric(&metrics, "wasm_connect_records_failed_total", &[("connector", "shaped")]), 0.0);
    let log = host.stop();
    assert!(log.contains("Kafka Connect keys that have no effect here"), "the converters were named in a warning:\n{log}");

    let written = read_sink_output(&output);
    assert_eq!(written.keys().collect::<Vec<_>>(), ["payments-shaped"], "only the routed payments are written");
    let lines = &written["payments-shaped"];
    assert_eq!(lines.len(), LIMIT, "every payment once");
    let mut values = Vec::new();
    for line in lines {
        let mut value = line.value.clone();
        let offset = value.as_object_mut().unwrap().shift_remove("kafka_offset");
        assert_eq!(offset, Some(json!(line.offset)), "InsertField's offset.field holds the record's offset");
        values.push(value);
    }
    let expected: Vec<Value> = simulated_values("payment-simulator", "21", START, LIMIT).iter().map(shaped_payment).collect();
    // Compared as JSON, whatever the order of fields (the file sink writes them sorted).
    let canonical = |values: &[Value]| sorted_texts(&values.iter().map(canonical).collect::<Vec<_>>());
    assert_eq!(canonical(&values), canonical(&expected), "the chain shaped every payment as Kafka Connect does");
    let coordinates: HashSet<(i64, i64)> = lines.iter().map(|line| (line.partition, line.offset)).collect();
    support::assert_contiguous(&coordinates, "payments-shaped");
}

#[test]
fn records_a_transform_fails_are_dead_lettered_from_sources_and_sinks_or_fail_the_task() {
    const LIMIT: usize = 1_200;
    let directory = tempfile::tempdir().unwrap();
    let (output, letters, strict) = (directory.path().join("output"), directory.path().join("letters"), directory.path().join("strict"));
    // A suspicious payment names its pattern in text, which Cast cannot make a number
    // of; the others have `pattern: null`, which Cast leaves alone.
    let cast = "    transforms:\n      - { name: patternAsNumber, type: Cast$Value, spec: \"pattern:int32\" }\n";
    let errors = "    errors: { tolerance: all, log: true, dead_letter_topic: payments-letters }\n";
    let text = [
        header(directory.path()),
        simulator("payment-simulator", "payments", LIMIT),
        cast.to_owned(),
        errors.to_owned(),
        format!("  - name: files\n    plugin: file-sink\n    topics: [payments]\n    config: {{ directory: {} }}\n", output.display()),
        format!(
            "  - name: letters\n    plugin: file-sink\n    topics: [payments-letters]\n    config: {{ directory: {} }}\n",
            letters.display()
        ),
        simulator("weblog-simulator", "weblogs", 50),
        format!("  - name: strict\n    plugin: file-sink\n    topics: [weblogs]\n    config: {{ directory: {} }}\n", strict.display()),
        "    transforms:\n      - { name: pathAsNumber, type: Cast$Value, spec: \"path:int64\" }\n".to_owned(),
    ]
    .concat();
    let host = Host::start(&write_config(directory.path(), &text));
    let payments = simulated_values("payment-simulator", "21", START, LIMIT);
    let (suspicious, ordinary): (Vec<&Value>, Vec<&Value>) = payments.iter().partition(|payment| payment["pattern"].is_string());
    assert!(!suspicious.is_empty() && !ordinary.is_empty());
    let count = |directory: &Path, topic: &str| read_sink_output(directory).get(topic).map_or(0, Vec::len);
    host.wait_until("every payment written or dead-lettered", Duration::from_secs(120), || {
        count(&output, "payments") >= ordinary.len() && count(&letters, "payments-letters") >= suspicious.len()
    });
    // A sink whose transform fails a record with errors.tolerance none stops and says which.
    host.wait_until("the strict sink to fail", Duration::from_secs(60), || {
        host.get_json("/connectors/strict/status")["tasks"][0]["state"] == "FAILED"
    });
    let trace = host.get_json("/connectors/strict/status")["tasks"][0]["trace"].as_str().unwrap().to_owned();
    assert!(trace.contains("the transform pathAsNumber (Cast$Value) failed the record"), "{trace}");
    assert!(trace.contains("topic weblogs, partition"), "{trace}");
    host.wait_until("every suspicious payment counted as dead-lettered", Duration::from_secs(30), || {
        let metrics = host.get_text("/metrics");
        support::metric(&metrics, "wasm_connect_records_dead_lettered_total", &[("connector", "payments-sim")]) == suspicious.len() as f64
    });
    let log = host.stop();
    assert!(log.contains("stage=\"TRANSFORMATION\"") || log.contains("stage=TRANSFORMATION"), "errors.log logs the failures:\n{log}");
    // Cast's reason does not quote the text it could not read (the suspicious pattern).
    for pattern in ["high_amount", "round_amount", "rapid_repeat", "risky_merchant"] {
        assert!(!log.contains(pattern), "a record value ({pattern}) was logged:\n{log}");
    }

    let written = read_sink_output(&output);
    assert_eq!(sorted_texts(written["payments"].iter().map(|line| &line.value)), sorted_texts(ordinary.iter().copied()));
    let dead = read_sink_output(&letters);
    let dead = &dead["payments-letters"];
    // The records as the source made them, before the chain.
    assert_eq!(sorted_texts(dead.iter().map(|line| &line.value)), sorted_texts(suspicious.iter().copied()));
    for letter in dead {
        let headers = &letter.headers;
        assert_eq!(headers["__connect.errors.stage"], "TRANSFORMATION", "{headers}");
        assert_eq!(headers["__connect.errors.class.name"], "org.apache.kafka.connect.transforms.Cast$Value");
        assert_eq!(headers["__connect.errors.exception.class.name"], "org.apache.kafka.connect.errors.DataException");
        assert_eq!(headers["__connect.errors.topic"], "payments");
        assert_eq!(headers["__connect.errors.connector.name"], "payments-sim");
        let message = headers["__connect.errors.exception.message"].as_str().unwrap();
        assert!(message.starts_with("the transform patternAsNumber (Cast$Value) failed the record: "), "{message}");
    }
    assert!(read_sink_output(&strict).is_empty(), "the strict sink wrote nothing past the record it could not transform");

    // The same chain tried from the command line, records on stdin.
    let mut child = support::command()
        .args(["transforms", "test", &directory.path().join("connectors.yaml").display().to_string(), "--connector", "strict"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(b"{\"value\": {\"path\": \"12\"}}\n\n{\"value\": {\"path\": \"/index.html\"}}\n").unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<Value> = String::from_utf8(output.stdout).unwrap().lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!((lines[0]["output"]["value"].clone(), lines[0]["output"]["topic"].clone()), (json!({"path": 12}), json!("weblogs")));
    assert_eq!(lines[1]["error"]["transform"], "pathAsNumber", "{:?}", lines[1]);
}

#[test]
fn a_killed_host_with_a_chain_that_drops_and_routes_loses_nothing() {
    // Long enough that the kill lands mid-stream: the simulators replay about 150 k
    // records/s since they stopped building JSON trees, and 20,000 were all written
    // before the first look after the 3,000th line.
    const LIMIT: usize = 100_000;
    const SINK_TASKS: usize = 2;
    const SINK_BATCH: usize = 200;
    let directory = tempfile::tempdir().unwrap();
    let output = directory.path().join("output");
    // The source drops the payments of 20 or less (Filter with a jq predicate); the
    // sink routes the rest to another topic (RegexRouter).
    let text = [
        header(directory.path()),
        simulator("payment-simulator", "payments", LIMIT),
        "    predicates:\n      - { name: small, type: Jq, expression: '.amount <= 20' }\n".to_owned(),
        "    transforms:\n      - { name: dropSmall, type: Filter, predicate: small }\n".to_owned(),
        format!(
            "  - name: files\n    plugin: file-sink\n    topics: [payments]\n    tasks_max: {SINK_TASKS}\n    batch_size: {SINK_BATCH}\n    config: {{ directory: {} }}\n",
            output.display()
        ),
        "    transforms:\n      - { name: route, type: RegexRouter, regex: '(.*)', replacement: '$1-large' }\n".to_owned(),
    ]
    .concat();
    let config = write_config(directory.path(), &text);
    let expected: Vec<Value> = simulated_values("payment-simulator", "21", START, LIMIT)
        .into_iter()
        .filter(|payment| payment["amount"].as_f64().unwrap() > 20.0)
        .collect();
    assert!(expected.len() < LIMIT * 9 / 10 && expected.len() > LIMIT / 10, "the predicate drops some, not all: {}", expected.len());
    let lines = |output: &Path| read_sink_output(output).get("payments-large").map_or(0, Vec::len);

    let host = Host::start(&config);
    host.wait_until("the sink to be mid-stream", Duration::from_secs(120), || lines(&output) >= 3_000);
    host.kill();
    let at_kill = lines(&output);
    assert!(at_kill < expected.len(), "the kill must land mid-stream ({at_kill} of {} written)", expected.len());

    let host = Host::start(&config);
    host.wait_until("every kept payment after the restart", Duration::from_secs(300), || {
        read_sink_output(&output)
            .get("payments-large")
            .is_some_and(|written| written.iter().map(|line| (line.partition, line.offset)).collect::<HashSet<_>>().len() >= expected.len())
    });
    host.stop();

    let written = read_sink_output(&output);
    assert_eq!(written.keys().collect::<Vec<_>>(), ["payments-large"], "every record routed");
    let mut seen: BTreeMap<(i64, i64), &SinkLine> = BTreeMap::new();
    let mut repeated = 0;
    for line in &written["payments-large"] {
        if let Some(first) = seen.insert((line.partition, line.offset), line) {
            assert_eq!(first, line, "a repeated record is identical to the first copy");
            repeated += 1;
        }
    }
    // Exactly once in an idempotent store (one keyed by topic, partition and offset).
    assert_eq!(seen.len(), expected.len(), "every kept payment once, none of the dropped");
    support::assert_contiguous(&seen.keys().copied().collect(), "payments-large");
    assert_eq!(sorted_texts(seen.values().map(|line| &line.value)), sorted_texts(&expected));
    let bound = SINK_TASKS * SINK_BATCH;
    eprintln!("killed at {at_kill} of {} lines; {repeated} repeated after the restart (bound {bound})", expected.len());
    assert!(repeated <= bound, "{repeated} repeated records; at most {bound} (one batch per sink task) may repeat");
}
