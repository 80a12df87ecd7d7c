//! The cost of running sink logic as a component: the same batches go through the
//! `file-sink` component (boundary crossing, batch decoding and JSON rendering in
//! WebAssembly, then the host's `files` capability) and through the same rendering
//! code compiled natively with the same file writes. Prints records/s for both and
//! their ratio. `cargo bench -p wasm-connect-bench --bench boundary [-- RECORDS]`.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasm_connect::capabilities::Grants;
use wasm_connect::runtime::{PluginCatalog, Runtime, SinkInstance, TaskIdentity, TaskLimits};
use wasm_connect_bench::sample_records;
use wasm_connect_protocol::{decode, encode};

const BATCH: usize = 500;
const RUNS: usize = 5;

fn best_of(runs: usize, mut run: impl FnMut() -> Duration) -> Duration {
    (0..runs).map(|_| run()).min().unwrap()
}

fn bench_component(batches: &[Vec<u8>], directory: &Path) -> Duration {
    let cache = tempfile::tempdir().unwrap();
    let limits = TaskLimits { memory_bytes: 256 << 20, call_timeout: Duration::from_secs(60) };
    let runtime = Runtime::new(cache.path(), limits).unwrap();
    let plugins = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/dist");
    let (catalog, _) = PluginCatalog::load_dir(&runtime, &plugins).unwrap();
    let plugin = catalog.find("file-sink").unwrap();
    best_of(RUNS, || {
        let output = tempfile::tempdir_in(directory).unwrap();
        let identity = TaskIdentity { connector: Arc::from("bench"), task: 0, plugin: Arc::from("file-sink") };
        let grants = Grants { directory: Some(output.path().to_path_buf()), ..Grants::default() };
        let mut sink = SinkInstance::new(&runtime, &plugin, identity, grants).unwrap();
        let config = vec![("directory".to_owned(), "unused".to_owned()), ("max_file_bytes".to_owned(), (1u64 << 40).to_string())];
        sink.open(&config).unwrap();
        let started = Instant::now();
        for batch in batches {
            sink.write(batch.clone()).unwrap();
        }
        started.elapsed()
    })
}

fn bench_native(batches: &[Vec<u8>], directory: &Path) -> Duration {
    best_of(RUNS, || {
        let output = tempfile::tempdir_in(directory).unwrap();
        let mut file = OpenOptions::new().create(true).append(true).open(output.path().join("flights-000000.jsonl")).unwrap();
        let started = Instant::now();
        for batch in batches {
            let batch = batch.clone();
            let records = decode(&batch).unwrap();
            let mut lines = Vec::with_capacity(batch.len() * 2);
            for record in &records {
                file_sink::render_line(record, &mut lines);
            }
            file.write_all(&lines).unwrap();
            file.sync_data().unwrap();
        }
        started.elapsed()
    })
}

fn main() {
    let records: usize = std::env::args().nth(1).and_then(|arg| arg.parse().ok()).unwrap_or(50_000);
    let all = sample_records(records);
    let batches: Vec<Vec<u8>> = all.chunks(BATCH).map(encode).collect();
    let bytes: usize = batches.iter().map(Vec::len).sum();
    println!("{records} records of ~{} bytes in batches of {BATCH}; best of {RUNS} runs", bytes / records);
    println!("{:<28} {:>14} {:>14} {:>8}", "output directory", "component r/s", "native r/s", "ratio");
    for (label, directory) in [("tmpfs (/dev/shm)", Path::new("/dev/shm")), ("disk (system temp, fsync)", &std::env::temp_dir())] {
        if !directory.is_dir() {
            continue;
        }
        let component = bench_component(&batches, directory);
        let native = bench_native(&batches, directory);
        let rate = |elapsed: Duration| records as f64 / elapsed.as_secs_f64();
        println!("{label:<28} {:>14.0} {:>14.0} {:>7.2}x", rate(component), rate(native), component.as_secs_f64() / native.as_secs_f64());
    }
}
