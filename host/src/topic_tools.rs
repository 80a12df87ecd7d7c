//! `wasm-connect topics`: what kafka-topics, kafka-console-consumer and -producer (or
//! kcat) do for Kafka, on either transport: list topics with their partitions and
//! offsets, describe one with the committed offsets of the sink connectors reading
//! it (the file's and the API's), read records (from the beginning, the end or an offset; following new ones),
//! and write records from stdin. Every command also prints JSON for scripts.

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde_json::{Map, Value, json};
use wasm_connect_protocol::Record;
use wasm_connect_protocol::time::format_rfc3339;

use crate::config::{ConnectorConfig, HostConfig};
use crate::transport::{EmbeddedTransport, StartAt, TopicDescription, Transport};

/// Records asked for in one read from the transport.
const READ_BATCH: usize = 500;
/// How long one read waits for new records in follow mode.
const FOLLOW_WAIT: Duration = Duration::from_millis(500);
/// How long a read that is not caught up yet waits for records in flight.
const CATCH_UP_WAIT: Duration = Duration::from_secs(5);
/// Lines of stdin written in one batch.
const WRITE_BATCH: usize = 1_000;

/// The configuration's transport, as the host would open it.
pub fn open_transport(config: &HostConfig) -> anyhow::Result<Arc<dyn Transport>> {
    Ok(match crate::host::kafka_transport(config) {
        Some(kafka) => Arc::new(kafka),
        None => Arc::new(EmbeddedTransport::open(&config.data_dir, config.embedded.partitions)?),
    })
}

fn records_held(topic: &TopicDescription) -> i64 {
    topic.partitions.iter().map(|partition| partition.end - partition.start).sum()
}

/// `topics list`: every topic with its partitions, records held and end offsets.
pub async fn list(transport: &dyn Transport, json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let topics = transport.describe_topics(None).await.context("cannot list the topics")?;
    if json {
        let shown: Vec<Value> = topics
            .iter()
            .map(|topic| json!({"name": topic.name, "partitions": topic.partitions, "records": records_held(topic)}))
            .collect();
        writeln!(out, "{}", Value::Array(shown))?;
        return Ok(());
    }
    let width = topics.iter().map(|topic| topic.name.len()).max().unwrap_or(0).max(5);
    writeln!(out, "{:width$}  PARTITIONS  RECORDS  END OFFSETS", "TOPIC")?;
    for topic in &topics {
        let ends: Vec<String> = topic.partitions.iter().map(|partition| format!("{}:{}", partition.partition, partition.end)).collect();
        writeln!(out, "{:width$}  {:>10}  {:>7}  {}", topic.name, topic.partitions.len(), records_held(topic), ends.join(" "))?;
    }
    Ok(())
}

/// Every connector the host knows: the file's, and those of the desired state (created
/// through the API, or declared by another host's file), read without changing it: on
/// Kafka only if its config topic already exists, since reading would create it.
pub async fn known_connectors(transport: &dyn Transport, config: &HostConfig) -> anyhow::Result<Vec<ConnectorConfig>> {
    let mut connectors = config.connectors.clone();
    if let Some(kafka) = &config.kafka {
        let config_topic = transport.describe_topics(Some(&kafka.config_topic())).await.context("cannot look for the config topic")?;
        if config_topic.is_empty() {
            return Ok(connectors);
        }
    }
    let kafka = crate::host::kafka_transport(config);
    let store = crate::host::state_store(config, kafka.as_ref())?;
    let stored = crate::manager::stored_connector_configs(store.as_ref()).await.context("cannot read the cluster's connectors")?;
    for config in stored {
        if !connectors.iter().any(|connector| connector.name == config.name) {
            connectors.push(config);
        }
    }
    Ok(connectors)
}

