//! The admin API under the attacks of the security issue, measured: resident memory
//! and the size of the answers while 16 clients send 1.9 MB configurations with
//! 80,000 unknown keys, and file descriptors, memory and the latency of an ordinary
//! request while 2,000 clients hold connections with half a request head. The host
//! runs in this process (so its RSS is this process's) with the default pipeline of
//! four simulators and the file sink. Then the throughput of a pipeline beside hostile
//! plugins (one flooding the log, one returning a batch larger than its memory
//! limit, one trapping) against the same pipeline alone. Prints the figures.
//!
//! `cargo bench -p wasm-connect-bench --bench attacks`

#[allow(dead_code)]
#[path = "../../../tests/support/services.rs"]
mod services;

use std::io::Write;
use std::net::TcpStream;

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use wasm_connect_bench::{pipeline_config, repository, rss_mib};

fn status_field(name: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|line| line.starts_with(name)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap()
}

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The median time of `count` `GET /connectors` requests.
fn request_latency(port: u16, count: usize) -> Duration {
    let mut times: Vec<Duration> = (0..count)
        .map(|_| {
            let started = Instant::now();
            let response = services::http_request("GET", &format!("http://127.0.0.1:{port}/connectors"), &[], b"");
            assert_eq!(response.status, 200);
            started.elapsed()
        })
        .collect();
    times.sort();
    times[count / 2]
}

