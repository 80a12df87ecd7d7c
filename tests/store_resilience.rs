//! What happens to a store pipeline when things go wrong, through the real binary:
//! the host killed mid-stream, the store unreachable at start and cut off for 30 s
//! mid-stream, and a slow store beside a healthy pipeline. Elasticsearch-compatible
//! `osmem-server` is the store here (or `ES_URL`); the conformance suite covers each
//! store's own behaviour.

mod support;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use support::proxy::Proxy;
use support::topics::{self, create_elasticsearch_index, elasticsearch_documents};
use support::{Host, host_config, metric, services};
use wasm_connect_protocol::Record;

fn records(range: std::ops::Range<usize>) -> Vec<Record> {
    range
        .map(|n| Record {
            key: Some(format!("k{n}").into_bytes()),
            value: Some(serde_json::to_vec(&json!({"n": n, "payload": "x".repeat(150)})).unwrap()),
            timestamp: Some(1_705_312_800_000),
            ..Record::default()
        })
        .collect()
}

fn server_address(url: &str) -> SocketAddr {
    url.trim_start_matches("http://").to_socket_addrs().unwrap().next().unwrap()
}

/// A configuration with one Elasticsearch sink connector, `to-store`, reading `events`.
fn store_config(directory: &Path, url: &str, index: &str, extra_connectors: &str) -> std::path::PathBuf {
    host_config(
        directory,
        &format!(
            "  - name: to-store
    plugin: elasticsearch-sink
    topics: [events]
    tasks_max: 2
    batch_size: 200
    config:
      url: {url}
      index: {index}
      document_id: offset
{extra_connectors}"
        ),
    )
}

/// Every id the store should hold for `count` records fed to `events`: ids are
/// topic+partition+offset, so a record written twice could not hide as two documents.
fn expected_ids(data_dir: &Path) -> std::collections::BTreeSet<String> {
    topics::read(data_dir, "events")
        .iter()
        .map(|record| format!("events+{}+{}", record.partition.unwrap(), record.offset.unwrap()))
        .collect()
}

#[test]
fn killing_the_host_mid_stream_leaves_every_record_in_the_store_exactly_once() {
    let server = services::elasticsearch(if std::env::var_os("ES_URL").is_some() { "external" } else { "osmem" });
    let index = format!("crash-{}", std::process::id());
    create_elasticsearch_index(&server.url, &index);
    let directory = tempfile::tempdir().unwrap();
    let data_dir = directory.path().join("data");
    const TOTAL: usize = 20_000;
    topics::feed(&data_dir, "events", records(0..TOTAL));
    let config = store_config(directory.path(), &server.url, &index, "");

    let host = Host::start(&config);
    host.wait_until("a quarter of the records stored", Duration::from_secs(120), || {
        elasticsearch_documents(&server.url, &index).len() >= TOTAL / 4
    });
    host.kill();
    let at_kill = elasticsearch_documents(&server.url, &index).len();
    assert!(at_kill < TOTAL, "the host was killed before it finished ({at_kill} stored)");

    let host = Host::start(&config);
    host.wait_until("every record stored after the restart", Duration::from_secs(180), || {
        elasticsearch_documents(&server.url, &index).len() >= TOTAL
    });
    // Give a duplicate the time to appear, then compare the exact set of ids.
    std::thread::sleep(Duration::from_secs(1));
    let documents = elasticsearch_documents(&server.url, &index);
    assert_eq!(documents.len(), TOTAL, "count");
    let ids: std::collections::BTreeSet<String> = documents.keys().cloned().collect();
    assert_eq!(ids, expected_ids(&data_dir), "every record once, by id");
    let mut values: Vec<u64> = documents.values().map(|document| document["n"].as_u64().unwrap()).collect();
    values.sort_unstable();
    values.dedup();
    assert_eq!(values.len(), TOTAL, "every value once");
    host.stop();
}

#[test]
fn a_store_unreachable_at_start_and_cut_off_for_30_seconds_loses_nothing_and_recovers_alone() {
    let server = services::elasticsearch(if std::env::var_os("ES_URL").is_some() { "external" } else { "osmem" });
    let proxy = Proxy::start(server_address(&server.url), false);
    let proxied = format!("http://{}", proxy.address);
    let index = format!("outage-{}", std::process::id());
    create_elasticsearch_index(&server.url, &index);
    let directory = tempfile::tempdir().unwrap();
    let data_dir = directory.path().join("data");
    topics::feed(&data_dir, "events", records(0..2_000));
    let host = Host::start(&store_config(directory.path(), &proxied, &index, "    errors:\n      retry_timeout: 10m\n"));
    let status = |host: &Host| host.get_json("/connectors/to-store/status");
    let retrying = |host: &Host| {
        let metrics = host.get_text("/metrics");
        metric(&metrics, "wasm_connect_task_retrying", &[("connector", "to-store")]) >= 1.0
            && status(host)["tasks"].as_array().unwrap().iter().any(|task| {
                task["state"] == "RUNNING" && task["trace"].as_str().is_some_and(|trace| trace.contains("cannot reach Elasticsearch"))
            })
    };

    // Unreachable at start: reported, nothing written, nothing lost.
    host.wait_until("the outage at start shows in status and metrics", Duration::from_secs(60), || retrying(&host));
    assert!(metric(&host.get_text("/metrics"), "wasm_connect_write_retries_total", &[("connector", "to-store")]) >= 1.0);
    proxy.open();
    host.wait_until("the first records stored once the store is reachable", Duration::from_secs(60), || {
        elasticsearch_documents(&server.url, &index).len() == 2_000
    });
    host.wait_until("the status clears once the store is back", Duration::from_secs(30), || !retrying(&host));

    // Cut off for 30 s mid-stream, while records keep arriving.
    let rss_before = host.rss_bytes();
    proxy.close();
    let outage = Instant::now();
    let mut fed = 2_000;
    while outage.elapsed() < Duration::from_secs(30) {
        topics::feed(&data_dir, "events", records(fed..fed + 1_000));
        fed += 1_000;
        std::thread::sleep(Duration::from_secs(2));
    }
    assert!(retrying(&host), "the outage shows in status and metrics: {}", status(&host));
    let rss_during = host.rss_bytes();
    proxy.open();
    host.wait_until("every record stored after the outage", Duration::from_secs(120), || {
        elasticsearch_documents(&server.url, &index).len() >= fed
    });
    let documents = elasticsearch_documents(&server.url, &index);
    assert_eq!(documents.len(), fed);
    assert_eq!(documents.keys().cloned().collect::<std::collections::BTreeSet<_>>(), expected_ids(&data_dir));
    host.wait_until("the status clears after the outage", Duration::from_secs(30), || !retrying(&host));
    let growth = rss_during.saturating_sub(rss_before);
    eprintln!("RSS before the outage {} MiB, after 30 s of it {} MiB", rss_before >> 20, rss_during >> 20);
    assert!(growth < 64 << 20, "memory grew by {} MiB during the outage", growth >> 20);
    host.stop();
}

