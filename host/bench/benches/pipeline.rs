//! The whole data path on one host, in the bench process on the embedded transport:
//! `flight-simulator` (as fast as the host polls, a fixed number of records) -> the
//! `flights` topic -> `file-sink`, one task each. Prints records/s from the sink's first
//! written line to its last, best of several runs, and the CPU time per record; then
//! the same with a chain of transforms (InsertField, ReplaceField and a Filter whose jq
//! predicate keeps every record) on the sink connector, and on the source connector;
//! and in issue 17's layout (two sink tasks, batches of 1,000, the output on tmpfs).
//! The runs alternate.
//!
//! `cargo bench -p wasm-connect-bench --bench pipeline [-- RECORDS] [plain|sink|source|issue] [once]`
//! (a kind runs only that one, `once` one run of each: under `perf`, whose map of plugin
//! code would otherwise mix the components of several runs).

#[allow(dead_code)]
#[path = "../../../tests/support/services.rs"]
mod services;

use std::path::Path;

use tokio_util::sync::CancellationToken;
use wasm_connect_bench::{Throughput, measure_delivery, repository, write_config};

const RUNS: usize = 5;

/// A configuration of the pipeline with its data, compile cache and output in `directory`.
fn config(directory: &Path, output: &Path, port: u16, records: usize, chain: Placement, layout: Layout) -> std::path::PathBuf {
    let text = format!(
        r#"version: 1
data_dir: {data}
admin:
  listen: 127.0.0.1:{port}
plugins:
  dir: {plugins}
connectors:
  - name: flights-sim
    plugin: flight-simulator
    topic: flights
    batch_size: {batch_size}
    config:
      flights: 2000
      rate: 0
      limit: {records}
      seed: 7
      start: "2024-01-01T00:00:00Z"
{source_transforms}  - name: flights-to-files
    plugin: file-sink
    topics: [flights]
    tasks_max: {sink_tasks}
    batch_size: {batch_size}
    config:
      directory: {output}
      max_file_bytes: 1073741824
{sink_transforms}"#,
        source_transforms = if chain == Placement::Source { CHAIN } else { "" },
        sink_transforms = if chain == Placement::Sink { CHAIN } else { "" },
        data = directory.join("data").display(),
        plugins = repository().join("plugins/dist").display(),
        output = output.display(),
        batch_size = if layout == Layout::Issue { 1000 } else { 500 },
        sink_tasks = if layout == Layout::Issue { 2 } else { 1 },
    );
    write_config(directory, &text)
}

/// Where the chain runs, if anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    None,
    /// On the sink connector: between reading the topic and the sink's write.
    Sink,
    /// On the source connector: between the simulator and the topic.
    Source,
}

/// How the pipeline is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// One sink task, batches of 500, the output beside the topic's store: the layout
    /// of every figure in BENCHMARKS.md before issue 17's.
    Bench,
    /// Issue 17's: two sink tasks, batches of 1,000, the output on tmpfs (`/dev/shm`).
    Issue,
}

/// The chain: a static field, a dropped field, and a jq Filter that drops nothing.
const CHAIN: &str = r#"    transforms:
      - { name: tag, type: InsertField$Value, static.field: pipeline, static.value: bench }
      - { name: slim, type: ReplaceField$Value, exclude: reg_number }
      - { name: grounded, type: Filter, predicate: underground }
    predicates:
      - { name: underground, type: Jq, expression: ".alt < -1000" }
"#;

/// Counts the lines the file sink writes, reading only what was added since the last look.
#[derive(Default)]
struct LineCounter {
    read: std::collections::HashMap<std::path::PathBuf, u64>,
    lines: usize,
}

impl LineCounter {
    fn count(&mut self, output: &Path) -> usize {
        use std::io::{Read, Seek, SeekFrom};
        let Ok(entries) = std::fs::read_dir(output) else { return 0 };
        for entry in entries.flatten() {
            if !entry.file_name().to_string_lossy().ends_with(".jsonl") {
                continue;
            }
            let offset = self.read.entry(entry.path()).or_default();
            let Ok(mut file) = std::fs::File::open(entry.path()) else { continue };
            file.seek(SeekFrom::Start(*offset)).unwrap();
            let mut added = Vec::new();
            file.read_to_end(&mut added).unwrap();
            // Only whole lines: a line still being written is counted next time.
            let whole = added.iter().rposition(|&byte| byte == b'\n').map_or(0, |last| last + 1);
            self.lines += added[..whole].iter().filter(|&&byte| byte == b'\n').count();
            *offset += whole as u64;
        }
        self.lines
    }
}