fn main() {
    // Logs on, as an operator runs the host: a flood has somewhere to go.
    wasm_connect::telemetry::logging::init(&std::env::var("WASM_CONNECT_LOG").unwrap_or_else(|_| "info".to_owned()));
    let directory = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = pipeline_config(directory.path(), port);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let loaded = wasm_connect::config::load(&config).unwrap_or_else(|errors| panic!("{errors}"));
    let shutdown = CancellationToken::new();
    let host = runtime.spawn(wasm_connect::run(loaded, shutdown.clone()));
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(120), "the host did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(3));
    let idle_rss = rss_mib();
    let idle_latency = request_latency(port, 50);
    println!("idle: RSS {idle_rss:.0} MiB, GET /connectors median {:.2} ms", idle_latency.as_secs_f64() * 1e3);

    // Amplification: 16 clients, 10 bodies each, of 80,000 unknown keys.
    let mut config = String::from(r#"{"name": "many", "config": {"connector.class": "log-sink", "topics": "t""#);
    for index in 0..80_000 {
        config.push_str(&format!(r#", "unknown-key-{index:05}": "v""#));
    }
    config.push_str("}}");
    let body = std::sync::Arc::new(config);
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        std::thread::spawn(move || {
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                peak.fetch_max(status_field("VmRSS:"), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let started = Instant::now();
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let body = body.clone();
            std::thread::spawn(move || {
                (0..10)
                    .map(|_| {
                        let response = services::http_request(
                            "POST",
                            &format!("http://127.0.0.1:{port}/connectors"),
                            &[("Content-Type", "application/json")],
                            body.as_bytes(),
                        );
                        assert_eq!(response.status, 400, "{}", response.body);
                        response.body.len()
                    })
                    .max()
                    .unwrap()
            })
        })
        .collect();
    let largest_answer = clients.into_iter().map(|client| client.join().unwrap()).max().unwrap();
    let elapsed = started.elapsed();
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    println!(
        "amplification: 160 bodies of {:.2} MB (80,000 unknown keys) from 16 clients in {:.1} s; largest answer {largest_answer} bytes; \
         RSS peak {:.0} MiB (+{:.0} over idle), {:.0} MiB 2 s later",
        body.len() as f64 / 1e6,
        elapsed.as_secs_f64(),
        peak.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1024.0,
        peak.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1024.0 - idle_rss,
        rss_mib(),
    );

    // Slow clients: 2,000 connections with half a request head.
    let descriptors_before = open_descriptors();
    let address = format!("127.0.0.1:{port}");
    let slow: Vec<TcpStream> = (0..2_000)
        .filter_map(|_| {
            let mut stream = TcpStream::connect(&address).ok()?;
            stream.write_all(b"GET /connectors HTTP/1.1\r\nHost: localhost\r\nX-Slow: ").ok()?;
            Some(stream)
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    // This process holds the clients' 2,000 sockets too: count only the host's.
    let host_descriptors = open_descriptors() - descriptors_before - slow.len();
    let started = Instant::now();
    let response = services::http_request("GET", &format!("http://127.0.0.1:{port}/connectors"), &[], b"");
    let first_answer = started.elapsed();
    println!(
        "slow clients: {} connections with half a head; after 2 s the host holds {host_descriptors} more descriptors (max_connections 256); \
         RSS {:.0} MiB; an ordinary request answered {} in {:.2} s",
        slow.len(),
        rss_mib(),
        response.status,
        first_answer.as_secs_f64()
    );
    drop(slow);
    std::thread::sleep(Duration::from_secs(12));
    println!(
        "after the slow clients left: {} more descriptors than before, RSS {:.0} MiB, GET /connectors median {:.2} ms",
        open_descriptors().saturating_sub(descriptors_before),
        rss_mib(),
        request_latency(port, 50).as_secs_f64() * 1e3
    );
    shutdown.cancel();
    runtime.block_on(host).unwrap().unwrap();
    drop(runtime);

    let (alone, alone_later) = neighbour_throughput("");
    let scratch = tempfile::tempdir().unwrap();
    let mut hostile = ["log-flood", "big-batch", "trap"]
        .iter()
        .map(|behaviour| {
            format!(
                "  - name: hostile-{behaviour}\n    plugin: misbehaving-source\n    topic: hostile-{behaviour}\n    config: {{ behaviour: {behaviour}, good_polls: 1 }}\n"
            )
        })
        .collect::<String>();
    hostile.push_str(
        "  - name: hostile-liar\n    plugin: legacy-source\n    topic: hostile-liar\n    config: { count: 1000000, claim: 4294967295 }\n",
    );
    for call in ["size", "append-new-files"] {
        hostile.push_str(&format!(
            "  - name: hostile-{call}\n    plugin: hammering-sink\n    topics: [flights]\n    config: {{ call: {call}, directory: {} }}\n",
            scratch.path().join(call).display()
        ));
    }
    let (beside, beside_later) = neighbour_throughput(&hostile);
    println!(
        "neighbours: flight-simulator -> file sink alone {alone:.0} records/s; beside a log flood, a 60 MiB batch, a trapping plugin, \
         a batch claiming 2^32 - 1 records and two sinks calling the files capability in a tight loop {beside:.0} records/s ({:.0} %) \
         in the first 10 s, while every hostile task fails and restarts soonest; {alone_later:.0} vs {beside_later:.0} ({:.0} %) in the \
         20 s after, as their restart backoff grows",
        100.0 * beside / alone,
        100.0 * beside_later / alone_later
    );
}

/// Records per second the file sink writes from an unthrottled flight simulator over
/// 10 s (after 3 s of warm-up) and over the 20 s after, with `extra` connectors running
/// beside them.
fn neighbour_throughput(extra: &str) -> (f64, f64) {
    let directory = tempfile::tempdir().unwrap();
    let port = free_port();
    let output = tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempfile::tempdir().unwrap());
    let text = format!(
        "version: 1\ndata_dir: {}\nadmin:\n  listen: 127.0.0.1:{port}\nplugins:\n  dir: {}\nconnectors:\n  - name: flights\n    plugin: flight-simulator\n    topic: flights\n    config: {{ rate: 0 }}\n  - name: files\n    plugin: file-sink\n    topics: [flights]\n    config:\n      directory: {}\n{extra}",
        directory.path().join("data").display(),
        repository().join("plugins/test-dist").display(),
        output.path().display()
    );
    let config = directory.path().join("connectors.yaml");
    std::fs::write(&config, text).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let loaded = wasm_connect::config::load(&config).unwrap_or_else(|errors| panic!("{errors}"));
    let shutdown = CancellationToken::new();
    let host = runtime.spawn(wasm_connect::run(loaded, shutdown.clone()));
    let written = || {
        let response = services::http_request("GET", &format!("http://127.0.0.1:{port}/metrics"), &[], b"");
        response
            .body
            .lines()
            .filter(|line| line.starts_with("wasm_connect_records_written_total{") && line.contains("connector=\"files\""))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(120), "the host did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(3));
    let (before, since) = (written(), Instant::now());
    std::thread::sleep(Duration::from_secs(10));
    let (middle, between) = (written(), Instant::now());
    let first = (middle - before) / (between - since).as_secs_f64();
    std::thread::sleep(Duration::from_secs(20));
    let later = (written() - middle) / between.elapsed().as_secs_f64();
    shutdown.cancel();
    runtime.block_on(host).unwrap().unwrap();
    (first, later)
}