#[test]
fn a_slow_store_slows_only_its_own_connector() {
    const WINDOW: Duration = Duration::from_secs(10);
    const RATE: u64 = 2_000;
    let server = services::elasticsearch(if std::env::var_os("ES_URL").is_some() { "external" } else { "osmem" });
    let proxy = Proxy::start(server_address(&server.url), true);
    proxy.slow_down(Duration::from_millis(500));
    let healthy = |output: &Path| {
        format!(
            "  - name: healthy-source
    plugin: iot-sensor-simulator
    topic: sensors
    config:
      rate: {RATE}
  - name: healthy-sink
    plugin: file-sink
    topics: [sensors]
    config:
      directory: {}
",
            output.display()
        )
    };
    // The healthy pipeline's records per window: alone, then beside a slow store.
    let measure = |with_slow_store: bool| -> f64 {
        let directory = tempfile::tempdir().unwrap();
        let output = directory.path().join("out");
        let config = if with_slow_store {
            topics::feed(&directory.path().join("data"), "events", records(0..20_000));
            let index = format!("slow-{}", std::process::id());
            store_config(directory.path(), &format!("http://{}", proxy.address), &index, &healthy(&output))
        } else {
            host_config(directory.path(), &healthy(&output))
        };
        let host = Host::start(&config);
        let delivered =
            |host: &Host| metric(&host.get_text("/metrics"), "wasm_connect_records_written_total", &[("connector", "healthy-sink")]);
        host.wait_until("the healthy pipeline delivering", Duration::from_secs(30), || delivered(&host) > 0.0);
        std::thread::sleep(Duration::from_secs(2));
        let start = delivered(&host);
        std::thread::sleep(WINDOW);
        let count = delivered(&host) - start;
        if with_slow_store {
            let slow = metric(&host.get_text("/metrics"), "wasm_connect_records_written_total", &[("connector", "to-store")]);
            eprintln!("the slow store's connector delivered {slow} records meanwhile");
        }
        host.stop();
        count
    };
    let alone = measure(false);
    let beside = measure(true);
    eprintln!("healthy pipeline over {WINDOW:?}: {alone} records alone, {beside} beside a slow store");
    assert!(alone > 0.0);
    assert!(beside >= 0.9 * alone, "the healthy pipeline kept {:.0} % of its throughput", 100.0 * beside / alone);
}

#[test]
fn a_throttling_store_is_retried_until_it_accepts_and_nothing_is_lost() {
    let server = services::elasticsearch(if std::env::var_os("ES_URL").is_some() { "external" } else { "osmem" });
    let proxy = Proxy::start(server_address(&server.url), true);
    let index = format!("throttle-{}", std::process::id());
    create_elasticsearch_index(&server.url, &index);
    let directory = tempfile::tempdir().unwrap();
    let data_dir = directory.path().join("data");
    topics::feed(&data_dir, "events", records(0..1_000));
    let host = Host::start(&store_config(directory.path(), &format!("http://{}", proxy.address), &index, ""));
    host.wait_until("the first records stored", Duration::from_secs(60), || elasticsearch_documents(&server.url, &index).len() == 1_000);
    // Every attempt of the next requests is answered 429: more than the host's own
    // attempts per call, so the batch goes back to the worker and is retried there.
    proxy.throttle(8);
    topics::feed(&data_dir, "events", records(1_000..3_000));
    host.wait_until("every record stored once the store accepts again", Duration::from_secs(90), || {
        elasticsearch_documents(&server.url, &index).len() == 3_000
    });
    let metrics = host.get_text("/metrics");
    assert!(metric(&metrics, "wasm_connect_write_retries_total", &[("connector", "to-store")]) >= 1.0, "{metrics}");
    assert_eq!(metric(&metrics, "wasm_connect_records_dead_lettered_total", &[("connector", "to-store")]), 0.0);
    assert!(host.log().contains("(429)"), "the 429 answers are in the log");
    assert_eq!(
        elasticsearch_documents(&server.url, &index).keys().cloned().collect::<std::collections::BTreeSet<_>>(),
        expected_ids(&data_dir)
    );
    host.stop();
}
