//! Live management over HTTP against the real binary: connectors created,
//! reconfigured, paused, resumed, stopped, restarted and deleted through Kafka
//! Connect's endpoints; offsets read and changed while stopped; who owns a
//! connector; and every API-made change surviving a restart, on both transports.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Host, SinkLine, host_config, read_sink_output, write_config};

const WAIT: Duration = Duration::from_secs(30);

/// A source declared in the file, writing `topic` at 100 records/s.
fn file_source(topic: &str) -> String {
    format!(
        "  - name: sim
    plugin: flight-simulator
    topic: {topic}
    config: {{ rate: 100, seed: 7 }}
"
    )
}

fn files_connector(output: &Path, tasks: u32, topic: &str) -> Value {
    json!({
        "name": "files",
        "config": {
            "connector.class": "file-sink",
            "topics": topic,
            "tasks.max": tasks.to_string(),
            "directory": output.display().to_string(),
        }
    })
}

fn task_states(host: &Host, name: &str) -> Vec<String> {
    let (_, status) = host.call("GET", &format!("/connectors/{name}/status"), None);
    status["tasks"]
        .as_array()
        .map(|tasks| tasks.iter().map(|task| task["state"].as_str().unwrap_or("").to_owned()).collect())
        .unwrap_or_default()
}

fn wait_for_states(host: &Host, name: &str, expected: &[&str]) {
    host.wait_until(&format!("{name} tasks {expected:?}"), WAIT, || task_states(host, name) == expected);
}

fn lines_of(output: &Path, topic: &str) -> Vec<SinkLine> {
    read_sink_output(output).remove(topic).unwrap_or_default()
}

fn lines(output: &Path) -> Vec<SinkLine> {
    lines_of(output, "flights")
}

/// The next offset to read per partition, from what the file sink wrote.
fn next_offsets_written(output: &Path, topic: &str) -> BTreeMap<i64, i64> {
    let mut next = BTreeMap::new();
    for line in lines_of(output, topic) {
        let entry = next.entry(line.partition).or_insert(0);
        *entry = (*entry).max(line.offset + 1);
    }
    next
}

fn sink_offsets(host: &Host, name: &str, topic: &str) -> BTreeMap<i64, i64> {
    let (status, offsets) = host.call("GET", &format!("/connectors/{name}/offsets"), None);
    assert_eq!(status, 200, "{offsets}");
    offsets["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            assert_eq!(entry["partition"]["kafka_topic"], topic, "{entry}");
            (entry["partition"]["kafka_partition"].as_i64().unwrap(), entry["offset"]["kafka_offset"].as_i64().unwrap())
        })
        .collect()
}