/// One run in a fresh directory; components come from the compiled cache all runs share.
async fn run(records: usize, chain: Placement, layout: Layout) -> Throughput {
    let directory = tempfile::tempdir().unwrap();
    let tmpfs = (layout == Layout::Issue).then(|| tempfile::tempdir_in("/dev/shm").expect("a tmpfs at /dev/shm"));
    let output = tmpfs.as_ref().map_or_else(|| directory.path().join("output"), |tmpfs| tmpfs.path().join("output"));
    let port = services::free_port();
    let loaded = wasm_connect::config::load(&config(directory.path(), &output, port, records, chain, layout))
        .unwrap_or_else(|errors| panic!("{errors}"));
    let shutdown = CancellationToken::new();
    let host = tokio::spawn(wasm_connect::run(loaded, shutdown.clone()));
    let mut counter = LineCounter::default();
    let run = measure_delivery(records, "lines the sink wrote", || counter.count(&output));
    shutdown.cancel();
    host.await.unwrap().unwrap();
    run
}

fn main() {
    let records: usize = std::env::args().skip(1).find_map(|arg| arg.parse().ok()).unwrap_or(200_000);
    // Components are compiled once, by the first run that needs them, into a cache all
    // runs share: no run's figures include Cranelift.
    // A cache given in the environment is used as it is (a profile then sees no compiling).
    let cache = tempfile::tempdir().unwrap();
    if std::env::var_os(wasm_connect::runtime::CACHE_VARIABLE).is_none() {
        // SAFETY: set before any other thread exists.
        unsafe { std::env::set_var(wasm_connect::runtime::CACHE_VARIABLE, cache.path()) };
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // `plain`, `sink` or `source` runs only that kind (to profile one of them).
    let kinds = [
        ("plain", Placement::None, Layout::Bench),
        ("sink", Placement::Sink, Layout::Bench),
        ("source", Placement::Source, Layout::Bench),
        ("issue", Placement::None, Layout::Issue),
    ];
    let only = std::env::args().skip(1).find(|arg| kinds.iter().any(|(name, ..)| name == arg));
    let kinds: Vec<_> = kinds.into_iter().filter(|(name, ..)| only.as_deref().is_none_or(|only| only == *name)).collect();
    let mut runs: Vec<Vec<Throughput>> = kinds.iter().map(|_| Vec::new()).collect();
    let repeats = if std::env::args().any(|arg| arg == "once") { 1 } else { RUNS };
    for _ in 0..repeats {
        for ((_, placement, layout), runs) in kinds.iter().zip(&mut runs) {
            runs.push(runtime.block_on(run(records, *placement, *layout)));
        }
    }
    let best = |runs: &[Throughput]| runs.iter().map(|run| run.records_per_second).fold(0.0, f64::max);
    let worst = |runs: &[Throughput]| runs.iter().map(|run| run.records_per_second).fold(f64::MAX, f64::min);
    let cpu = |runs: &[Throughput]| runs.iter().map(|run| run.cpu_per_record).min().unwrap().as_secs_f64() * 1e6;
    println!("flight-simulator -> embedded topic -> file-sink, {records} records, best of {repeats}:");
    let plain = kinds.iter().position(|(name, ..)| *name == "plain").map(|index| &runs[index]);
    for ((_, placement, layout), runs) in kinds.iter().zip(&runs) {
        match placement {
            Placement::None if *layout == Layout::Issue => print!("  issue 17's layout:       "),
            Placement::None => print!("  without a chain:        "),
            Placement::Sink => print!("  the chain on the sink:   "),
            Placement::Source => print!("  the chain on the source: "),
        }
        print!("{:.0} records/s (worst {:.0}), {:.2} µs CPU per record", best(runs), worst(runs), cpu(runs));
        match plain {
            Some(plain) if *placement != Placement::None && *layout == Layout::Bench => println!(
                "; costs {:.1} % of the throughput, {:.2} µs CPU per record",
                (1.0 - best(runs) / best(plain)) * 100.0,
                cpu(runs) - cpu(plain)
            ),
            _ => println!(),
        }
    }
}
