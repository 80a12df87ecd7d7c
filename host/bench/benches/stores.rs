//! Each store sink end to end (embedded topic -> sink component -> host client ->
//! test server) against a native program that does the same work with the same
//! client crate: reads the same topic in batches of the same size, sends the same
//! documents the same way (Elasticsearch bulk `index` by key; MongoDB unordered
//! `update` upserts by `_id`; CQL prepared inserts, one unlogged batch per partition),
//! against the same server. Prints records/s for both and their ratio.
//!
//! `cargo bench -p wasm-connect-bench --bench stores [-- RECORDS]`. The servers are
//! the ones the tests use (noida-db, SecantusDB, kassandra), installed on first
//! use; `ES_URL`, `MONGO_URI` and `CASSANDRA_CONTACT_POINTS` select real ones.

#[allow(dead_code)]
#[path = "../../../tests/support/services.rs"]
mod services;

#[allow(dead_code)]
#[path = "../../../tests/support/cql_server.rs"]
mod cql_server;

use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use wasm_connect::transport::{EmbeddedTransport, TaskShare, Transport, next_offsets};
use wasm_connect_bench::sample_records;
use wasm_connect_protocol::Record;

const BATCH: usize = 500;

/// A data directory whose `flights` topic holds `count` records.
async fn topic_with(count: usize) -> tempfile::TempDir {
    let directory = tempfile::tempdir().unwrap();
    let transport = EmbeddedTransport::open(directory.path(), 4).unwrap();
    transport.ensure_topics(&["flights".to_owned()]).await.unwrap();
    let mut producer = transport.producer("bench-feeder").await.unwrap();
    for chunk in sample_records(count).chunks(5_000) {
        producer.send(chunk.to_vec(), None).await.unwrap();
    }
    directory
}

/// Runs the host on `data_dir` with one sink connector and returns its records/s,
/// from its first acknowledged batch to its last.
async fn connector(data_dir: &Path, count: usize, plugin: &str, config: &str) -> f64 {
    let port = services::free_port();
    let plugins = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/dist");
    let yaml = format!(
        "version: 1\ndata_dir: {}\nadmin:\n  listen: 127.0.0.1:{port}\nplugins:\n  dir: {}\n  call_timeout: 60s\nconnectors:\n  - name: bench\n    plugin: {plugin}\n    topics: [flights]\n    batch_size: {BATCH}\n    config:\n{config}",
        data_dir.display(),
        plugins.display()
    );
    let file = data_dir.join("connectors.yaml");
    std::fs::write(&file, yaml).unwrap();
    let loaded = wasm_connect::config::load(&file).unwrap_or_else(|errors| panic!("{errors}"));
    let shutdown = CancellationToken::new();
    let host = tokio::spawn(wasm_connect::run(loaded, shutdown.clone()));
    let delivered = || async move {
        let metrics =
            tokio::task::spawn_blocking(move || services::http("GET", &format!("http://127.0.0.1:{port}/metrics"), None)).await.unwrap();
        metrics
            .1
            .lines()
            .filter(|line| line.starts_with("wasm_connect_records_written_total{"))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut first: Option<(Instant, f64)> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let done = if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() { delivered().await } else { 0.0 };
        if first.is_none() && done > 0.0 {
            first = Some((Instant::now(), done));
        }
        if done >= count as f64 {
            break;
        }
        assert!(Instant::now() < deadline, "the connector delivered {done} of {count} records in 10 minutes");
    }
    let (started, at_start) = first.expect("some records were delivered");
    let rate = (count as f64 - at_start) / started.elapsed().as_secs_f64();
    shutdown.cancel();
    host.await.unwrap().unwrap();
    rate
}

/// Reads the topic in batches like a sink task and hands each batch to `send`;
/// returns records/s from the first batch sent to the last.
async fn native<F, Fut>(data_dir: &Path, count: usize, mut send: F) -> f64
where
    F: FnMut(Vec<Record>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let transport = EmbeddedTransport::open(data_dir, 4).unwrap();
    let mut consumer = transport.consumer("native", &["flights".to_owned()], TaskShare { task: 0, tasks: 1 }).await.unwrap();
    let mut done = 0;
    let mut started = None;
    while done < count {
        let batch = consumer.poll(BATCH, Duration::from_millis(500)).await.unwrap();
        started.get_or_insert_with(Instant::now);
        done += batch.len();
        let next = next_offsets(&batch);
        send(batch).await;
        consumer.commit(&next).await.unwrap();
    }
    count as f64 / started.unwrap().elapsed().as_secs_f64()
}

async fn elasticsearch(count: usize) -> (f64, f64) {
    // noida-db indexes several times faster than osmem-server here, so the clients'
    // own costs show more.
    let server = services::elasticsearch(if std::env::var_os("ES_URL").is_some() { "external" } else { "noida" });
    let data = topic_with(count).await;
    let component =
        connector(data.path(), count, "elasticsearch-sink", &format!("      url: {}\n      index: bench-component\n", server.url)).await;
    let url = elasticsearch::http::Url::parse(&server.url).unwrap();
    let pool = elasticsearch::http::transport::SingleNodeConnectionPool::new(url);
    let client = elasticsearch::Elasticsearch::new(elasticsearch::http::transport::TransportBuilder::new(pool).build().unwrap());
    let data = topic_with(count).await;
    let native = native(data.path(), count, |batch| {
        let client = client.clone();
        async move {
            let mut lines: Vec<Vec<u8>> = Vec::with_capacity(batch.len() * 2);
            for record in &batch {
                let id = String::from_utf8_lossy(record.key.as_deref().unwrap()).into_owned();
                lines.push(serde_json::to_vec(&serde_json::json!({"index": {"_index": "bench-native", "_id": id}})).unwrap());
                lines.push(record.value.clone().unwrap());
            }
            let response = client.bulk(elasticsearch::BulkParts::None).body(lines).send().await.unwrap();
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["errors"], false, "{body}");
        }
    })
    .await;
    (component, native)
}

