//! The conformance suite every store sink passes, run through the real binary against
//! real protocol servers (see `support::services`): N records in, N documents out with
//! the right ids and fields; the same records replayed change nothing; tombstones
//! delete; poison records, and only those, reach the dead-letter topic with Kafka
//! Connect's headers. And the grant rule: a plugin reaches only the endpoints its
//! connector's configuration grants.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use support::services::{self, Server};
use support::topics::{self, runtime};
use support::{Host, host_config};
use wasm_connect_protocol::Record;

/// 2024-01-15T10:00:00Z: every record's time, so time-based index names are known.
const RECORD_TIME: i64 = 1_705_312_800_000;
const GOOD: usize = 200;
/// Where the poison records sit among the good ones.
const POISON_AT: [usize; 3] = [17, 99, 150];

/// A store as the suite sees it.
trait Store {
    /// The connector's plugin and its `config:` block (YAML, indented by 6).
    fn sink(&self) -> (&'static str, String);
    /// The poison values: documents the store (or the sink) must refuse.
    fn poison(&self) -> Vec<Vec<u8>>;
    /// Every document in the target, by id.
    fn documents(&self) -> BTreeMap<String, Value>;
}

fn good_value(n: usize) -> Value {
    json!({"n": n, "name": format!("item {n}"), "tags": ["a", "b"], "nested": {"even": n.is_multiple_of(2)}})
}

fn record(key: &str, value: Option<Vec<u8>>) -> Record {
    Record { key: Some(key.as_bytes().to_vec()), value, timestamp: Some(RECORD_TIME), ..Record::default() }
}

fn feed(data_dir: &Path, records: Vec<Record>) {
    topics::feed(data_dir, "events", records);
}

fn dead_letters(data_dir: &Path) -> Vec<Record> {
    topics::read(data_dir, "events-dlq")
}

fn header<'a>(record: &'a Record, name: &str) -> &'a str {
    let value = record.headers.iter().find(|(header, _)| header == name).and_then(|(_, value)| value.as_deref());
    std::str::from_utf8(value.unwrap_or_else(|| panic!("no header {name}"))).unwrap()
}

fn config(directory: &Path, store: &dyn Store) -> std::path::PathBuf {
    let (plugin, sink_config) = store.sink();
    host_config(
        directory,
        &format!(
            "  - name: to-store
    plugin: {plugin}
    topics: [events]
    batch_size: 64
    config:
{sink_config}
    errors:
      tolerance: all
      log: true
      dead_letter_topic: events-dlq
"
        ),
    )
}