/// `topics describe`: one topic's partitions, and for each sink connector that reads
/// it (of the file or created through the API), its committed offsets and lag.
pub async fn describe(transport: &dyn Transport, config: &HostConfig, topic: &str, json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let topics = transport.describe_topics(Some(topic)).await.context("cannot describe the topics")?;
    let connectors = known_connectors(transport, config).await?;
    let Some(description) = topics.into_iter().next() else {
        anyhow::bail!("there is no topic {topic}; `wasm-connect topics list` shows the topics");
    };
    let mut readers = Vec::new();
    for connector in connectors.iter().filter(|connector| connector.topics.iter().any(|name| name == topic)) {
        let committed = transport
            .committed_offsets(&connector.name, &[topic.to_owned()])
            .await
            .with_context(|| format!("cannot read the committed offsets of connector {}", connector.name))?;
        let partitions: Vec<Value> = description
            .partitions
            .iter()
            .map(|range| {
                let next = committed.iter().find(|offset| offset.partition == range.partition).map(|offset| offset.offset);
                let lag = range.end - next.unwrap_or(range.start).max(range.start);
                json!({"partition": range.partition, "committed": next, "lag": lag})
            })
            .collect();
        let lag: i64 = partitions.iter().filter_map(|partition| partition["lag"].as_i64()).sum();
        readers.push(json!({"connector": connector.name, "partitions": partitions, "lag": lag}));
    }
    if json {
        let shown = json!({"name": description.name, "partitions": description.partitions, "records": records_held(&description), "connectors": readers});
        writeln!(out, "{shown}")?;
        return Ok(());
    }
    writeln!(out, "Topic: {}  Partitions: {}  Records: {}", description.name, description.partitions.len(), records_held(&description))?;
    writeln!(out, "  PARTITION  START OFFSET  END OFFSET")?;
    for range in &description.partitions {
        writeln!(out, "  {:>9}  {:>12}  {:>10}", range.partition, range.start, range.end)?;
    }
    if readers.is_empty() {
        writeln!(out, "No sink connector reads this topic.")?;
    }
    for reader in &readers {
        let committed: Vec<String> = reader["partitions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|partition| {
                format!(
                    "{}:{}",
                    partition["partition"],
                    partition["committed"].as_i64().map_or("-".to_owned(), |offset| offset.to_string())
                )
            })
            .collect();
        writeln!(
            out,
            "Connector {}: committed {}  lag {}",
            reader["connector"].as_str().unwrap_or_default(),
            committed.join(" "),
            reader["lag"]
        )?;
    }
    Ok(())
}

/// What `topics read` reads and how it shows it.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// The topic.
    pub topic: String,
    /// Only this partition.
    pub partition: Option<i32>,
    /// Where to start in each partition.
    pub start: StartAt,
    /// Stop after this many records.
    pub max: Option<usize>,
    /// Keep waiting for new records instead of stopping at the end.
    pub follow: bool,
    /// One JSON object per line instead of the readable form.
    pub json: bool,
}

/// `topics read`: prints records until the end of the topic (or forever with
/// `follow`, or until `max`). Stops quietly when `out` closes (`| head`).
pub async fn read(transport: &dyn Transport, options: &ReadOptions, out: &mut dyn Write) -> anyhow::Result<usize> {
    let mut reader = transport.reader(&options.topic, options.partition, options.start).await?;
    let mut shown = 0;
    loop {
        let wanted = options.max.map_or(READ_BATCH, |max| (max - shown).min(READ_BATCH));
        if wanted == 0 || (!options.follow && reader.caught_up()) {
            return Ok(shown);
        }
        let wait = if options.follow { FOLLOW_WAIT } else { CATCH_UP_WAIT };
        let records = reader.next(wanted, wait).await?;
        if records.is_empty() && !options.follow {
            // Nothing arrived although the end is not reached: records were deleted
            // by retention, or a transaction never completed. Stop rather than hang.
            return Ok(shown);
        }
        for record in &records {
            let text = if options.json { record_json(record).to_string() } else { record_text(record) };
            if writeln!(out, "{text}").is_err() {
                return Ok(shown);
            }
            shown += 1;
        }
        if out.flush().is_err() {
            return Ok(shown);
        }
    }
}