async fn mongodb(count: usize) -> (f64, f64) {
    use mongodb::bson::{Bson, Document, doc};
    let server = services::mongodb();
    let data = topic_with(count).await;
    let component = connector(
        data.path(),
        count,
        "mongodb-sink",
        &format!("      uri: \"{}\"\n      database: bench\n      collection: component\n", server.url),
    )
    .await;
    let client = mongodb::Client::with_uri_str(&server.url).await.unwrap();
    let database = client.database("bench");
    let data = topic_with(count).await;
    let native = native(data.path(), count, |batch| {
        let database = database.clone();
        async move {
            let updates: Vec<Bson> = batch
                .iter()
                .map(|record| {
                    let id = String::from_utf8_lossy(record.key.as_deref().unwrap()).into_owned();
                    let value: serde_json::Value = serde_json::from_slice(record.value.as_deref().unwrap()).unwrap();
                    let Bson::Document(mut document) = Bson::try_from(value).unwrap() else { unreachable!() };
                    document.insert("_id", id.clone());
                    Bson::Document(doc! { "q": { "_id": id }, "u": document, "upsert": true })
                })
                .collect();
            let reply: Document = database.run_command(doc! { "update": "native", "updates": updates, "ordered": false }).await.unwrap();
            assert!(reply.get_array("writeErrors").is_err(), "{reply}");
        }
    })
    .await;
    (component, native)
}

async fn cassandra(count: usize) -> (f64, f64) {
    use scylla::statement::batch::{Batch, BatchType};
    let server = cql_server::start();
    let session = scylla::client::session_builder::SessionBuilder::new()
        .known_node(&server.contact_points)
        .auto_await_schema_agreement(false)
        .build()
        .await
        .unwrap();
    session
        .query_unpaged("CREATE KEYSPACE IF NOT EXISTS bench WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}", ())
        .await
        .unwrap();
    let columns = "hex=hex:text, lat=lat:double, lng=lng:double, alt=alt:bigint, flight=flight_icao:text, at=@time:timestamp";
    let data = topic_with(count).await;
    let component = connector(
        data.path(),
        count,
        "cassandra-sink",
        &format!(
            "      contact_points: \"{}\"\n      keyspace: bench\n      table: component\n      create_table: true\n      consistency: one\n      columns: \"id=@key:text, {columns}\"\n      partition_key: id\n",
            server.contact_points
        ),
    )
    .await;
    session
        .query_unpaged("CREATE TABLE IF NOT EXISTS bench.native (id text, hex text, lat double, lng double, alt bigint, flight text, at timestamp, PRIMARY KEY ((id)))", ())
        .await
        .unwrap();
    let insert =
        session.prepare("INSERT INTO bench.native (id, hex, lat, lng, alt, flight, at) VALUES (?, ?, ?, ?, ?, ?, ?)").await.unwrap();
    let data = topic_with(count).await;
    let native = native(data.path(), count, |batch| {
        let (session, insert) = (&session, &insert);
        async move {
            // One unlogged batch per partition key, as the connector does; keys are unique here.
            futures::stream::iter(batch)
                .map(|record| async move {
                    let value: serde_json::Value = serde_json::from_slice(record.value.as_deref().unwrap()).unwrap();
                    let row = (
                        String::from_utf8_lossy(record.key.as_deref().unwrap()).into_owned(),
                        value["hex"].as_str().unwrap().to_owned(),
                        value["lat"].as_f64().unwrap(),
                        value["lng"].as_f64().unwrap(),
                        value["alt"].as_i64().unwrap(),
                        value["flight_icao"].as_str().unwrap().to_owned(),
                        scylla::value::CqlTimestamp(record.timestamp.unwrap()),
                    );
                    let mut one = Batch::new(BatchType::Unlogged);
                    one.append_statement(insert.clone());
                    one.set_timestamp(Some(record.timestamp.unwrap() * 1000));
                    session.batch(&one, (row,)).await.unwrap();
                })
                .buffer_unordered(16)
                .collect::<Vec<()>>()
                .await;
        }
    })
    .await;
    (component, native)
}

fn main() {
    let count: usize = std::env::args().skip(1).find_map(|argument| argument.parse().ok()).unwrap_or(20_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    println!("{count} records of ~230 B, batches of {BATCH}; records/s, connector vs native client");
    println!("| store | connector | native | connector / native |");
    println!("|---|---:|---:|---:|");
    for (store, (component, native)) in [
        ("Elasticsearch (noida-db)", runtime.block_on(elasticsearch(count))),
        ("MongoDB (SecantusDB)", runtime.block_on(mongodb(count))),
        ("Cassandra (kassandra)", runtime.block_on(cassandra(count))),
    ] {
        println!("| {store} | {component:.0} | {native:.0} | {:.0} % |", 100.0 * component / native);
    }
}