fn conformance(store: &dyn Store) {
    let directory = tempfile::tempdir().unwrap();
    let data_dir = directory.path().join("data");
    let poison = store.poison();
    let mut records = Vec::new();
    let mut poison_values = Vec::new();
    for n in 0..GOOD {
        if let Some(which) = POISON_AT.iter().position(|at| *at == n) {
            records.push(record(&format!("poison{which}"), Some(poison[which].clone())));
            poison_values.push(poison[which].clone());
        }
        records.push(record(&format!("k{n}"), Some(serde_json::to_vec(&good_value(n)).unwrap())));
    }
    feed(&data_dir, records);
    let config = config(directory.path(), store);

    // N records in, N documents out, the poison ones dead-lettered.
    let host = Host::start(&config);
    host.wait_until("every good record stored and every poison one dead-lettered", Duration::from_secs(90), || {
        store.documents().len() == GOOD && dead_letters(&data_dir).len() == POISON_AT.len()
    });
    let documents = store.documents();
    for n in 0..GOOD {
        let document = &documents[&format!("k{n}")];
        for (field, expected) in good_value(n).as_object().unwrap() {
            assert_eq!(&document[field], expected, "document k{n}, field {field}: {document}");
        }
    }
    let letters = dead_letters(&data_dir);
    let mut refused: Vec<Vec<u8>> = letters.iter().map(|letter| letter.value.clone().unwrap()).collect();
    refused.sort();
    poison_values.sort();
    assert_eq!(refused, poison_values, "exactly the poison records are dead-lettered");
    for letter in &letters {
        assert!(header(letter, "__connect.errors.topic") == "events");
        assert!(header(letter, "__connect.errors.offset").parse::<i64>().unwrap() >= 0);
        assert_eq!(header(letter, "__connect.errors.stage"), "TASK_PUT");
        assert!(header(letter, "__connect.errors.class.name").starts_with(&format!("{}@", store.sink().0)));
        assert!(header(letter, "__connect.errors.exception.class.name").ends_with("bad-record"));
        assert!(!header(letter, "__connect.errors.exception.message").is_empty());
        assert!(letter.key.as_deref().unwrap().starts_with(b"poison"));
    }
    host.stop();

    // Replay every record from the start (as after a lost commit), plus tombstones.
    let connection = rusqlite::Connection::open(data_dir.join("topics.sqlite3")).unwrap();
    let reset = connection.execute("DELETE FROM consumer_offsets", []).unwrap();
    assert!(reset > 0, "the sink had committed offsets");
    drop(connection);
    feed(&data_dir, (0..10).map(|n| record(&format!("k{n}"), None)).collect());
    let host = Host::start(&config);
    host.wait_until("the replay and the tombstones are applied", Duration::from_secs(90), || {
        // Replayed poison records are dead-lettered again: proof the replay ran to the end.
        dead_letters(&data_dir).len() == 2 * POISON_AT.len() && store.documents().len() == GOOD - 10
    });
    let after = store.documents();
    let mut expected = documents.clone();
    expected.retain(|id, _| !(0..10).any(|n| *id == format!("k{n}")));
    assert_eq!(after, expected, "the replay changed nothing but what the tombstones deleted");
    host.stop();
}

struct Elasticsearch {
    server: Server,
}

impl Elasticsearch {
    const INDEX: &'static str = "events-2024.01.15";
}

impl Store for Elasticsearch {
    fn sink(&self) -> (&'static str, String) {
        (
            "elasticsearch-sink",
            format!(
                "      url: {}\n      index: \"{{topic}}-{{yyyy.MM.dd}}\"\n      bulk_max_actions: 25\n      mappings: '{{\"properties\":{{\"n\":{{\"type\":\"long\"}}}}}}'\n",
                self.server.url
            ),
        )
    }

    fn poison(&self) -> Vec<Vec<u8>> {
        // Two the index refuses (n is mapped as a number), one that is not JSON at all.
        vec![br#"{"n":"not a number"}"#.to_vec(), b"not json".to_vec(), br#"{"n":{"deep":true}}"#.to_vec()]
    }

    fn documents(&self) -> BTreeMap<String, Value> {
        topics::elasticsearch_documents(&self.server.url, Self::INDEX)
    }
}

#[test]
fn elasticsearch_sink_conformance() {
    for flavour in services::elasticsearch_servers() {
        let server = services::elasticsearch(flavour);
        if server.flavour == "external" {
            services::http("DELETE", &format!("{}/{}", server.url, Elasticsearch::INDEX), None);
        }
        conformance(&Elasticsearch { server });
    }
}

struct Mongodb {
    server: Server,
    database: String,
}

impl Store for Mongodb {
    fn sink(&self) -> (&'static str, String) {
        (
            "mongodb-sink",
            format!("      uri: \"{}\"\n      database: {}\n      collection: \"{{topic}}\"\n", self.server.url, self.database),
        )
    }

