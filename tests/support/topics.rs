//! Reading and writing the embedded transport's topics, or a Kafka cluster's, from a
//! test, as a source or a consumer beside the host would.

use std::path::Path;
use std::time::Duration;

use wasm_connect::transport::kafka::ClusterTopics;
use wasm_connect::transport::{EmbeddedTransport, KafkaTransport, StartAt, Transport};
use wasm_connect_protocol::Record;

/// A small runtime for the async calls of a test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Appends `records` to `topic` under `data_dir`, creating it if needed.
pub fn feed(data_dir: &Path, topic: &str, records: Vec<Record>) {
    runtime().block_on(async {
        let transport = EmbeddedTransport::open(data_dir, 4).unwrap();
        transport.ensure_topics(&[topic.to_owned()]).await.unwrap();
        let records = records.into_iter().map(|record| Record { topic: topic.into(), ..record }).collect();
        transport.producer("feeder").await.unwrap().send(records, None).await.unwrap();
    });
}

/// Every record of `topic` under `data_dir`.
pub fn read(data_dir: &Path, topic: &str) -> Vec<Record> {
    EmbeddedTransport::open(data_dir, 4).unwrap().read_all(topic).unwrap()
}

/// A client of the Kafka cluster at `bootstrap`, as the host's own.
pub fn kafka(bootstrap: &str) -> KafkaTransport {
    KafkaTransport::new(bootstrap, &Default::default(), ClusterTopics::named("test"))
}

/// Appends `records` to the existing Kafka `topic` (each to the partition of its key).
pub fn kafka_feed(bootstrap: &str, topic: &str, records: Vec<Record>) {
    runtime().block_on(async {
        let records = records.into_iter().map(|record| Record { topic: topic.into(), ..record }).collect();
        kafka(bootstrap).producer("feeder").await.unwrap().send(records, None).await.unwrap();
    });
}

/// Every committed record of the Kafka `topic` (none if it does not exist yet), as a
/// `read_committed` consumer downstream sees them.
pub fn kafka_read(bootstrap: &str, topic: &str) -> Vec<Record> {
    runtime().block_on(async {
        let Ok(mut reader) = kafka(bootstrap).reader(topic, None, StartAt::Beginning).await else { return Vec::new() };
        let (mut records, deadline) = (Vec::new(), std::time::Instant::now() + Duration::from_secs(60));
        while !reader.caught_up() {
            assert!(std::time::Instant::now() < deadline, "{topic} was not read to its end within 60 s");
            records.extend(reader.next(10_000, Duration::from_millis(500)).await.unwrap());
        }
        records
    })
}

/// Creates an Elasticsearch index that can be read whole by [`elasticsearch_documents`]
/// beyond 10,000 documents (`index.max_result_window`).
pub fn create_elasticsearch_index(url: &str, index: &str) {
    let (status, body) =
        super::services::http("PUT", &format!("{url}/{index}"), Some(r#"{"settings":{"index":{"max_result_window":1000000}}}"#));
    assert!(status == 200 || body.contains("resource_already_exists_exception"), "creating {index}: {status} {body}");
}

/// Every document of an Elasticsearch index, by id (refreshed first, so that servers
/// with refresh semantics show everything written). Beyond 10,000 documents the index
/// must come from [`create_elasticsearch_index`].
pub fn elasticsearch_documents(url: &str, index: &str) -> std::collections::BTreeMap<String, serde_json::Value> {
    let index_url = format!("{url}/{index}");
    super::services::http("POST", &format!("{index_url}/_refresh"), None);
    let mut size = 10_000;
    loop {
        let (status, body) = super::services::http("GET", &format!("{index_url}/_search?size={size}&track_total_hits=true"), None);
        if status == 404 {
            return Default::default();
        }
        let body: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|error| panic!("{url}: {error}: {body}"));
        let hits = body["hits"]["hits"].as_array().unwrap_or_else(|| panic!("{url}: no hits in {body}"));
        let total = body["hits"]["total"]["value"].as_u64().unwrap_or(0) as usize;
        if total > hits.len() && size < total {
            size = total;
            continue;
        }
        return hits.iter().map(|hit| (hit["_id"].as_str().unwrap().to_owned(), hit["_source"].clone())).collect();
    }
}