fn bytes_text(bytes: &Option<Vec<u8>>) -> Value {
    bytes.as_ref().map_or(Value::Null, |bytes| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// A record as one JSON object: the value parsed when it is JSON, else a string.
fn record_json(record: &Record) -> Value {
    let headers: Map<String, Value> = record.headers.iter().map(|(name, value)| (name.clone(), bytes_text(value))).collect();
    let value =
        record.value.as_ref().map_or(Value::Null, |bytes| serde_json::from_slice(bytes).unwrap_or_else(|_| bytes_text(&record.value)));
    json!({
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "key": bytes_text(&record.key),
        "headers": headers,
        "value": value,
    })
}

/// A record for people: where it is, when, its key and headers, then its value
/// (JSON pretty-printed).
fn record_text(record: &Record) -> String {
    let mut text = format!("{}/{}@{}", record.topic, record.partition.unwrap_or(-1), record.offset.unwrap_or(-1));
    if let Some(timestamp) = record.timestamp {
        text += &format!("  {}", format_rfc3339(timestamp));
    }
    if let Some(key) = &record.key {
        text += &format!("  key: {}", String::from_utf8_lossy(key));
    }
    for (name, value) in &record.headers {
        text += &format!("\n  {name}: {}", value.as_ref().map_or("(null)".into(), |value| String::from_utf8_lossy(value)));
    }
    let value = match &record.value {
        None => "(null)".to_owned(),
        Some(bytes) => match serde_json::from_slice::<Value>(bytes) {
            Ok(value) if value.is_object() || value.is_array() => serde_json::to_string_pretty(&value).expect("a JSON value"),
            _ => String::from_utf8_lossy(bytes).into_owned(),
        },
    };
    format!("{text}\n{value}")
}

/// What `topics write` writes.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// The topic.
    pub topic: String,
    /// Splits each line into key and value at its first occurrence.
    pub key_separator: Option<String>,
    /// Headers every record carries.
    pub headers: Vec<(String, String)>,
}

/// `topics write`: one record per non-empty line of `input`; returns how many were
/// written, each batch durable (acks=all, or committed to the embedded store) before
/// the next is read.
pub async fn write(transport: &dyn Transport, options: &WriteOptions, input: &mut dyn BufRead) -> anyhow::Result<usize> {
    // The rule the host applies to every connector's topics: a topic it would refuse
    // to use is never created.
    crate::config::check_topic_name(&options.topic).map_err(|problem| anyhow::anyhow!("cannot write: {problem}"))?;
    let existing = transport.describe_topics(Some(&options.topic)).await.context("cannot look for the topic")?;
    if existing.is_empty() {
        transport
            .ensure_topics(std::slice::from_ref(&options.topic))
            .await
            .with_context(|| format!("cannot create topic {}", options.topic))?;
    }
    let mut producer = transport.producer("wasm-connect-topic-tools").await?;
    let mut written = 0;
    let mut lines = input.lines();
    loop {
        let mut batch = Vec::new();
        for line in lines.by_ref() {
            let line = line.context("cannot read stdin")?;
            if line.is_empty() {
                continue;
            }
            batch.push(line_record(&line, options)?);
            if batch.len() == WRITE_BATCH {
                break;
            }
        }
        if batch.is_empty() {
            return Ok(written);
        }
        let count = batch.len();
        producer
            .send(batch, None)
            .await
            .with_context(|| format!("cannot write to topic {}; {written} records were written before", options.topic))?;
        written += count;
    }
}

fn line_record(line: &str, options: &WriteOptions) -> anyhow::Result<Record> {
    let (key, value) = match &options.key_separator {
        Some(separator) => match line.split_once(separator.as_str()) {
            Some((key, value)) => (Some(key.as_bytes().to_vec()), value),
            None => anyhow::bail!(
                "the line {line:?} has no key separator {separator:?}; write KEY{separator}VALUE, or leave out --key-separator"
            ),
        },
        None => (None, line),
    };
    let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis() as i64);
    Ok(Record {
        topic: options.topic.clone(),
        key,
        value: Some(value.as_bytes().to_vec()),
        timestamp: Some(timestamp),
        headers: options.headers.iter().map(|(name, value)| (name.clone(), Some(value.as_bytes().to_vec()))).collect(),
        ..Record::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            topic: "flights".into(),
            partition: Some(2),
            offset: Some(17),
            timestamp: Some(1_717_200_000_000),
            key: Some(b"4ca7b5".to_vec()),
            value: Some(br#"{"hex":"4ca7b5","alt":11000}"#.to_vec()),
            headers: vec![("source".into(), Some(b"sim".to_vec()))],
        }
    }

    #[test]
    fn records_show_where_when_key_headers_and_pretty_json() {
        assert_eq!(
            record_text(&record()),
            "flights/2@17  2024-06-01T00:00:00.000Z  key: 4ca7b5\n  source: sim\n{\n  \"hex\": \"4ca7b5\",\n  \"alt\": 11000\n}"
        );
        let plain = Record { value: Some(b"not json".to_vec()), key: None, headers: vec![], timestamp: None, ..record() };
        assert_eq!(record_text(&plain), "flights/2@17\nnot json");
    }

    #[test]
    fn json_records_parse_json_values_and_keep_other_values_as_text() {
        let shown = record_json(&record());
        assert_eq!(shown["value"]["alt"], 11000);
        assert_eq!(shown["key"], "4ca7b5");
        assert_eq!(shown["headers"]["source"], "sim");
        let plain = Record { value: Some(b"42 apples".to_vec()), key: None, ..record() };
        assert_eq!(record_json(&plain)["value"], "42 apples");
        assert_eq!(record_json(&plain)["key"], Value::Null);
    }

    #[test]
    fn lines_split_at_the_first_key_separator() {
        let options = WriteOptions { topic: "t".into(), key_separator: Some(":".into()), headers: vec![("h".into(), "v".into())] };
        let written = line_record("k1:{\"a\":\"b:c\"}", &options).unwrap();
        assert_eq!(written.key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(written.value.as_deref(), Some(&br#"{"a":"b:c"}"#[..]));
        assert_eq!(written.headers, vec![("h".to_owned(), Some(b"v".to_vec()))]);
        let error = line_record("no separator", &options).unwrap_err().to_string();
        assert!(error.contains("has no key separator"), "{error}");
    }
}