    fn poison(&self) -> Vec<Vec<u8>> {
        // Not JSON, not an object, and a field name MongoDB refuses to store.
        vec![b"not json".to_vec(), b"[1,2,3]".to_vec(), br#"{"$set":{"n":1}}"#.to_vec()]
    }

    fn documents(&self) -> BTreeMap<String, Value> {
        use futures::TryStreamExt;
        runtime().block_on(async {
            let client = mongodb::Client::with_uri_str(&self.server.url).await.unwrap();
            let collection = client.database(&self.database).collection::<mongodb::bson::Document>("events");
            let documents: Vec<mongodb::bson::Document> =
                collection.find(mongodb::bson::doc! {}).await.unwrap().try_collect().await.unwrap();
            documents
                .into_iter()
                .map(|document| {
                    let value = mongodb::bson::Bson::Document(document).into_relaxed_extjson();
                    (value["_id"].as_str().unwrap().to_owned(), value)
                })
                .collect()
        })
    }
}

#[test]
fn mongodb_sink_conformance() {
    let server = services::mongodb();
    let database = format!("conformance_{}", std::process::id());
    conformance(&Mongodb { server, database });
}

struct Cassandra {
    server: support::cql_server::CqlServer,
    keyspace: String,
}

impl Cassandra {
    async fn session(&self) -> scylla::client::session::Session {
        scylla::client::session_builder::SessionBuilder::new()
            .known_node(&self.server.contact_points)
            .auto_await_schema_agreement(false)
            .build()
            .await
            .unwrap()
    }

    fn create_keyspace(&self) {
        runtime().block_on(async {
            let statement = format!(
                "CREATE KEYSPACE IF NOT EXISTS {} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}",
                self.keyspace
            );
            self.session().await.query_unpaged(statement, ()).await.unwrap();
        });
    }
}

impl Store for Cassandra {
    fn sink(&self) -> (&'static str, String) {
        (
            "cassandra-sink",
            format!(
                "      contact_points: \"{}\"\n      keyspace: {}\n      table: events\n      create_table: true\n      consistency: one\n      \
                 columns: \"id=@key:text, n=n:bigint, name=name:text, tags=tags:list<text>, even=nested.even:boolean, at=@time:timestamp\"\n      \
                 partition_key: id\n",
                self.server.contact_points, self.keyspace
            ),
        )
    }

