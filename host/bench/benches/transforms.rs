//! What a transform costs per record in a connector's chain, run as the task runs it
//! (`Chain::apply` on batches of 500 flight records): a WASM transform that keeps
//! every record (the pass-through cost of the boundary: the host encodes the batch,
//! the plugin decodes it and answers `keep` per record), the shipped geo transform
//! (which parses, rewrites and re-encodes every record), and one built-in transform
//! for comparison, and the pipeline bench's chain with its jq test answered in the host
//! and in the jq component. `cargo bench -p wasm-connect-bench --bench transforms [-- RECORDS]`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use wasm_connect::config::{PredicateConfig, ScalarString, TransformConfig};
use wasm_connect::runtime::{PluginCatalog, Runtime, TaskLimits};
use wasm_connect::transforms::{Chain, ChainPlugins, WasmTransforms};
use wasm_connect_bench::{repository, sample_records};

const BATCH: usize = 500;
const RUNS: usize = 5;

fn option(key: &str, value: &str) -> (String, ScalarString) {
    (key.to_owned(), ScalarString(value.to_owned()))
}

fn transform(type_name: &str, options: &[(&str, &str)]) -> TransformConfig {
    TransformConfig {
        name: "t".into(),
        type_name: type_name.into(),
        predicate: None,
        negate: false,
        options: options.iter().map(|(key, value)| option(key, value)).collect::<BTreeMap<_, _>>(),
    }
}

fn main() {
    let records: usize = std::env::args().nth(1).and_then(|arg| arg.parse().ok()).unwrap_or(100_000);
    let cache = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(cache.path(), TaskLimits { memory_bytes: 256 << 20, call_timeout: Duration::from_secs(60) }).unwrap();
    // The test plugins hold the pass-through transform as well as the shipped ones.
    let (catalog, _) = PluginCatalog::load_dir(&runtime, &repository().join("plugins/test-dist")).unwrap();
    let all = sample_records(records);
    println!("{records} flight records of ~230 bytes through Chain::apply in batches of {BATCH}; best of {RUNS} runs");
    println!("{:<46} {:>12} {:>14}", "chain", "records/s", "µs per record");
    // The pipeline bench's Filter: a Jq predicate that drops nothing, answered in the
    // host (a simple comparison), or by the jq component (the same test written in a
    // form the host leaves to jq).
    let filter = |expression: &str| {
        let mut filter = transform("Filter", &[]);
        filter.predicate = Some("underground".into());
        (
            filter,
            vec![PredicateConfig {
                name: "underground".into(),
                type_name: "Jq".into(),
                options: [option("expression", expression)].into(),
            }],
        )
    };
    let (simple_filter, simple_predicate) = filter(".alt < -1000");
    let (jq_filter, jq_predicate) = filter("(.alt < -1000) as $below | $below");
    let three = |filter: TransformConfig| {
        vec![
            transform("InsertField$Value", &[("static.field", "pipeline"), ("static.value", "x")]),
            transform("ReplaceField$Value", &[("exclude", "status")]),
            filter,
        ]
    };
    let cases = [
        ("none (moving the records in and out)", vec![], vec![]),
        ("WASM pass-through (scripted-transform, keep)", vec![transform("wasm", &[("plugin", "scripted-transform")])], vec![]),
        ("WASM geo-transform (adds location)", vec![transform("wasm", &[("plugin", "geo-transform")])], vec![]),
        (
            "InsertField$Value (built in)",
            vec![transform("InsertField$Value", &[("static.field", "pipeline"), ("static.value", "x")])],
            vec![],
        ),
        ("Jq$Value `.` (built in)", vec![transform("Jq$Value", &[("expression", ".")])], vec![]),
        ("Filter, Jq `.alt < -1000` (in the host)", vec![simple_filter.clone()], simple_predicate.clone()),
        ("Filter, the same test in the jq component", vec![jq_filter.clone()], jq_predicate.clone()),
        ("the pipeline bench's chain of three", three(simple_filter), simple_predicate),
        ("the same, its test in the jq component", three(jq_filter), jq_predicate),
    ];
    let mut baseline = None;
    for (label, transforms, predicates) in cases {
        let chain = Chain::build(&transforms, &predicates, &ChainPlugins::new(&catalog, &runtime)).unwrap();
        let mut wasm = WasmTransforms::open(&chain, &runtime, "bench", 0, None).unwrap();
        let best = (0..RUNS)
            .map(|_| {
                let batches: Vec<_> = all.chunks(BATCH).map(<[_]>::to_vec).collect();
                let started = Instant::now();
                for batch in batches {
                    let output = chain.apply(batch, &mut wasm).unwrap();
                    assert!(output.failed.is_empty());
                    std::hint::black_box(output);
                }
                started.elapsed()
            })
            .min()
            .unwrap();
        let per_record = best.as_secs_f64() * 1e6 / records as f64;
        let extra = baseline.map(|base: f64| format!("  (+{:.2} µs over none)", per_record - base)).unwrap_or_default();
        baseline.get_or_insert(per_record);
        println!("{label:<46} {:>12.0} {:>14.3}{extra}", records as f64 / best.as_secs_f64(), per_record);
    }
}