#[test]
fn connectors_are_created_changed_paused_stopped_and_deleted_over_http() {
    let directory = tempfile::tempdir().unwrap();
    let output = directory.path().join("out");
    let host = Host::start(&host_config(directory.path(), &file_source("flights")));

    let (status, created) = host.call("POST", "/connectors", Some(&files_connector(&output, 2, "flights")));
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["name"], "files");
    assert_eq!(created["type"], "sink");
    assert_eq!(created["tasks"], json!([{"connector": "files", "task": 0}, {"connector": "files", "task": 1}]));
    assert_eq!(created["config"]["connector.class"], "file-sink");
    let (status, again) = host.call("POST", "/connectors", Some(&files_connector(&output, 2, "flights")));
    assert_eq!((status, again["message"].as_str().unwrap()), (409, "Connector files already exists"));
    wait_for_states(&host, "files", &["RUNNING", "RUNNING"]);
    host.wait_until("records written", WAIT, || lines(&output).len() >= 100);
    let (_, names) = host.call("GET", "/connectors", None);
    assert_eq!(names, json!(["files", "sim"]));

    // Reconfigured: one task, smaller batches; the source is not touched.
    let mut config = files_connector(&output, 1, "flights")["config"].clone();
    config["name"] = json!("files");
    let (status, updated) = host.call("PUT", "/connectors/files/config", Some(&config));
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["tasks"].as_array().unwrap().len(), 1);
    wait_for_states(&host, "files", &["RUNNING"]);
    let (status, patched) = host.call("PATCH", "/connectors/files/config", Some(&json!({"batch.size": 50})));
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["config"]["batch.size"], "50");
    assert_eq!(patched["config"]["tasks.max"], "1");
    assert_eq!(host.call("GET", "/connectors/files/config", None).1["batch.size"], "50");

    // Paused: nothing more is written until resumed.
    assert_eq!(host.call("PUT", "/connectors/files/pause", None).0, 202);
    wait_for_states(&host, "files", &["PAUSED"]);
    assert_eq!(host.call("GET", "/connectors/files/status", None).1["connector"]["state"], "PAUSED");
    let paused_at = lines(&output).len();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(lines(&output).len(), paused_at, "a paused sink kept writing");
    assert_eq!(host.call("PUT", "/connectors/files/resume", None).0, 202);
    wait_for_states(&host, "files", &["RUNNING"]);
    host.wait_until("writing after resume", WAIT, || lines(&output).len() > paused_at + 50);

    // Offsets change only while stopped; once stopped, they are what was written.
    let (status, refused) = host.call("DELETE", "/connectors/files/offsets", None);
    assert_eq!(status, 400);
    assert!(refused["message"].as_str().unwrap().contains("/connectors/files/stop"), "{refused}");
    assert_eq!(host.call("PUT", "/connectors/files/stop", None).0, 204);
    let (_, stopped) = host.call("GET", "/connectors/files/status", None);
    assert_eq!(stopped["connector"]["state"], "STOPPED");
    assert_eq!(stopped["tasks"], json!([]));
    assert_eq!(host.call("GET", "/connectors/files", None).1["tasks"], json!([]));
    assert_eq!(sink_offsets(&host, "files", "flights"), next_offsets_written(&output, "flights"));
    let (status, reset) = host.call("DELETE", "/connectors/files/offsets", None);
    assert_eq!(status, 200, "{reset}");
    assert_eq!(sink_offsets(&host, "files", "flights"), BTreeMap::new());
    let (status, altered) = host.call(
        "PATCH",
        "/connectors/files/offsets",
        Some(&json!({"offsets": [{"partition": {"kafka_topic": "flights", "kafka_partition": 0}, "offset": {"kafka_offset": 3}}]})),
    );
    assert_eq!(status, 200, "{altered}");
    assert_eq!(sink_offsets(&host, "files", "flights"), BTreeMap::from([(0, 3)]));
    let first_run = lines(&output);
    assert_eq!(host.call("PUT", "/connectors/files/resume", None).0, 202);
    // Partition 0 is read again from offset 3, the others from the start.
    host.wait_until("re-delivery after the reset", WAIT, || {
        let now = lines(&output);
        let again = |partition: i64, offset: i64| now.iter().filter(|line| line.partition == partition && line.offset == offset).count();
        again(0, 3) == 2 && again(0, 2) == 1 && again(1, 0) == 2
    });
    assert!(lines(&output).len() > first_run.len());

    // Restarts.
    assert_eq!(host.call("POST", "/connectors/files/restart", None).0, 204);
    let (status, restarted) = host.call("POST", "/connectors/files/restart?includeTasks=True", None);
    assert_eq!(status, 202, "{restarted}");
    assert_eq!(restarted["name"], "files");
    assert_eq!(restarted["tasks"].as_array().unwrap().len(), 1);
    // As in Kafka Connect, the answer shows what is being restarted as RESTARTING.
    assert_eq!(restarted["connector"]["state"], "RESTARTING", "{restarted}");
    assert_eq!(restarted["tasks"][0]["state"], "RESTARTING", "{restarted}");
    assert_eq!(host.call("POST", "/connectors/files/tasks/0/restart", None).0, 204);
    wait_for_states(&host, "files", &["RUNNING"]);
    assert_eq!(host.call("GET", "/connectors/files/tasks/0/status", None).1["state"], "RUNNING");
    assert_eq!(host.call("POST", "/connectors/files/tasks/7/restart", None).0, 404);
    assert_eq!(host.call("GET", "/connectors/files/tasks/x/status", None).0, 404);
    // Kafka Connect reads a flag that is not "true" as false: the connector alone restarts.
    assert_eq!(host.call("POST", "/connectors/files/restart?includeTasks=perhaps", None).0, 204);

    // Deleted: gone from the API, and nothing more is written.
    assert_eq!(host.call("DELETE", "/connectors/files", None).0, 204);
    assert_eq!(host.call("GET", "/connectors/files", None), (404, json!({"error_code": 404, "message": "Connector files not found"})));
    for gone in [
        "/connectors/files/status",
        "/connectors/files/config",
        "/connectors/files/tasks",
        "/connectors/files/topics",
        "/connectors/files/offsets",
        "/connectors/files/tasks/0/status",
    ] {
        assert_eq!(host.call("GET", gone, None).0, 404, "{gone} after the delete");
    }
    assert_eq!(host.call("GET", "/connectors", None).1, json!(["sim"]));
    let deleted_at = lines(&output).len();
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(lines(&output).len(), deleted_at);
    host.stop();
}