    fn poison(&self) -> Vec<Vec<u8>> {
        // Not JSON, a number column holding words, a boolean column holding a list.
        vec![b"not json".to_vec(), br#"{"n":"many"}"#.to_vec(), br#"{"n":1,"nested":{"even":[1]}}"#.to_vec()]
    }

    fn documents(&self) -> BTreeMap<String, Value> {
        runtime().block_on(async {
            let session = self.session().await;
            let statement = format!("SELECT id, n, name, tags, even FROM {}.events", self.keyspace);
            let Ok(result) = session.query_unpaged(statement, ()).await else { return BTreeMap::new() };
            let rows = result.into_rows_result().unwrap();
            rows.rows::<(String, Option<i64>, Option<String>, Option<Vec<String>>, Option<bool>)>()
                .unwrap()
                .map(|row| {
                    let (id, n, name, tags, even) = row.unwrap();
                    (id, json!({"n": n, "name": name, "tags": tags, "nested": {"even": even}}))
                })
                .collect()
        })
    }
}

#[test]
fn cassandra_sink_conformance() {
    let store = Cassandra { server: support::cql_server::start(), keyspace: format!("conformance_{}", std::process::id()) };
    store.create_keyspace();
    conformance(&store);
}

#[test]
fn a_plugin_reaches_only_the_endpoints_its_configuration_grants() {
    use wasm_connect::capabilities::Grants;
    use wasm_connect::runtime::{PluginCatalog, PluginFailure, Runtime, SinkInstance, TaskIdentity, TaskLimits};
    let runtime =
        Runtime::new(&support::shared_cache_dir(), TaskLimits { memory_bytes: 64 << 20, call_timeout: Duration::from_secs(30) }).unwrap();
    let (catalog, _) = PluginCatalog::load_dir(&runtime, &support::test_plugins_dir()).unwrap();
    let prober = catalog.find("endpoint-prober").unwrap();
    let granted_es = "http://127.0.0.1:1";
    let granted_mongo = "mongodb://127.0.0.1:1/?directConnection=true";
    let granted_cql = "127.0.0.1:1";
    let write = |reach: (&str, &str)| {
        let config: Vec<(String, String)> = [("url", granted_es), ("uri", granted_mongo), ("contact_points", granted_cql), reach]
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        let mut grants = Grants::default();
        for (option_type, value) in prober.description.grants(&config) {
            grants.add(option_type, value, |directory| directory.into());
        }
        let identity = TaskIdentity { connector: Arc::from("probe"), task: 0, plugin: Arc::from("endpoint-prober") };
        let mut sink = SinkInstance::new(&runtime, &prober, identity, grants).unwrap();
        sink.open(&config).unwrap();
        sink.write(wasm_connect_protocol::encode(&[Record::default()]))
    };
    for reach in [
        ("reach_elasticsearch", "http://127.0.0.1:9200"),
        ("reach_mongodb", "mongodb://127.0.0.1:27017"),
        ("reach_cassandra", "127.0.0.1:9042"),
        // The granted points plus one more are not the granted points.
        ("reach_cassandra", "127.0.0.1:1,127.0.0.1:9042"),
    ] {
        match write(reach) {
            Err(PluginFailure::BadConfig(message)) => assert!(message.contains("does not grant"), "{message}"),
            other => panic!("{reach:?} was not refused: {other:?}"),
        }
    }
    // The granted endpoints pass the grant check: they fail only because nothing listens there.
    for reach in [("reach_elasticsearch", granted_es), ("reach_mongodb", granted_mongo), ("reach_cassandra", granted_cql)] {
        match write(reach) {
            Err(PluginFailure::Retriable(message)) => assert!(message.contains("cannot"), "{message}"),
            other => panic!("{reach:?}: expected an unreachable store, got {other:?}"),
        }
    }
}

/// A sink component driven directly, without the host's worker: what the conformance
/// suite does not cover, each write model and operation.
struct DirectSink {
    instance: wasm_connect::runtime::SinkInstance,
    next_offset: i64,
    _runtime: wasm_connect::runtime::Runtime,
}

impl DirectSink {
    fn open(plugin: &str, config: &[(&str, &str)]) -> DirectSink {
        use wasm_connect::capabilities::Grants;
        use wasm_connect::runtime::{PluginCatalog, Runtime, SinkInstance, TaskIdentity, TaskLimits};
        let runtime =
            Runtime::new(&support::shared_cache_dir(), TaskLimits { memory_bytes: 64 << 20, call_timeout: Duration::from_secs(30) })
                .unwrap();
        let (catalog, _) = PluginCatalog::load_dir(&runtime, &support::test_plugins_dir()).unwrap();
        let loaded = catalog.find(plugin).unwrap();
        let config: Vec<(String, String)> = config.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect();
        assert_eq!(loaded.description.check_options(config.iter().map(|(key, value)| (key.as_str(), value.as_str()))), Vec::new());
        let mut grants = Grants::default();
        for (option_type, value) in loaded.description.grants(&config) {
            grants.add(option_type, value, |directory| directory.into());
        }
        let identity = TaskIdentity { connector: Arc::from("direct"), task: 0, plugin: Arc::from(plugin) };
        let mut instance = SinkInstance::new(&runtime, &loaded, identity, grants).unwrap();
        instance.open(&config).unwrap();
        DirectSink { instance, next_offset: 0, _runtime: runtime }
    }

