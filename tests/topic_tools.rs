//! `wasm-connect topics list | describe | read | write`, run as a separate process as
//! users run it, on both transports: the embedded store, and Kafka (librdkafka's mock
//! cluster in this process, or the cluster in `WASM_CONNECT_TEST_KAFKA_BOOTSTRAP`).

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Host, read_sink_output, test_plugins_dir, write_config};
use wasm_connect::transport::{StartAt, Transport};

/// Runs `wasm-connect topics ARGS -c CONFIG` with `stdin`; its stdout, or a panic with
/// its stderr.
fn topics(config: &Path, arguments: &[&str], stdin: &str) -> String {
    let (status, stdout, stderr) = topics_outcome(config, arguments, stdin);
    assert!(status, "topics {arguments:?} failed:\n{stderr}");
    stdout
}

fn topics_outcome(config: &Path, arguments: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = support::command()
        .arg("topics")
        .args(arguments)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    (output.status.success(), String::from_utf8(output.stdout).unwrap(), String::from_utf8_lossy(&output.stderr).into_owned())
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}"))).collect()
}

/// The configuration of a transport: embedded under `directory`, or Kafka at `bootstrap`.
fn config(directory: &Path, bootstrap: Option<&str>, connectors: &str) -> PathBuf {
    let kafka = bootstrap.map(|servers| format!("kafka:\n  bootstrap_servers: {servers}\n")).unwrap_or_default();
    write_config(
        directory,
        &format!(
            "version: 1\ndata_dir: {}\nadmin:\n  listen: 127.0.0.1:0\n{kafka}plugins:\n  dir: {}\nconnectors:{connectors}\n",
            directory.join("data").display(),
            test_plugins_dir().display()
        ),
    )
}