#[test]
fn the_file_owns_its_connectors_and_bad_requests_say_what_to_change() {
    let directory = tempfile::tempdir().unwrap();
    let output = directory.path().join("out");
    let host = Host::start(&host_config(directory.path(), &file_source("flights")));
    wait_for_states(&host, "sim", &["RUNNING"]);

    // The file's connector: readable, pausable, not reconfigurable or deletable.
    let (status, refused) = host.call("PUT", "/connectors/sim/config", Some(&json!({"connector.class": "flight-simulator", "topic": "x"})));
    assert_eq!(status, 409);
    assert!(refused["message"].as_str().unwrap().contains("edit the file"), "{refused}");
    assert_eq!(host.call("PATCH", "/connectors/sim/config", Some(&json!({"rate": "5"}))).0, 409);
    assert_eq!(host.call("DELETE", "/connectors/sim", None).0, 409);
    let (status, clash) =
        host.call("POST", "/connectors", Some(&json!({"name": "sim", "config": {"connector.class": "log-sink", "topics": "flights"}})));
    assert_eq!((status, clash["message"].as_str().unwrap()), (409, "Connector sim already exists"));
    assert_eq!(host.call("PUT", "/connectors/sim/pause", None).0, 202);
    wait_for_states(&host, "sim", &["PAUSED"]);
    assert_eq!(host.call("PUT", "/connectors/sim/resume", None).0, 202);
    wait_for_states(&host, "sim", &["RUNNING"]);

    // Malformed requests: 4xx with Kafka Connect's error body, saying what to change.
    let expect_error = |method: &str, path: &str, body: &str, status: u16, says: &str| {
        let response =
            support::http_request(method, &format!("{}{path}", host.admin_url()), &[("Content-Type", "application/json")], body.as_bytes());
        assert_eq!(response.status, status, "{method} {path} {body}: {}", response.body);
        let error: Value = serde_json::from_str(&response.body).unwrap_or_else(|_| panic!("not JSON: {}", response.body));
        assert_eq!(error["error_code"], status);
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(says), "{method} {path} {body}: {message:?} does not say {says:?}");
    };
    expect_error("POST", "/connectors", "{not json", 400, "not valid JSON");
    expect_error("POST", "/connectors", "", 400, "needs a JSON body");
    expect_error("POST", "/connectors", "[1]", 400, "JSON object");
    expect_error("POST", "/connectors", r#"{"name": "x"}"#, 400, "missing field `config`");
    expect_error("POST", "/connectors", r#"{"name": "x", "config": {}, "colour": 1}"#, 400, "unknown field `colour`");
    expect_error("POST", "/connectors", r#"{"name": "x", "config": {}}"#, 400, "connector.class: missing");
    expect_error(
        "POST",
        "/connectors",
        r#"{"name": "x", "config": {"connector.class": "nope-sink", "topics": "a"}}"#,
        400,
        "no plugin nope-sink",
    );
    expect_error(
        "POST",
        "/connectors",
        r#"{"name": "x", "config": {"connector.class": "log-sink", "topics": ["a"]}}"#,
        400,
        "topics: must be a string, not an array",
    );
    expect_error(
        "POST",
        "/connectors",
        r#"{"name": "x", "config": {"connector.class": "log-sink", "topics": "a", "tasks.max": "lots"}}"#,
        400,
        "tasks.max: must be a whole number",
    );
    expect_error(
        "POST",
        "/connectors",
        r#"{"name": "x", "config": {"connector.class": "log-sink", "topics": "a", "colour": "red"}}"#,
        400,
        "colour:",
    );
    expect_error(
        "POST",
        "/connectors",
        r#"{"name": "x y", "config": {"connector.class": "log-sink", "topics": "a"}}"#,
        400,
        "name: has a space at position 2",
    );
    expect_error(
        "POST",
        "/connectors",
        r#"{"name": "x", "config": {"connector.class": "log-sink", "topics": "a", "name": "y"}}"#,
        400,
        "doesn't match",
    );
    expect_error(
        "POST",
        "/connectors",
        r#"{"name": "x", "config": {"connector.class": "flight-simulator", "topics": "a"}}"#,
        400,
        "give `topic`",
    );
    expect_error(
        "POST",
        "/connectors",
        r#"{"name": "x", "config": {"connector.class": "log-sink", "topics": "a"}, "initial_state": "ASLEEP"}"#,
        400,
        "unknown variant `ASLEEP`, expected one of `RUNNING`, `PAUSED`, `STOPPED`",
    );
    expect_error("PUT", "/connectors/nope/pause", "", 404, "Connector nope not found");
    expect_error("PATCH", "/connectors/nope/config", "{}", 404, "Connector nope not found");
    expect_error("DELETE", "/connectors/sim/status", "", 405, "does not take that method");
    expect_error("GET", "/nowhere", "", 404, "no such endpoint");
    let huge = format!(r#"{{"name": "x", "config": {{"connector.class": "log-sink", "topics": "a", "pad": "{}"}}}}"#, "x".repeat(3 << 20));
    expect_error("POST", "/connectors", &huge, 413, "");

    // The default upload limit takes components the size other toolchains build
    // (Python and JavaScript ones are 12 to 40 MB): 40 MB is read and then refused
    // for what it is, not for its size.
    let big = vec![0u8; 40 << 20];
    let response = support::http_request("POST", &format!("{}/plugins", host.admin_url()), &[("Content-Type", "application/wasm")], &big);
    assert_eq!(response.status, 400, "{}", response.body);
    assert!(response.body.contains("not a valid WebAssembly component"), "{}", response.body);

    // None of those created anything; a valid one created PAUSED stays paused.
    assert_eq!(host.call("GET", "/connectors", None).1, json!(["sim"]));
    let mut paused = files_connector(&output, 1, "flights");
    paused["initial_state"] = json!("PAUSED");
    assert_eq!(host.call("POST", "/connectors", Some(&paused)).0, 201);
    wait_for_states(&host, "files", &["PAUSED"]);
    assert!(lines(&output).is_empty());
    // Many requests at once do not wedge the host.
    let url = host.admin_url();
    let clients: Vec<_> = (0..16)
        .map(|index| {
            let url = url.clone();
            std::thread::spawn(move || {
                let body = if index % 2 == 0 { "{broken" } else { r#"{"name": "x", "config": {}}"# };
                (0..10)
                    .map(|_| {
                        support::http_request(
                            "POST",
                            &format!("{url}/connectors"),
                            &[("Content-Type", "application/json")],
                            body.as_bytes(),
                        )
                        .status
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for client in clients {
        assert!(client.join().unwrap().iter().all(|status| *status == 400));
    }
    assert_eq!(host.call("GET", "/connectors/sim/status", None).0, 200);
    host.stop();
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Writes the test configuration, with a `kafka` block when `kafka` names a cluster
/// (the host's own topics then get the `suffix`, so a shared cluster serves many runs).
fn survival_config(directory: &Path, connectors: &str, kafka: Option<&str>, suffix: &str) -> std::path::PathBuf {
    let config = host_config(directory, connectors);
    let Some(bootstrap) = kafka else { return config };
    // librdkafka's in-process mock (no suffix) shows aborted transactions to
    // read_committed readers, so a source batch aborted as its task stopped would be
    // read twice there: its sources write without transactions.
    let exactly_once = if suffix.is_empty() { "  cluster:\n    exactly.once.source.support: disabled\n" } else { "" };
    let block = format!(
        "kafka:\n  bootstrap_servers: {bootstrap}\n  config_topic: configs{suffix}\n  offsets_topic: offsets{suffix}\n{exactly_once}  client:\n    session.timeout.ms: 6000\n"
    );
    let text = std::fs::read_to_string(&config).unwrap().replacen("plugins:", &format!("{block}plugins:"), 1);
    write_config(directory, &text)
}

fn restart_survival(directory: &Path, kafka: Option<&str>, suffix: &str) {
    let output = directory.join("out");
    let topic = format!("flights{suffix}");
    let config = survival_config(directory, &file_source(&topic), kafka, suffix);
    let host = Host::start(&config);
    assert_eq!(host.call("POST", "/connectors", Some(&files_connector(&output, 2, &topic))).0, 201);
    host.wait_until("records written", WAIT, || lines_of(&output, &topic).len() >= 50);
    assert_eq!(host.call("PATCH", "/connectors/files/config", Some(&json!({"batch.size": "25", "tasks.max": "1"}))).0, 200);
    // Its one task has every partition (on Kafka, once the group has settled).
    let before = next_offsets_written(&output, &topic);
    host.wait_until("every partition read after the change", Duration::from_secs(60), || {
        let now = next_offsets_written(&output, &topic);
        now.len() == 4 && now.iter().all(|(partition, next)| *next >= before.get(partition).copied().unwrap_or(0) + 5)
    });
    // A stopped source, its position set through the API: record 1000 of a timeline
    // that started 8 s ago (so record 1000, 10 s in at 100 records/s, is 2 s away).
    assert_eq!(host.call("PUT", "/connectors/sim/stop", None).0, 204);
    let start_ms = now_ms() - 8_000;
    let position = format!("{{\"next\":1000,\"start_ms\":{start_ms}}}");
    let (status, altered) = host.call(
        "PATCH",
        "/connectors/sim/offsets",
        Some(&json!({"offsets": [{"partition": {"connector": "sim"}, "offset": {"position": position}}]})),
    );
    assert_eq!(status, 200, "{altered}");
    let (_, offsets) = host.call("GET", "/connectors/sim/offsets", None);
    assert_eq!(offsets, json!({"offsets": [{"partition": {"connector": "sim"}, "offset": {"position": position}}]}));
    // A stopped sink's offsets are what it wrote.
    assert_eq!(host.call("PUT", "/connectors/files/stop", None).0, 204);
    host.wait_until("the sink's committed offsets", WAIT, || {
        let (committed, written) = (sink_offsets(&host, "files", &topic), next_offsets_written(&output, &topic));
        committed == written
    });
    assert!(!sink_offsets(&host, "files", &topic).is_empty());
    // Changed and reset while stopped, on either transport. On Kafka the group must
    // be empty first: the broker may take a moment after its last member left (the
    // mock cluster waits out a rebalance delay), and says so with a 409.
    let patch = json!({"offsets": [{"partition": {"kafka_topic": topic, "kafka_partition": 1}, "offset": {"kafka_offset": 2}}]});
    let mut answer = (0, Value::Null);
    host.wait_until("the offsets changed", Duration::from_secs(60), || {
        answer = host.call("PATCH", "/connectors/files/offsets", Some(&patch));
        if answer.0 == 409 {
            assert!(answer.1["message"].as_str().unwrap().contains("still has members"), "{}", answer.1);
        }
        answer.0 != 409
    });
    let (status, altered) = answer;
    assert_eq!(status, 200, "{altered}");
    let mut expected = next_offsets_written(&output, &topic);
    expected.insert(1, 2);
    assert_eq!(sink_offsets(&host, "files", &topic), expected);
    let (status, reset) = host.call("DELETE", "/connectors/files/offsets", None);
    assert_eq!(status, 200, "{reset}");
    assert!(sink_offsets(&host, "files", &topic).values().all(|offset| *offset == 0), "{:?}", sink_offsets(&host, "files", &topic));
    assert_eq!(host.call("PUT", "/connectors/files/pause", None).0, 202);
    wait_for_states(&host, "files", &["PAUSED"]);
    host.stop();

    let host = Host::start(&config);
    let (_, names) = host.call("GET", "/connectors", None);
    assert_eq!(names, json!(["files", "sim"]));
    let (_, files) = host.call("GET", "/connectors/files/config", None);
    assert_eq!(files["batch.size"], "25");
    assert_eq!(files["tasks.max"], "1");
    assert_eq!(files["directory"], output.display().to_string());
    wait_for_states(&host, "files", &["PAUSED"]);
    assert_eq!(host.call("GET", "/connectors/sim/status", None).1["connector"]["state"], "STOPPED");
    assert_eq!(host.call("GET", "/connectors/sim/offsets", None).1["offsets"][0]["offset"]["position"], position);
    // The source resumes exactly at the position set through the API.
    assert_eq!(host.call("PUT", "/connectors/files/resume", None).0, 202);
    assert_eq!(host.call("PUT", "/connectors/sim/resume", None).0, 202);
    let first_new = start_ms + 10_000;
    let resumed = |lines: &[SinkLine]| -> Vec<i64> {
        let mut times: Vec<i64> = lines.iter().filter_map(|line| line.timestamp).filter(|time| *time >= first_new).collect();
        times.sort();
        times
    };
    host.wait_until("records after the restart", WAIT, || resumed(&lines_of(&output, &topic)).len() >= 50);
    assert_eq!(host.call("PUT", "/connectors/sim/stop", None).0, 204);
    // The stopped source's position says how many records it produced since; the sink
    // may still be behind on some partitions (each file is written on its own, so a
    // read of the output is no snapshot): wait for that many, then compare.
    let (_, offsets) = host.call("GET", "/connectors/sim/offsets", None);
    let stored: Value = serde_json::from_str(offsets["offsets"][0]["offset"]["position"].as_str().unwrap()).unwrap();
    let produced = stored["next"].as_i64().unwrap() - 1000;
    assert!(produced >= 50, "the source produced {produced} records after the restart: {offsets}");
    let mut times = Vec::new();
    host.wait_until("the sink to write every record the stopped source produced", WAIT, || {
        times = resumed(&lines_of(&output, &topic));
        times.len() as i64 >= produced
    });
    assert_eq!(times[0], first_new, "the first record after the restart is not record 1000");
    let expected: Vec<i64> = (0..produced).map(|index| first_new + index * 10).collect();
    assert_eq!(times, expected, "records after the restart are not records 1000, 1001, ... once each");
    host.stop();

    // A name taken by the API cannot be declared in the file as well.
    let clash = format!("{}  - name: files\n    plugin: log-sink\n    topics: [{topic}]\n", file_source(&topic));
    let config = survival_config(directory, &clash, kafka, suffix);
    let outcome = support::command().arg("run").arg(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&outcome.stderr);
    assert!(!outcome.status.success());
    assert!(
        stderr.contains("connector \"files\" is declared in the configuration file and was also created through the REST API"),
        "{stderr}"
    );
}

#[test]
fn api_changes_survive_a_restart_on_the_embedded_transport() {
    let directory = tempfile::tempdir().unwrap();
    restart_survival(directory.path(), None, "");
}

#[test]
fn api_changes_survive_a_restart_on_kafka() {
    let directory = tempfile::tempdir().unwrap();
    let external = std::env::var("WASM_CONNECT_TEST_KAFKA_BOOTSTRAP").ok();
    let cluster = match external {
        Some(_) => None,
        None => Some(rdkafka::mocking::MockCluster::new(1).expect("starting librdkafka's mock cluster")),
    };
    let suffix = match external {
        Some(_) => format!("-{}-{}", std::process::id(), now_ms()),
        None => String::new(),
    };
    if let Some(cluster) = &cluster {
        // The mock does not answer CreateTopics: the one topic a host cannot start
        // without is made here, as an operator would, with the status topic.
        cluster.create_topic("configs-assignments", 4, 1).unwrap();
        cluster.create_topic("configs-status", 1, 1).unwrap();
    }
    let bootstrap = external.unwrap_or_else(|| cluster.as_ref().unwrap().bootstrap_servers());
    restart_survival(directory.path(), Some(&bootstrap), &suffix);
}

/// A state stored before file connectors kept their configuration (only their target):
/// the file's connector keeps its target state and is stored in full from then on; a
/// stored file connector the file no longer declares is removed.
#[test]
fn file_connectors_stored_without_their_configuration_keep_their_target() {
    use wasm_connect::manager::store::{SqliteStateStore, StateStore};
    let directory = tempfile::tempdir().unwrap();
    let config = host_config(directory.path(), "  - name: kept\n    plugin: log-sink\n    topics: [events]\n");
    let data_dir = directory.path().join("data");
    let store = || SqliteStateStore::open(&data_dir).unwrap();
    let runtime = support::topics::runtime();
    runtime.block_on(async {
        let legacy = store();
        legacy.put("connector-kept", Some(r#"{"origin":"file","target":"PAUSED"}"#.into())).await.unwrap();
        legacy.put("connector-gone", Some(r#"{"origin":"file","target":"RUNNING"}"#.into())).await.unwrap();
    });
    let host = Host::start(&config);
    host.wait_until("kept paused", Duration::from_secs(10), || host.get_json("/connectors/kept/status")["connector"]["state"] == "PAUSED");
    assert_eq!(host.get_json("/connectors"), json!(["kept"]));
    host.stop();
    let stored = runtime.block_on(store().load()).unwrap();
    assert!(!stored.contains_key("connector-gone"), "{stored:?}");
    let kept: Value = serde_json::from_str(&stored["connector-kept"]).unwrap();
    assert_eq!((kept["origin"].as_str(), kept["config"]["plugin"].as_str()), (Some("file"), Some("log-sink")), "{kept}");
    let target: Value = serde_json::from_str(&stored["target-state-kept"]).unwrap();
    assert_eq!(target, json!({"state": "PAUSED"}));
}