    /// Writes keyed JSON values (none: a tombstone) as one batch.
    fn write(&mut self, records: &[(Option<&str>, Option<Value>)]) {
        let batch: Vec<Record> = records
            .iter()
            .map(|(key, value)| {
                self.next_offset += 1;
                Record {
                    topic: "direct".into(),
                    partition: Some(0),
                    offset: Some(self.next_offset),
                    timestamp: Some(RECORD_TIME),
                    key: key.map(|key| key.as_bytes().to_vec()),
                    value: value.as_ref().map(|value| serde_json::to_vec(value).unwrap()),
                    headers: Vec::new(),
                }
            })
            .collect();
        self.instance.write(wasm_connect_protocol::encode(&batch)).unwrap();
    }
}

fn mongodb_documents(uri: &str, database: &str, collection: &str) -> Vec<Value> {
    use futures::TryStreamExt;
    runtime().block_on(async {
        let client = mongodb::Client::with_uri_str(uri).await.unwrap();
        let documents: Vec<mongodb::bson::Document> = client
            .database(database)
            .collection::<mongodb::bson::Document>(collection)
            .find(mongodb::bson::doc! {})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        documents.into_iter().map(|document| mongodb::bson::Bson::Document(document).into_relaxed_extjson()).collect()
    })
}

#[test]
fn mongodb_sink_write_models_and_indexes() {
    let server = services::mongodb();
    let database = format!("models_{}", std::process::id());
    let uri = server.url.as_str();
    let strip = |mut document: Value| {
        document.as_object_mut().unwrap().remove("record_time");
        document
    };

    // insert: a duplicate key counts as already written; the first document stays.
    let mut sink =
        DirectSink::open("mongodb-sink", &[("uri", uri), ("database", &database), ("collection", "inserted"), ("write_model", "insert")]);
    sink.write(&[(Some("k1"), Some(json!({"v": 1})))]);
    sink.write(&[(Some("k1"), Some(json!({"v": 2}))), (Some("k2"), Some(json!({"v": 3})))]);
    let documents = mongodb_documents(uri, &database, "inserted");
    assert_eq!(documents, vec![json!({"_id": "k1", "v": 1}), json!({"_id": "k2", "v": 3})]);

    // update: fields are set on the existing document, others kept.
    let mut sink =
        DirectSink::open("mongodb-sink", &[("uri", uri), ("database", &database), ("collection", "updated"), ("write_model", "update")]);
    sink.write(&[(Some("k1"), Some(json!({"a": 1, "b": 1})))]);
    sink.write(&[(Some("k1"), Some(json!({"b": 2, "c": 3})))]);
    assert_eq!(mongodb_documents(uri, &database, "updated"), vec![json!({"_id": "k1", "a": 1, "b": 2, "c": 3})]);

    // replace_by_business_key: one document per (flight, day), the last one wins.
    let mut sink = DirectSink::open(
        "mongodb-sink",
        &[
            ("uri", uri),
            ("database", &database),
            ("collection", "flights"),
            ("write_model", "replace_by_business_key"),
            ("business_key", "flight,day"),
        ],
    );
    sink.write(&[(None, Some(json!({"flight": "AF1", "day": "d1", "v": 1}))), (None, Some(json!({"flight": "AF1", "day": "d2", "v": 1})))]);
    sink.write(&[(None, Some(json!({"flight": "AF1", "day": "d1", "v": 2})))]);
    let mut documents: Vec<Value> = mongodb_documents(uri, &database, "flights")
        .into_iter()
        .map(|mut document| {
            document.as_object_mut().unwrap().remove("_id");
            document
        })
        .collect();
    documents.sort_by_key(|document| document["day"].to_string());
    assert_eq!(documents, vec![json!({"flight": "AF1", "day": "d1", "v": 2}), json!({"flight": "AF1", "day": "d2", "v": 1})]);

    // ttl and unique_index: the indexes exist once the task opened; documents carry
    // the record time as a date.
    let mut sink = DirectSink::open(
        "mongodb-sink",
        &[("uri", uri), ("database", &database), ("collection", "expiring"), ("ttl", "1h"), ("unique_index", "email")],
    );
    sink.write(&[(Some("k1"), Some(json!({"email": "a@example.com"})))]);
    let documents = mongodb_documents(uri, &database, "expiring");
    assert_eq!(documents[0]["record_time"], json!({"$date": "2024-01-15T10:00:00Z"}));
    assert_eq!(strip(documents[0].clone()), json!({"_id": "k1", "email": "a@example.com"}));
    let indexes: Vec<mongodb::bson::Document> = runtime().block_on(async {
        use futures::TryStreamExt;
        let client = mongodb::Client::with_uri_str(uri).await.unwrap();
        let collection = client.database(&database).collection::<mongodb::bson::Document>("expiring");
        let cursor = collection.list_indexes().await.unwrap();
        cursor.try_collect::<Vec<_>>().await.unwrap().into_iter().map(|model| mongodb::bson::to_document(&model).unwrap()).collect()
    });
    let ttl = indexes.iter().find(|index| index.get_document("key").is_ok_and(|key| key.contains_key("record_time"))).expect("a TTL index");
    assert_eq!(
        ttl.get_document("options")
            .map(|options| options.get("expireAfterSeconds").cloned())
            .ok()
            .flatten()
            .or_else(|| ttl.get("expireAfterSeconds").cloned())
            .and_then(|seconds| seconds.as_i64().or(seconds.as_i32().map(i64::from))),
        Some(3600),
        "{ttl}"
    );
    let unique = indexes.iter().find(|index| index.get_document("key").is_ok_and(|key| key.contains_key("email"))).expect("a unique index");
    let unique_flag =
        unique.get_document("options").ok().and_then(|options| options.get_bool("unique").ok()).or_else(|| unique.get_bool("unique").ok());
    assert_eq!(unique_flag, Some(true), "{unique}");
}

#[test]
fn elasticsearch_sink_operations_and_ids() {
    let server = services::elasticsearch(if std::env::var_os("ES_URL").is_some() { "external" } else { "osmem" });
    let url = server.url.as_str();
    let index = |name: &str| format!("ops-{name}-{}", std::process::id());

    // create keeps the first document; a second create of the id counts as written.
    let mut sink = DirectSink::open("elasticsearch-sink", &[("url", url), ("index", &index("create")), ("operation", "create")]);
    sink.write(&[(Some("k1"), Some(json!({"v": 1})))]);
    sink.write(&[(Some("k1"), Some(json!({"v": 2})))]);
    assert_eq!(topics::elasticsearch_documents(url, &index("create")), BTreeMap::from([("k1".to_owned(), json!({"v": 1}))]));

    // upsert merges fields into the existing document.
    let mut sink = DirectSink::open("elasticsearch-sink", &[("url", url), ("index", &index("upsert")), ("operation", "upsert")]);
    sink.write(&[(Some("k1"), Some(json!({"a": 1, "b": 1})))]);
    sink.write(&[(Some("k1"), Some(json!({"b": 2, "c": 3})))]);
    assert_eq!(
        topics::elasticsearch_documents(url, &index("upsert")),
        BTreeMap::from([("k1".to_owned(), json!({"a": 1, "b": 2, "c": 3}))])
    );

    // field: ids come from the value; a tombstone with such ids cannot address anything.
    let mut sink =
        DirectSink::open("elasticsearch-sink", &[("url", url), ("index", &index("field")), ("document_id", "field:flight.icao")]);
    sink.write(&[(None, Some(json!({"flight": {"icao": "AFR12"}}))), (None, Some(json!({"flight": {"icao": "BAW9"}})))]);
    let ids: Vec<String> = topics::elasticsearch_documents(url, &index("field")).into_keys().collect();
    assert_eq!(ids, vec!["AFR12", "BAW9"]);

    // none: the store picks ids, so the same record twice is two documents.
    let mut sink = DirectSink::open("elasticsearch-sink", &[("url", url), ("index", &index("none")), ("document_id", "none")]);
    sink.write(&[(Some("k1"), Some(json!({"v": 1})))]);
    sink.write(&[(Some("k1"), Some(json!({"v": 1})))]);
    assert_eq!(topics::elasticsearch_documents(url, &index("none")).len(), 2);
}