/// Writes six keyed records with a header, lists, reads them back in every way, and
/// follows new records; on whichever transport `config` names.
fn write_list_read_and_follow(config: &Path, topic: &str) {
    let lines: String = (0..6).map(|n| format!("k{n}|{{\"n\":{n},\"text\":\"a|b\"}}\n")).collect::<String>() + "\n";
    let written: Value =
        serde_json::from_str(&topics(config, &["write", topic, "--key-separator", "|", "-H", "origin=test", "--json"], &lines)).unwrap();
    assert_eq!(written["written"], 6);

    let listed: Value = serde_json::from_str(&topics(config, &["list", "--json"], "")).unwrap();
    let entry =
        listed.as_array().unwrap().iter().find(|entry| entry["name"] == topic).unwrap_or_else(|| panic!("{topic} listed: {listed}"));
    assert_eq!(entry["records"], 6, "{entry}");
    let ends: i64 = entry["partitions"].as_array().unwrap().iter().map(|partition| partition["end"].as_i64().unwrap()).sum();
    assert_eq!(ends, 6, "{entry}");
    let text = topics(config, &["list"], "");
    assert!(text.lines().any(|line| line.starts_with(topic) && line.contains(" 6 ")), "{text}");

    let records = json_lines(&topics(config, &["read", topic, "--json"], ""));
    assert_eq!(records.len(), 6);
    let keys: BTreeSet<&str> = records.iter().map(|record| record["key"].as_str().unwrap()).collect();
    assert_eq!(keys, (0..6).map(|n| format!("k{n}")).collect::<BTreeSet<_>>().iter().map(String::as_str).collect());
    for record in &records {
        assert_eq!(record["headers"]["origin"], "test");
        assert_eq!(record["value"]["text"], "a|b", "split at the first separator only: {record}");
        assert_eq!(format!("k{}", record["value"]["n"]), record["key"].as_str().unwrap());
        assert!(record["timestamp"].as_i64().unwrap() > 1_700_000_000_000);
    }

    // One partition from an offset: exactly that partition's records from there on.
    let busiest = records
        .iter()
        .map(|record| record["partition"].as_i64().unwrap())
        .max_by_key(|partition| records.iter().filter(|record| record["partition"].as_i64() == Some(*partition)).count());
    let busiest = busiest.unwrap();
    let partition = busiest.to_string();
    let expected: Vec<&Value> =
        records.iter().filter(|record| record["partition"].as_i64() == Some(busiest) && record["offset"].as_i64().unwrap() >= 1).collect();
    let from_offset = json_lines(&topics(config, &["read", topic, "--json", "--partition", &partition, "--offset", "1"], ""));
    assert_eq!(from_offset.iter().collect::<Vec<_>>(), expected);
    assert_eq!(json_lines(&topics(config, &["read", topic, "--json", "-n", "2"], "")).len(), 2);

    // The readable form: where, when, key, headers, then the value pretty-printed.
    let readable = topics(config, &["read", topic, "-n", "1"], "");
    assert!(readable.starts_with(&format!("{topic}/")), "{readable}");
    assert!(readable.contains("  key: k") && readable.contains("\n  origin: test\n{\n  \"n\": "), "{readable}");

    // From the end: only records written after the reader started.
    let mut follower = support::command()
        .args(["topics", "read", topic, "--from-end", "--json", "-n", "2", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let reader = std::thread::spawn(move || BufReader::new(stdout).lines().map(Result::unwrap).collect::<Vec<_>>());
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut late = 0;
    while !reader.is_finished() {
        assert!(Instant::now() < deadline, "the follower never saw two new records");
        topics(config, &["write", topic, "-k", "|"], &format!("late{late}|{{\"late\":{late}}}\n"));
        late += 1;
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(follower.wait().unwrap().success());
    let followed = json_lines(&reader.join().unwrap().join("\n"));
    assert_eq!(followed.len(), 2);
    for record in &followed {
        assert!(record["key"].as_str().unwrap().starts_with("late"), "only new records: {record}");
    }

    let (succeeded, _, error) = topics_outcome(config, &["read", "no-such-topic"], "");
    assert!(!succeeded && error.contains("there is no topic no-such-topic"), "{error}");
    let (succeeded, _, error) = topics_outcome(config, &["write", topic, "-k", "|"], "no separator here\n");
    assert!(!succeeded && error.contains("has no key separator"), "{error}");
}

#[test]
fn topic_tools_on_the_embedded_store() {
    let directory = tempfile::tempdir().unwrap();
    let sink = format!(
        "\n  - name: demo-to-files\n    plugin: file-sink\n    topics: [demo]\n    config: {{ directory: {} }}",
        directory.path().join("files").display()
    );
    let config = config(directory.path(), None, &sink);
    write_list_read_and_follow(&config, "demo");

    // describe: the partitions, and the sink connector's committed offsets and lag.
    let before: Value = serde_json::from_str(&topics(&config, &["describe", "demo", "--json"], "")).unwrap();
    let records = before["records"].as_i64().unwrap();
    assert_eq!(before["connectors"][0]["connector"], "demo-to-files");
    assert_eq!(before["connectors"][0]["lag"], records, "nothing consumed yet: {before}");
    let host = Host::start(&config);
    // A second reader, created through the API: describe knows it from the desired state.
    let api_output = directory.path().join("api-files");
    let created = host.call(
        "POST",
        "/connectors",
        Some(&serde_json::json!({"name": "api-reader", "config": {"connector.class": "file-sink", "topics": "demo", "directory": api_output.display().to_string()}})),
    );
    assert_eq!(created.0, 201, "{}", created.1);
    let output = directory.path().join("files");
    host.wait_until("both sinks consumed the topic", Duration::from_secs(30), || {
        [&output, &api_output].iter().all(|output| read_sink_output(output).get("demo").map_or(0, Vec::len) as i64 >= records)
    });
    host.stop();
    let after: Value = serde_json::from_str(&topics(&config, &["describe", "demo", "--json"], "")).unwrap();
    let readers: Vec<&str> = after["connectors"].as_array().unwrap().iter().map(|reader| reader["connector"].as_str().unwrap()).collect();
    assert_eq!(readers, ["demo-to-files", "api-reader"], "{after}");
    for reader in after["connectors"].as_array().unwrap() {
        assert_eq!(reader["lag"], 0, "{after}");
        let committed: i64 =
            reader["partitions"].as_array().unwrap().iter().map(|partition| partition["committed"].as_i64().unwrap_or(0)).sum();
        assert_eq!(committed, records, "{reader}");
    }
    let text = topics(&config, &["describe", "demo"], "");
    assert!(
        text.contains("Connector demo-to-files: committed") && text.contains("Connector api-reader: committed") && text.contains("lag 0"),
        "{text}"
    );
}

#[test]
fn topic_tools_on_kafka() {
    let external = std::env::var("WASM_CONNECT_TEST_KAFKA_BOOTSTRAP").ok();
    let topic = match &external {
        Some(_) => format!("topic-tools-{}", std::process::id()),
        None => "topic-tools".to_owned(),
    };
    let mock = match external {
        Some(_) => None,
        None => Some(rdkafka::mocking::MockCluster::new(1).expect("starting librdkafka's mock cluster")),
    };
    if let Some(mock) = &mock {
        mock.create_topic(&topic, 3, 1).unwrap();
    }
    let bootstrap = std::env::var("WASM_CONNECT_TEST_KAFKA_BOOTSTRAP").unwrap_or_else(|_| mock.as_ref().unwrap().bootstrap_servers());
    let directory = tempfile::tempdir().unwrap();
    let config = config(directory.path(), Some(&bootstrap), " []");
    write_list_read_and_follow(&config, &topic);
    let described: Value = serde_json::from_str(&topics(&config, &["describe", &topic, "--json"], "")).unwrap();
    assert!(described["records"].as_i64().unwrap() >= 8, "{described}");
    assert_eq!(described["connectors"], Value::Array(vec![]));
}

/// A topic an exactly-once producer wrote (Kafka Streams, Flink, a transactional
/// client): transaction markers take offsets after the last record, so the end of a
/// partition is not the last record's offset + 1. `topics read` stops at the end all
/// the same, and shows the committed records only. On noida-db (out of process, whose
/// transactions follow Kafka's), or the cluster in `WASM_CONNECT_TEST_KAFKA_BOOTSTRAP`.
#[test]
fn reading_a_topic_written_in_transactions_stops_at_its_end_with_the_committed_records() {
    let noida = match std::env::var("WASM_CONNECT_TEST_KAFKA_BOOTSTRAP") {
        Ok(_) => None,
        Err(_) => Some(support::kafka::NoidaKafka::start()),
    };
    let bootstrap = std::env::var("WASM_CONNECT_TEST_KAFKA_BOOTSTRAP").unwrap_or_else(|_| noida.as_ref().unwrap().bootstrap.clone());
    let topic = format!("transactional-{}", std::process::id());
    // Committed a and b, aborted x, committed c: markers after each transaction. All in
    // partition 0: partition 1 stays empty, and its end comes first.
    let script = r#"
import sys
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
admin = AdminClient({'bootstrap.servers': sys.argv[1]})
for future in admin.create_topics([NewTopic(sys.argv[2], 2, 1)], request_timeout=30).values():
    future.result()
producer = Producer({'bootstrap.servers': sys.argv[1], 'transactional.id': sys.argv[2]})
producer.init_transactions(30)
for values, commit in ((['a', 'b'], True), (['x'], False), (['c'], True)):
    producer.begin_transaction()
    for value in values:
        producer.produce(sys.argv[2], key=value, value=value, partition=0)
    if commit:
        producer.commit_transaction(30)
    else:
        producer.flush(30)
        producer.abort_transaction(30)
"#;
    let venv = support::services::cached_venv("confluent-kafka==2.12.1", &[&["confluent-kafka==2.12.1"]]);
    let written = std::process::Command::new(venv.join("bin/python")).args(["-c", script, &bootstrap, &topic]).output().unwrap();
    assert!(written.status.success(), "the transactional producer failed: {}", String::from_utf8_lossy(&written.stderr));
    let directory = tempfile::tempdir().unwrap();
    let config = config(directory.path(), Some(&bootstrap), " []");
    let output = directory.path().join("read.jsonl");
    let mut child = support::command()
        .args(["topics", "read", &topic, "--json", "--config"])
        .arg(&config)
        .stdout(std::fs::File::create(&output).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = support::wait_with_timeout(&mut child, Duration::from_secs(30));
    assert!(status.success(), "topics read failed");
    let values: Vec<String> =
        json_lines(&std::fs::read_to_string(&output).unwrap()).iter().map(|record| record["value"].as_str().unwrap().to_owned()).collect();
    assert_eq!(values, ["a", "b", "c"], "the committed records, and only them");
    // The reader itself knows it reached the end (what `topics read` stops on without
    // waiting for a quiet spell, and what reading a table to its end waits for).
    support::topics::runtime().block_on(async {
        let transport = wasm_connect::transport::KafkaTransport::new(
            &bootstrap,
            &Default::default(),
            wasm_connect::transport::kafka::ClusterTopics::named("unused"),
        );
        let mut reader = transport.reader(&topic, None, StartAt::Beginning).await.unwrap();
        let mut values = Vec::new();
        for _ in 0..20 {
            if reader.caught_up() {
                break;
            }
            let records = reader.next(100, Duration::from_millis(500)).await.unwrap();
            values.extend(records.into_iter().map(|record| String::from_utf8(record.value.unwrap()).unwrap()));
        }
        assert!(reader.caught_up(), "the reader did not see the end of the partition, past its transaction markers");
        assert_eq!(values, ["a", "b", "c"]);
    });
}
