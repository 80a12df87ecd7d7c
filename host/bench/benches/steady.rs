//! What a host costs while it runs, measured on the release binary in its own process
//! (`target/release/wasm-connect`, built first), components from a compiled cache
//! warmed before any figure is taken:
//! - **latency**: `flight-simulator` at a steady 10,000 records/s -> the embedded
//!   `flights` topic -> `file-sink`; the end-to-end latency (a record's timestamp to its
//!   sink's acknowledgement) over 30 s, p50 / p99 / p99.9 from the host's histogram
//!   `wasm_connect_end_to_end_latency_seconds`, and the host's CPU;
//! - **memory**: the default pipeline (`connectors.yaml`) with every simulator at full
//!   speed, and 100 connectors at rest (50 sensor simulators at 1 record/s, each into a
//!   topic of its own read by one of 50 sinks): the host's resident memory, the largest
//!   of samples taken every 250 ms after a warm-up, and its peak (`VmHWM`).
//!
//! `cargo bench -p wasm-connect-bench --bench steady [-- latency|memory]`

#[allow(dead_code)]
#[path = "../../../tests/support/services.rs"]
mod services;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wasm_connect_bench::{HostProcess, binary, http_get, pipeline_config, repository, write_config};

const RATE: u32 = 10_000;
const LATENCY_WARM_UP: Duration = Duration::from_secs(10);
const LATENCY_SPAN: Duration = Duration::from_secs(30);
const MEMORY_WARM_UP: Duration = Duration::from_secs(10);
const MEMORY_SPAN: Duration = Duration::from_secs(30);

/// The latency pipeline, its admin API on `port`.
fn latency_config(directory: &Path, port: u16) -> PathBuf {
    let text = format!(
        "version: 1\ndata_dir: {data}\nadmin:\n  listen: 127.0.0.1:{port}\nplugins:\n  dir: {plugins}\nconnectors:\n\
         \x20 - name: flights-sim\n    plugin: flight-simulator\n    topic: flights\n    config:\n      flights: 2000\n      rate: {RATE}\n      seed: 7\n\
         \x20 - name: flights-to-files\n    plugin: file-sink\n    topics: [flights]\n    config:\n      directory: {output}\n      max_file_bytes: 1073741824\n",
        data = directory.join("data").display(),
        plugins = repository().join("plugins/dist").display(),
        output = directory.join("output").display(),
    );
    write_config(directory, &text)
}

/// The cumulative bucket counts of `connector`'s end-to-end latency histogram, summed
/// over its tasks, by upper bound in seconds.
fn latency_buckets(port: u16, connector: &str) -> BTreeMap<u64, f64> {
    let mut buckets = BTreeMap::new();
    for line in http_get(port, "/metrics").lines() {
        let Some(labels) = line.strip_prefix("wasm_connect_end_to_end_latency_seconds_bucket{") else { continue };
        if !labels.contains(&format!("connector=\"{connector}\"")) {
            continue;
        }
        let Some((labels, count)) = labels.rsplit_once("} ") else { continue };
        let Some((_, bound)) = labels.split_once("le=\"") else { continue };
        let bound = bound.split('"').next().unwrap_or_default();
        let bound = if bound == "+Inf" { f64::INFINITY } else { bound.parse().unwrap() };
        // Keyed by the bound's bits: positive floats order as their bits do.
        *buckets.entry(bound.to_bits()).or_default() += count.trim().parse::<f64>().unwrap();
    }
    buckets
}

/// The `quantile` of the observations between two snapshots of cumulative buckets, as
/// Prometheus' `histogram_quantile` reads it (linear within the bucket it falls in);
/// with the bucket's bounds.
fn quantile(before: &BTreeMap<u64, f64>, after: &BTreeMap<u64, f64>, quantile: f64) -> (f64, f64, f64) {
    let counts: Vec<(f64, f64)> =
        after.iter().map(|(bound, count)| (f64::from_bits(*bound), count - before.get(bound).copied().unwrap_or(0.0))).collect();
    let total = counts.last().map_or(0.0, |(_, count)| *count);
    let rank = quantile * total;
    let mut lower = (0.0, 0.0);
    for (bound, count) in counts {
        if count >= rank {
            let within = if count > lower.1 { (rank - lower.1) / (count - lower.1) } else { 0.0 };
            let estimate = if bound.is_finite() { lower.0 + (bound - lower.0) * within } else { lower.0 };
            return (estimate, lower.0, bound);
        }
        lower = (bound, count);
    }
    (f64::NAN, f64::NAN, f64::NAN)
}

