//! `http-poll-source` against a local JSON API, timed: records per second with pages
//! of 1,000 items (every item new on every page, so each one is converted, keyed,
//! deduplicated and produced to the embedded topic), the host's CPU per 1,000 records,
//! and what an idle source costs while it waits for its next poll (CPU and memory).
//! The host runs in this process; the API server's threads are left out of the CPU
//! figures (they are named `api-server`). Prints the figures.
//!
//! `cargo bench -p wasm-connect-bench --bench api_sources`

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use wasm_connect_bench::{metric, repository, rss_mib, write_config};

const PAGE_ITEMS: u64 = 1_000;
const MEASURE: Duration = Duration::from_secs(10);

/// Serves `/items`: a page of 1,000 stations whose `t` is the request number, so
/// every item is new on every page. Returns the port and the request counter.
fn start_api() -> (u16, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(AtomicU64::new(0));
    let counter = requests.clone();
    std::thread::Builder::new()
        .name("api-server".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|read| read > 2) {
                    line.clear();
                }
                let page = counter.fetch_add(1, Ordering::SeqCst) + 1;
                let items: Vec<String> = (0..PAGE_ITEMS)
                    .map(|id| format!(r#"{{"station_id":{id},"stationCode":"{id:05}","num_bikes_available":{},"num_docks_available":{},"is_renting":1,"t":{page}}}"#, id % 17, id % 23))
                    .collect();
                let body = format!(r#"{{"ttl":60,"data":{{"stations":[{}]}}}}"#, items.join(","));
                let head = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(body.as_bytes());
            }
        })
        .unwrap();
    (port, requests)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// CPU time (user + system) of this process's threads, except the API server's.
fn host_cpu() -> Duration {
    let ticks_per_second = 100.0; // USER_HZ on Linux
    let mut ticks = 0u64;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
        let Some((name, rest)) = stat.split_once(" (").and_then(|(_, rest)| rest.rsplit_once(") ")) else { continue };
        if name.starts_with("api-server") {
            continue;
        }
        let fields: Vec<&str> = rest.split_whitespace().collect();
        ticks += fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0);
    }
    Duration::from_secs_f64(ticks as f64 / ticks_per_second)
}

fn config(directory: &Path, admin: u16, api: u16, interval: &str) -> PathBuf {
    let text = format!(
        "version: 1
data_dir: {}
admin: {{ listen: 127.0.0.1:{admin} }}
plugins: {{ dir: {} }}
connectors:
  - name: poll
    plugin: http-poll-source
    topic: stations
    batch_size: 1000
    config:
      base_url: http://127.0.0.1:{api}/items
      items_pointer: /data/stations
      key_field: station_id
      position_field: t
      interval: {interval}
",
        directory.join("data").display(),
        repository().join("plugins/dist").display()
    );
    write_config(directory, &text)
}

async fn run_host(config: &Path) -> (CancellationToken, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let loaded = wasm_connect::config::load(config).unwrap_or_else(|errors| panic!("{errors}"));
    let shutdown = CancellationToken::new();
    (shutdown.clone(), tokio::spawn(wasm_connect::run(loaded, shutdown)))
}

async fn wait_for(admin: u16, what: &str, condition: impl Fn(u16) -> bool + Send + Copy + 'static) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !tokio::task::spawn_blocking(move || condition(admin)).await.unwrap() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::main]
async fn main() {
    let (api, requests) = start_api();
    println!("http-poll-source against a local API, pages of {PAGE_ITEMS} items, embedded transport, {} s per figure", MEASURE.as_secs());

    // Throughput: polled as fast as the host goes.
    let directory = tempfile::tempdir().unwrap();
    let admin = free_port();
    let (shutdown, host) = run_host(&config(directory.path(), admin, api, "1ms")).await;
    wait_for(admin, "the first records", |admin| metric(admin, "wasm_connect_records_produced_total", "poll") >= 5_000.0).await;
    let (records_before, cpu_before, requests_before, started) =
        (metric(admin, "wasm_connect_records_produced_total", "poll"), host_cpu(), requests.load(Ordering::SeqCst), Instant::now());
    tokio::time::sleep(MEASURE).await;
    let records = metric(admin, "wasm_connect_records_produced_total", "poll") - records_before;
    let (cpu, elapsed) = (host_cpu() - cpu_before, started.elapsed());
    let pages = requests.load(Ordering::SeqCst) - requests_before;
    println!(
        "  busy: {:>9.0} records/s ({pages} pages), host CPU {:.2} ms per 1,000 records ({:.0} % of one core), RSS {:.0} MiB",
        records / elapsed.as_secs_f64(),
        cpu.as_secs_f64() * 1000.0 / (records / 1000.0),
        cpu.as_secs_f64() / elapsed.as_secs_f64() * 100.0,
        rss_mib()
    );
    shutdown.cancel();
    host.await.unwrap().unwrap();

    // Idle: one poll, then waiting for the next one an hour later.
    let directory = tempfile::tempdir().unwrap();
    let admin = free_port();
    let rss_before = rss_mib();
    let (shutdown, host) = run_host(&config(directory.path(), admin, api, "1h")).await;
    wait_for(admin, "the first page", |admin| metric(admin, "wasm_connect_records_produced_total", "poll") >= PAGE_ITEMS as f64).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (cpu_before, started) = (host_cpu(), Instant::now());
    tokio::time::sleep(MEASURE).await;
    let (cpu, elapsed) = (host_cpu() - cpu_before, started.elapsed());
    println!(
        "  idle: host CPU {:.3} % of one core, RSS {:.0} MiB ({:+.0} MiB for the host run), plugin memory {:.1} MiB",
        cpu.as_secs_f64() / elapsed.as_secs_f64() * 100.0,
        rss_mib(),
        rss_mib() - rss_before,
        metric(admin, "wasm_connect_plugin_memory_bytes", "poll") / 1_048_576.0
    );
    shutdown.cancel();
    host.await.unwrap().unwrap();
}