fn latency(directory: &Path) {
    let port = services::free_port();
    let host = HostProcess::start(&latency_config(directory, port));
    std::thread::sleep(LATENCY_WARM_UP);
    let before = latency_buckets(port, "flights-to-files");
    let cpu_before = host.cpu_time();
    std::thread::sleep(LATENCY_SPAN);
    let after = latency_buckets(port, "flights-to-files");
    let cpu = host.cpu_time().saturating_sub(cpu_before).as_secs_f64() / LATENCY_SPAN.as_secs_f64();
    let rss = host.rss_mib();
    host.stop();
    let observed = after.values().last().copied().unwrap_or(0.0) - before.values().last().copied().unwrap_or(0.0);
    assert!(observed > 0.0, "no latency observed; see {}", directory.join("host.log").display());
    println!(
        "flight-simulator at {RATE} records/s -> embedded topic -> file-sink, {} s after {} s:",
        LATENCY_SPAN.as_secs(),
        LATENCY_WARM_UP.as_secs()
    );
    println!(
        "  {observed:.0} records acknowledged ({:.0}/s), host CPU {:.1} % of a core, RSS {rss:.0} MiB",
        observed / LATENCY_SPAN.as_secs_f64(),
        cpu * 100.0
    );
    for level in [0.5, 0.99, 0.999] {
        let (estimate, low, high) = quantile(&before, &after, level);
        println!("  p{:<5} {:>6.1} ms (in the bucket {:.1} to {:.1} ms)", level * 100.0, estimate * 1e3, low * 1e3, high * 1e3);
    }
}

/// Runs `config` and prints the host's resident memory after the warm-up: the largest
/// of the samples, and the peak since it started.
fn memory(what: &str, config: &Path) {
    let host = HostProcess::start(config);
    std::thread::sleep(MEMORY_WARM_UP);
    let started = Instant::now();
    let mut largest: f64 = 0.0;
    while started.elapsed() < MEMORY_SPAN {
        largest = largest.max(host.rss_mib());
        std::thread::sleep(Duration::from_millis(250));
    }
    let peak = host.peak_rss_mib();
    assert!(largest > 0.0, "{what}: the host stopped; see {}", config.with_file_name("host.log").display());
    host.stop();
    println!("  {what:<62} RSS {largest:>5.1} MiB (peak since start {peak:.1} MiB)");
}

/// The shipped default pipeline with every simulator producing as fast as the host polls.
fn full_speed_default_pipeline(directory: &Path) -> PathBuf {
    let config = pipeline_config(directory, services::free_port());
    let text = std::fs::read_to_string(&config).unwrap();
    let mut full_speed = String::new();
    for line in text.lines() {
        let setting = line.trim_start();
        let indent = &line[..line.len() - setting.len()];
        if setting.starts_with("interval:") || setting.starts_with("rate:") {
            full_speed += &format!("{indent}rate: 0\n");
        } else {
            full_speed += &format!("{line}\n");
        }
    }
    assert_eq!(full_speed.matches("rate: 0").count(), 4, "the default pipeline has four simulators:\n{text}");
    write_config(directory, &full_speed)
}

/// 50 sensor simulators at 1 record/s, each into its own topic, and 50 sinks that count.
fn hundred_connectors(directory: &Path) -> PathBuf {
    let mut text = format!(
        "version: 1\ndata_dir: {}\nadmin:\n  listen: 127.0.0.1:{}\nplugins:\n  dir: {}\nconnectors:",
        directory.join("data").display(),
        services::free_port(),
        repository().join("plugins/test-dist").display(),
    );
    for n in 0..50 {
        text += &format!(
            "\n  - {{ name: sensors-{n}, plugin: iot-sensor-simulator, topic: t{n}, config: {{ rate: 1 }} }}\n  - {{ name: sink-{n}, plugin: counting-sink, topics: [t{n}] }}"
        );
    }
    write_config(directory, &(text + "\n"))
}

fn main() {
    let only = std::env::args().skip(1).find(|arg| arg == "latency" || arg == "memory");
    // One compiled cache for every host here, filled by `validate` first: no figure
    // includes Cranelift (a host compiles once, then reloads from its cache).
    let cache = tempfile::tempdir().unwrap();
    // SAFETY: set before any other thread exists.
    unsafe { std::env::set_var(wasm_connect::runtime::CACHE_VARIABLE, cache.path()) };
    let (test_plugins, shipped_plugins) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for config in [hundred_connectors(test_plugins.path()), pipeline_config(shipped_plugins.path(), services::free_port())] {
        let status = std::process::Command::new(binary()).arg("validate").arg(&config).status().unwrap();
        assert!(status.success(), "validating {}", config.display());
    }

    if only.as_deref() != Some("memory") {
        latency(tempfile::tempdir().unwrap().path());
    }
    if only.as_deref() != Some("latency") {
        println!(
            "Resident memory of the host, sampled every 250 ms over {} s after {} s:",
            MEMORY_SPAN.as_secs(),
            MEMORY_WARM_UP.as_secs()
        );
        let directory = tempfile::tempdir().unwrap();
        memory("the default pipeline, every simulator at full speed", &full_speed_default_pipeline(directory.path()));
        let directory = tempfile::tempdir().unwrap();
        memory("100 connectors at rest (50 simulators at 1 record/s, 50 sinks)", &hundred_connectors(directory.path()));
    }
}
